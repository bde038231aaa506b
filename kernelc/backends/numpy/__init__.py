"""The NumPy reference backend: the definition of the language's semantics, and the oracle
every other backend is tested against. Correct first; bounded memory; fast enough for 1e10 pairs."""

from __future__ import annotations

import os
from typing import Any, Mapping

from kernelc.backends.interface import Availability, Executable, Schedule, Sizes
from kernelc.backends.numpy.executable import DEFAULT_PAIR_BUDGET, NumpyExecutable
from kernelc.ir.nodes import Kernel
from kernelc.plugins import API_VERSION


def thread_count() -> int:
    """KERNELC_NUM_THREADS, else every core."""
    env = os.environ.get("KERNELC_NUM_THREADS", "")
    return int(env) if env.isdigit() and int(env) > 0 else (os.cpu_count() or 1)


class NumpyBackend:
    name = "numpy"
    api_version = API_VERSION
    description = "NumPy reference: tiled evaluation in float64, the correctness oracle"

    def available(self) -> Availability:
        return Availability(True)

    def accepts(self, args: Mapping[str, Any]) -> bool:
        return all(not hasattr(a, "__cuda_array_interface__") for a in args.values())

    def default_schedule(self, kernel: Kernel, sizes: Sizes) -> Schedule:
        return Schedule.of(self.name, pair_budget=DEFAULT_PAIR_BUDGET, threads=thread_count())

    def candidates(self, kernel: Kernel, sizes: Sizes) -> list[Schedule]:
        return [Schedule.of(self.name, pair_budget=b, threads=thread_count()) for b in (1 << 14, 1 << 16, 1 << 18)]

    def compile(self, kernel: Kernel, schedule: Schedule) -> Executable:
        return NumpyExecutable(kernel, schedule)


backend = NumpyBackend()
