"""The CUDA backend: CUDA C++ rendered from jinja2 templates (codegen.py, templates/), compiled by
NVRTC and launched through CuPy (device.py). Without CuPy or a GPU it is unavailable, with the
reason; its source is still compiled by nvcc/NVRTC (toolchain.py) and run on the CPU by the
emulator (emulate.py) in the tests."""

from __future__ import annotations

import functools
from dataclasses import replace
from typing import Any, Mapping

from kernelc.backends.cuda.codegen import Layout
from kernelc.backends.cuda.source import schedule_of
from kernelc.backends.interface import Availability, Executable, Schedule, Sizes
from kernelc.ir.nodes import Kernel, walk
from kernelc.ir.ops import Op
from kernelc.plugins import API_VERSION

# Measured fastest of the candidates on an H100 for Gaussian D=3 and D=64, logsumexp and argkmin
# (benchmarks/bench_cuda.py).
DEFAULT = Layout(block=256, rows=1, tile=128, stage=True)
# The tuning space: block size, rows per thread, tile length and shared-memory staging (and for few
# rows, how many blocks share the inner index: `split`).
CANDIDATES = [DEFAULT, Layout(128, 1, 64, True), Layout(128, 2, 64, True), Layout(128, 4, 64, True),
              Layout(64, 2, 32, True), Layout(256, 2, 128, True), Layout(128, 1, 64, False),
              Layout(256, 1, 128, False)]
BUSY_BLOCKS = 2 * 132  # blocks that fill a large GPU (an H100 has 132 multiprocessors)


def split_for(kernel: Kernel, sizes: Sizes, layout: Layout) -> int:
    """How many blocks should share the inner index: enough that N (few) rows still fill the
    GPU, with at least four tiles per block."""
    if not any(n.op is Op.REDUCE for n in walk([o.value for o in kernel.outputs])):
        return 1
    rows, inner = (sizes.n, sizes.m) if all(o.type.index[:1] != ("j",) for o in kernel.outputs) else (sizes.m, sizes.n)
    blocks = max(1, -(-rows // (layout.block * layout.rows)))
    split = min(-(-BUSY_BLOCKS // blocks), inner // (4 * layout.tile))
    return split if split >= 2 else 1


class CudaBackend:
    name = "cuda"
    api_version = API_VERSION
    priority = 40  # after llvm for NumPy arrays; the only one that takes CuPy arrays
    description = "CUDA C++ from jinja2 templates, compiled by NVRTC and launched through CuPy"

    @functools.cache
    def available(self) -> Availability:
        from kernelc.backends.cuda.device import why_unavailable

        reason = why_unavailable()
        return Availability(reason is None, reason or "")

    def accepts(self, args: Mapping[str, Any]) -> bool:
        return True  # CuPy arrays, and NumPy arrays copied in and out

    def default_schedule(self, kernel: Kernel, sizes: Sizes) -> Schedule:
        return schedule_of(self.name, sizes, replace(DEFAULT, split=split_for(kernel, sizes, DEFAULT)))

    def candidates(self, kernel: Kernel, sizes: Sizes) -> list[Schedule]:
        layouts = [replace(layout, split=split_for(kernel, sizes, layout)) for layout in CANDIDATES]
        layouts += [replace(layout, split=1) for layout in layouts[:2] if layout.split > 1]
        return [schedule_of(self.name, sizes, layout) for layout in layouts]

    def target(self) -> str:
        from kernelc.backends.cuda.device import architecture, cupy

        return f"{architecture()} nvrtc {'.'.join(map(str, cupy().cuda.nvrtc.getVersion()))}"

    def compile(self, kernel: Kernel, schedule: Schedule) -> Executable:
        from kernelc.backends.cuda.device import DeviceExecutable

        return DeviceExecutable(kernel, schedule)


backend = CudaBackend()
