"""What `kernelc explain` shows: the IR after each optimizer pass, with its cost, and the plan."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from kernelc.backends import registry, runtime
from kernelc.errors import KernelArgumentError
from kernelc.ir.nodes import Param
from kernelc.ir.passes import cost, fuse, hoist
from kernelc.ir.printer import print_kernel

_MAX_RANDOM_BYTES = 4 << 30


def _cost_line(kernel: Any, bindings: dict[str, int]) -> str:
    plain = cost.ops_per_pair(kernel, bindings)
    weighted = cost.ops_per_pair(kernel, bindings, weighted=True)
    return f"{plain} operations per pair (weighted {weighted})"


def passes(k: Any, dims: dict[str, int] | None = None) -> str:
    """The typed IR, then the IR after each pass of the pipeline, then the stages hoisting
    makes and the passes over each index. Costs use `dims` for dimension symbols (default 3)."""
    bindings = {s: (dims or {}).get(s, 3) for s in k.ir.symbols}
    where = ", ".join(f"{s}={v}" for s, v in bindings.items())
    parts = [f"=== typed IR: {_cost_line(k.ir, bindings)}{f' at {where}' if where else ''}", print_kernel(k.ir)]
    if not k.optimize:
        parts.append("=== optimizer off (optimize=False or KERNELC_OPTIMIZE=0)")
        return "\n".join(parts)
    previous = print_kernel(k.ir)
    for name, kernel in k.trace:
        text = print_kernel(kernel)
        parts.append(f"=== after {name}: {_cost_line(kernel, bindings)}" + (" (unchanged)" if text == previous else ""))
        if text != previous:
            parts.append(text)
        previous = text
    stages = hoist.run(k.optimized)
    if len(stages) > 1:
        parts.append(f"=== after hoist (backends that run rows, when N and M allow): "
                     f"{_cost_line(stages[-1].kernel, bindings)}")
        parts += [print_kernel(s.kernel) for s in stages]
    parts.append("=== fused passes")
    parts += fuse.groups(k.optimized)
    return "\n".join(parts)


def random_arguments(kernel: Any, n: int, m: int, dims: dict[str, int], seed: int = 0) -> dict[str, object]:
    """Random inputs for every parameter (uniform in [0, 1) for floats, scalars in [0.5, 1.5))."""
    rng = np.random.default_rng(seed)
    args: dict[str, object] = {}
    for p in kernel.ir.params:
        args[p.name] = _random_array(p, n, m, dims, rng)
    for sym in kernel.ir.symbols:
        if sym not in kernel.ir.param_symbols:
            args[sym] = dims.get(sym, 3)
    return args


def _random_array(p: Param, n: int, m: int, dims: dict[str, int], rng: np.random.Generator) -> np.ndarray:
    t = p.type
    shape = [n if ix == "i" else m for ix in t.index]
    if t.dim is not None:
        shape.append(t.dim.const if t.dim.is_const else sum(c * dims.get(s, 3) for s, c in t.dim.terms) + t.dim.const)
    nbytes = math.prod(shape) * t.dtype.numpy.itemsize
    if nbytes > _MAX_RANDOM_BYTES:
        raise KernelArgumentError(p.name, f"random data of shape {tuple(shape)} would take {nbytes / 2**30:.1f} GiB",
                                     hint="use smaller -n / -m")
    if t.dtype.is_bool:
        return rng.random(shape) < 0.5
    if t.dtype.is_int:
        return rng.integers(0, 10, size=shape).astype(t.dtype.numpy)
    low = 0.5 if not shape else 0.0
    return (low + rng.random(shape)).astype(t.dtype.numpy)


def plan(k: Any, backend: str | None, code: bool, n: int, m: int, dims: dict[str, int]) -> str:
    """What a call on random data of these sizes runs: backend, schedule, the variant chosen
    under a tolerance, and the backend's generated code when it exposes it (`code`)."""
    args = random_arguments(k, n, m, dims)
    if backend == "cuda" and not registry.availability(registry.registry()["cuda"]).ok:
        return cuda_source(k, args, code)
    name, schedule, executable = k.compiled(backend=backend, **args)
    parts = [f"=== backend {name}, N={n}, M={m}: schedule {schedule}"]
    for r in k.variant_report:
        error = "not measured" if r.error is None else f"error {r.error:.2e}"
        parts.append(f"variant {r.name}: weighted cost {r.cost}, {error}{' (chosen)' if r.chosen else ''}")
    parts += list(getattr(executable, "notes", ()))  # how the backend runs it, where that is notable
    if code:
        text = getattr(executable, "code", None)
        parts.append(f"=== generated code ({name})")
        parts.append(text if text else f"(the {name} backend does not expose generated code)")
    return "\n".join(parts)


def cuda_source(k: Any, args: dict[str, object], code: bool) -> str:
    """Where the CUDA backend cannot run: its schedule and generated source for this call, and
    the registers and spills ptxas reports when nvcc or NVRTC is here."""
    from kernelc.backends.cuda import backend as cuda
    from kernelc.backends.cuda.source import layout_of, render
    from kernelc.backends.cuda.toolchain import ARCHITECTURES, compile_check, compiler_name

    sizes = runtime.bind(k.ir, (), args).sizes
    schedule = cuda.default_schedule(k.optimized, sizes)
    reason = registry.availability(cuda).reason
    parts = [f"=== backend cuda (cannot run here: {reason}), N={sizes.n}, M={sizes.m}: schedule {schedule}"]
    if code:
        rendered = render(k.optimized, dict(sizes.dims), layout_of(schedule))
        parts.append("=== generated code (cuda)")
        parts += [r.source for r in rendered]
        if compiler_name() is not None:
            for arch in ARCHITECTURES:
                for r in rendered:
                    for f in compile_check(r.source, arch):
                        parts.append(f"ptxas {arch} {f.function}: {f.registers} registers, {f.stack} bytes stack, "
                                     f"{f.spill_stores} bytes spill stores, {f.spill_loads} bytes spill loads")
    return "\n".join(parts)
