"""The contract between kernelc and a backend (built-in or plugin).

A backend turns a typed `Kernel` and a `Schedule` into an `Executable`; the runtime validates
a call's arguments into a `Call` (arrays in the declared dtypes, sizes, symbol values and the
allocated outputs) before any executable runs, so backends never see unchecked input.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Protocol, runtime_checkable

import numpy as np

from kernelc.ir.nodes import Kernel


@dataclass(frozen=True)
class Availability:
    ok: bool
    reason: str = ""

    def __bool__(self) -> bool:
        return self.ok


@dataclass(frozen=True)
class Sizes:
    """The sizes of one call: N, M and every dimension symbol's value."""

    n: int
    m: int
    dims: tuple[tuple[str, int], ...] = ()

    @property
    def bindings(self) -> dict[str, int]:
        return dict(self.dims)


@dataclass(frozen=True)
class Schedule:
    """How to run a kernel: backend-specific knobs (tile sizes, threads, ...) as sorted pairs,
    hashable and printable so that it can be part of a cache key."""

    backend: str
    knobs: tuple[tuple[str, Any], ...] = ()

    @staticmethod
    def of(backend: str, **knobs: Any) -> "Schedule":
        return Schedule(backend, tuple(sorted(knobs.items())))

    def get(self, name: str, default: Any = None) -> Any:
        return dict(self.knobs).get(name, default)

    def __str__(self) -> str:
        return f"{self.backend}{{{', '.join(f'{k}={v}' for k, v in self.knobs)}}}"


@dataclass
class Call:
    """A validated call: `inputs` by parameter name, each a NumPy array in the declared dtype
    with the declared shape ((), (N,), (N, D), (N, M), ... exactly); `outputs` allocated."""

    inputs: Mapping[str, np.ndarray]
    sizes: Sizes
    outputs: list[np.ndarray] = field(default_factory=list)


def host_arrays_only(args: Mapping[str, Any]) -> bool:
    """The `accepts` of CPU backends: no argument lives in GPU memory."""
    return all(not hasattr(a, "__cuda_array_interface__") for a in args.values())


@runtime_checkable
class Executable(Protocol):
    def run(self, call: Call) -> None:
        """Fill `call.outputs`."""


@runtime_checkable
class Backend(Protocol):
    name: str
    api_version: tuple[int, int]  # the kernelc.plugins.API_VERSION it was written for

    def available(self) -> Availability:
        """Whether this backend can run here, and why not."""

    def accepts(self, args: Mapping[str, Any]) -> bool:
        """Whether it can run on these (raw, user-given) arguments' array types and devices."""

    def candidates(self, kernel: Kernel, sizes: Sizes) -> list[Schedule]:
        """The schedules worth trying for this kernel and these sizes (the autotuning space)."""

    def default_schedule(self, kernel: Kernel, sizes: Sizes) -> Schedule:
        """A good schedule without measuring."""

    def compile(self, kernel: Kernel, schedule: Schedule) -> Executable:
        """An executable for the kernel. The caller caches it."""

    # Optional, so not part of the protocol (plugins written without it stay backends):
    # `canonical_schedule(kernel, schedule) -> Schedule`, the schedule without the knobs that
    # this kernel's code ignores under it; the autotuner times one candidate per canonical one.
