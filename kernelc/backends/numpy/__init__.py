"""The NumPy reference backend: the definition of the language's semantics, and the oracle
every other backend is tested against. Correct first; bounded memory; fast enough for 1e10 pairs."""

from __future__ import annotations

from typing import Any, Mapping

from kernelc.backends.interface import Availability, Executable, Schedule, Sizes, host_arrays_only
from kernelc.backends.numpy.executable import DEFAULT_PAIR_BUDGET, NumpyExecutable
from kernelc.backends.threads import thread_count
from kernelc.ir.nodes import Kernel
from kernelc.plugins import API_VERSION


class NumpyBackend:
    name = "numpy"
    api_version = API_VERSION
    priority = 0  # "auto" prefers higher
    description = "NumPy reference: tiled evaluation in float64, the correctness oracle"

    def available(self) -> Availability:
        return Availability(True)

    def accepts(self, args: Mapping[str, Any]) -> bool:
        return host_arrays_only(args)

    def default_schedule(self, kernel: Kernel, sizes: Sizes) -> Schedule:
        return Schedule.of(self.name, pair_budget=DEFAULT_PAIR_BUDGET, threads=thread_count())

    def candidates(self, kernel: Kernel, sizes: Sizes) -> list[Schedule]:
        return [Schedule.of(self.name, pair_budget=b, threads=thread_count()) for b in (1 << 14, 1 << 16, 1 << 18)]

    def compile(self, kernel: Kernel, schedule: Schedule) -> Executable:
        return NumpyExecutable(kernel, schedule)


backend = NumpyBackend()
