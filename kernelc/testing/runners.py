"""How the conformance tests call a kernel on the backend under test."""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from typing import Any, Callable

from kernelc.backends import registry, runtime
from kernelc.backends.interface import Backend, Schedule

# Small tiles force every reduction of the NumPy backend through many merged partial states.
SMALL_TILES = Schedule.of("numpy", tile_outer=2, tile_inner=3, threads=2)


@dataclass(frozen=True)
class Runner:
    """`runner(kernel, *args, **kwargs)` returns what `kernel(*args, **kwargs)` would, computed by
    the backend called `name`."""

    name: str
    call: Callable[..., Any]

    def __call__(self, kernel: Any, *args: Any, **kwargs: Any) -> Any:
        return self.call(kernel, *args, **kwargs)


def run_on(backend: Backend, kernel: Any, *args: Any, schedule: Schedule | None = None, **kwargs: Any) -> Any:
    """Call `kernel` on a backend object, registered or not (a plugin before it is installed),
    with its default schedule unless one is given; arguments are validated as in a normal call."""
    bound = runtime.bind(kernel.ir, args, kwargs)
    call = runtime.allocate(kernel.ir, bound)
    backend.compile(kernel.ir, schedule or backend.default_schedule(kernel.ir, call.sizes)).run(call)
    return call.outputs[0] if len(call.outputs) == 1 else tuple(call.outputs)


def run_with(kernel: Any, schedule: Schedule, *args: Any, **kwargs: Any) -> Any:
    """Call `kernel` on the NumPy backend with an explicit schedule."""
    return run_on(registry.get("numpy"), kernel, *args, schedule=schedule, **kwargs)


def selected_backends() -> list[str]:
    """KERNELC_TEST_BACKEND (comma-separated names, or module:attribute of a backend object),
    else every available backend plus the NumPy one with tiny tiles."""
    chosen = os.environ.get("KERNELC_TEST_BACKEND", "").strip()
    if chosen:
        return [name.strip() for name in chosen.split(",") if name.strip()]
    names = [info.name for info in registry.backends() if info.available]
    return names + (["numpy-small-tiles"] if "numpy" in names else [])


def backend_runner(name: str) -> Runner:
    if name == "numpy-small-tiles":
        return Runner(name, lambda k, *a, **kw: run_with(k, SMALL_TILES, *a, **kw))
    if ":" in name:  # a backend object that no entry point declares (yet)
        module, _, attr = name.partition(":")
        backend = getattr(importlib.import_module(module), attr)
        return Runner(backend.name, lambda k, *a, **kw: run_on(backend, k, *a, **kw))
    return Runner(name, lambda k, *a, **kw: k(*a, backend=name, **kw))
