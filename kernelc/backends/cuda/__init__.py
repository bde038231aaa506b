"""The CUDA backend: CUDA C++ rendered from jinja2 templates (codegen.py, templates/), compiled by
NVRTC and launched through CuPy (device.py). Without CuPy or a GPU it is unavailable, with the
reason; its source is still compiled by nvcc/NVRTC (toolchain.py) and run on the CPU by the
emulator (emulate.py) in the tests."""

from __future__ import annotations

import functools
from typing import Any, Mapping

from kernelc.backends.cuda.codegen import Layout
from kernelc.backends.cuda.source import schedule_of
from kernelc.backends.interface import Availability, Executable, Schedule, Sizes
from kernelc.ir.nodes import Kernel
from kernelc.plugins import API_VERSION

DEFAULT = Layout(block=128, rows=1, tile=64, stage=True)
# The tuning space: block size, rows per thread, tile length and shared-memory staging.
CANDIDATES = [DEFAULT, Layout(256, 1, 128, True), Layout(128, 2, 64, True), Layout(128, 4, 64, True),
              Layout(64, 2, 32, True), Layout(256, 2, 128, True), Layout(128, 1, 64, False),
              Layout(128, 2, 64, False)]


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
        return schedule_of(self.name, sizes, DEFAULT)

    def candidates(self, kernel: Kernel, sizes: Sizes) -> list[Schedule]:
        return [schedule_of(self.name, sizes, layout) for layout in CANDIDATES]

    def target(self) -> str:
        from kernelc.backends.cuda.device import architecture, cupy

        return f"{architecture()} nvrtc {'.'.join(map(str, cupy().cuda.nvrtc.getVersion()))}"

    def compile(self, kernel: Kernel, schedule: Schedule) -> Executable:
        from kernelc.backends.cuda.device import DeviceExecutable

        return DeviceExecutable(kernel, schedule)


backend = CudaBackend()
