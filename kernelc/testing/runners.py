"""How the conformance tests call a kernel on the backend under test."""

from __future__ import annotations

import os
from typing import Any, Callable

from kernelc.backends import registry, runtime
from kernelc.backends.interface import Schedule

# Small tiles force every reduction of the NumPy backend through many merged partial states.
SMALL_TILES = Schedule.of("numpy", tile_outer=2, tile_inner=3, threads=2)


def run_with(kernel: Any, schedule: Schedule, *args: Any, **kwargs: Any) -> Any:
    """Call `kernel` on the NumPy backend with an explicit schedule."""
    bound = runtime.bind(kernel.ir, args, kwargs)
    call = runtime.allocate(kernel.ir, bound)
    registry.get("numpy").compile(kernel.ir, schedule).run(call)
    return call.outputs[0] if len(call.outputs) == 1 else tuple(call.outputs)


def selected_backends() -> list[str]:
    chosen = os.environ.get("KERNELC_TEST_BACKEND", "").strip()
    if chosen:
        return [name.strip() for name in chosen.split(",") if name.strip()]
    names = [info.name for info in registry.backends() if info.available]
    return names + (["numpy-small-tiles"] if "numpy" in names else [])


def backend_runner(name: str) -> Callable[..., Any]:
    if name == "numpy-small-tiles":
        return lambda k, *a, **kw: run_with(k, SMALL_TILES, *a, **kw)
    return lambda k, *a, **kw: k(*a, backend=name, **kw)
