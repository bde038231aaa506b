"""Running generated CUDA C++ on a GPU through CuPy: NVRTC compiles each stage's source once
(CuPy keeps the binary in its disk cache, keyed by the source, the options, the GPU's
architecture and the NVRTC version), and `RawModule` launches it on CuPy arrays. NumPy inputs are
copied to the GPU and the outputs back; CuPy inputs give CuPy outputs, computed without a copy."""

from __future__ import annotations

import functools
import os
from typing import Any

import numpy as np

from kernelc.backends.cuda.source import Rendered, layout_of, render
from kernelc.backends.interface import Call, Schedule
from kernelc.backends.runtime import output_shapes
from kernelc.errors import CompilationError
from kernelc.ir.dtypes import DType
from kernelc.ir.nodes import Kernel


@functools.cache
def cupy() -> Any:
    import cupy as cp  # an optional dependency: `pip install "kernelc[cuda]"`

    return cp


def why_unavailable() -> str | None:
    """None when CuPy can launch kernels on a GPU here, else the reason it cannot."""
    try:
        cp = cupy()
    except ImportError as err:
        return f"CuPy is not installed ({err}); install kernelc[cuda] on a machine with an NVIDIA GPU"
    except Exception as err:  # a broken CuPy installation raises anything at import
        return f"CuPy cannot be imported: {err}"
    try:
        count = cp.cuda.runtime.getDeviceCount()
    except Exception as err:  # no driver, no device, driver too old
        return f"CuPy finds no usable CUDA GPU: {err}"
    return None if count > 0 else "CuPy sees no CUDA GPU"


@functools.cache
def nvrtc_options() -> tuple[str, ...]:
    cp = cupy()
    options = ["-std=c++17", "--fmad=true"]
    cuda_path = cp.cuda.get_cuda_path() if hasattr(cp.cuda, "get_cuda_path") else None
    for folder in filter(None, [cuda_path and os.path.join(cuda_path, "include"), os.environ.get("CUDA_HOME")]):
        if os.path.isfile(os.path.join(folder, "cuda_fp16.h")):
            options.append(f"-I{folder}")
    return tuple(options)


def architecture() -> str:
    """The current GPU's compute capability, e.g. "sm_90"."""
    return f"sm_{cupy().cuda.Device().compute_capability}"


def _device_array(cp: Any, array: Any) -> Any:
    """A C-contiguous device copy (or view) of `array`; bf16, which CuPy lacks, travels as its bits."""
    if isinstance(array, np.ndarray) and array.dtype == DType.BF16.numpy:
        array = array.view(np.uint16)
    return cp.ascontiguousarray(cp.asarray(array))


class DeviceExecutable:
    def __init__(self, kernel: Kernel, schedule: Schedule) -> None:
        cp = cupy()
        self.dims = dict(schedule.get("dims") or ())
        self.layout = layout_of(schedule)
        # a tolerance variant (the generic approx_math knob) may use the hardware's approximate
        # exp/log/division and flush subnormals; its error is measured before it is chosen
        options = nvrtc_options() + (("--use_fast_math",) if schedule.get("approx_math") else ())
        self.stages: list[tuple[Rendered, dict[str, Any]]] = []
        for rendered in render(kernel, self.dims, self.layout):
            try:
                module = cp.RawModule(code=rendered.source, options=options)
                functions = {f.name: module.get_function(f.name) for f in rendered.functions}
            except cp.cuda.compiler.CompileException as err:
                raise CompilationError(f"NVRTC rejected the generated CUDA source of '{kernel.name}': {err}") from None
            self.stages.append((rendered, functions))

    @property
    def code(self) -> str:
        return "\n".join(rendered.source for rendered, _ in self.stages)

    def run(self, call: Call) -> None:
        if dict(call.sizes.dims) != self.dims:
            raise AssertionError("an executable runs only the dimensions it was compiled for")
        cp = cupy()
        inputs = {name: _device_array(cp, array) for name, array in call.inputs.items()}
        on_device = all(isinstance(o, cp.ndarray) for o in call.outputs)
        for k, (rendered, functions) in enumerate(self.stages):
            kernel = rendered.stage.kernel
            last = k + 1 == len(self.stages)
            if last and on_device:
                outputs = list(call.outputs)
            else:
                outputs = [cp.empty(shape, np.uint16 if o.type.dtype is DType.BF16 else o.type.dtype.numpy)
                           for o, shape in zip(kernel.outputs, output_shapes(kernel, call.sizes))]
            arrays = [inputs[p.name] for p in kernel.params] + outputs
            for launch, scratch, states in rendered.launches_with_buffers(call.sizes, self.layout,
                                                                        lambda n: cp.empty(n, cp.uint8)):
                f = launch.function
                functions[f.name]((launch.grid_x, launch.grid_y), (self.layout.block,),
                                  (*arrays, np.int64(call.sizes.n), np.int64(call.sizes.m), scratch, states,
                                   np.int64(launch.chunk), np.int32(launch.splits)))
            if not last:
                inputs.update(zip(self.stages[k + 1][0].stage.temporaries, outputs))
            elif not on_device:
                for host, device in zip(call.outputs, outputs):
                    device.get(out=host.view(np.uint16) if host.dtype == DType.BF16.numpy else host)
