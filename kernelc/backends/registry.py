"""Which backends exist: the built-ins and every plugin found through entry points.

Discovery happens on first use (importing kernelc imports no plugin). A plugin that fails to
import, to initialize, or targets another major plugin API gives one warning and is listed as
unavailable with the reason; the rest of kernelc keeps working. Two distributions providing the
same backend name make that name unusable, with an error naming both.
"""

from __future__ import annotations

import importlib
import os
import threading
import warnings
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any

from kernelc.backends.interface import Availability, Backend
from kernelc.errors import BackendUnavailableError, KernelArgumentError, KernelcError
from kernelc.plugins import ENTRY_POINT_GROUP, api_mismatch

# Built-ins, also declared as entry points: found here too when kernelc runs from a source tree.
_BUILTINS = {"numpy": "kernelc.backends.numpy:backend", "llvm": "kernelc.backends.llvm:backend",
             "cuda": "kernelc.backends.cuda:backend"}


@dataclass(frozen=True)
class BackendInfo:
    name: str
    available: bool
    reason: str
    description: str
    distribution: str = "kernelc"
    version: str = ""
    priority: int = 0

    def __str__(self) -> str:
        state = "available" if self.available else f"unavailable: {self.reason}"
        return f"{self.name} ({self.distribution} {self.version}): {state}"


@dataclass
class _Entry:
    name: str
    spec: str  # "module:attribute"
    distribution: str
    version: str
    backend: Backend | None = None
    error: str | None = None
    clashes: list[str] = field(default_factory=list)

    @property
    def origin(self) -> str:
        return f"{self.distribution} {self.version} ({self.spec})".replace("  ", " ")


_entries: dict[str, _Entry] | None = None
_lock = threading.Lock()


def _kernelc_version() -> str:
    from kernelc import __version__

    return __version__


def _collect() -> dict[str, _Entry]:
    entries = {name: _Entry(name, spec, "kernelc", _kernelc_version()) for name, spec in _BUILTINS.items()}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        dist = getattr(ep, "dist", None)
        dist_name = getattr(dist, "name", None) or "unknown distribution"
        version = getattr(dist, "version", "") or ""
        if ep.name in entries:
            known = entries[ep.name]
            if known.spec != ep.value:
                known.clashes.append(f"{dist_name} {version} ({ep.value})")
            continue
        entries[ep.name] = _Entry(ep.name, ep.value, dist_name, version)
    return entries


def _load(entry: _Entry) -> None:
    if entry.clashes:
        others = "; ".join(entry.clashes)
        entry.error = f"two distributions provide the backend '{entry.name}': {entry.origin}; {others}"
        return
    module, _, attr = entry.spec.partition(":")
    try:
        obj = getattr(importlib.import_module(module), attr)
        backend = obj() if callable(obj) and not hasattr(obj, "compile") else obj
    except Exception as err:  # a broken plugin must not break kernelc
        entry.error = f"failed to load {entry.spec}: {type(err).__name__}: {err}"
        warnings.warn(f"kernelc: the backend plugin '{entry.name}' from {entry.distribution} {entry.error}",
                      RuntimeWarning, stacklevel=3)
        return
    mismatch = api_mismatch(getattr(backend, "api_version", None))
    if mismatch:
        entry.error = f"{entry.spec} is refused: {mismatch}"
        warnings.warn(f"kernelc: the backend plugin '{entry.name}' from {entry.distribution}: {entry.error}",
                      RuntimeWarning, stacklevel=3)
        return
    entry.backend = backend


def _all() -> dict[str, _Entry]:
    global _entries
    with _lock:
        if _entries is None:
            entries = _collect()
            for entry in entries.values():
                _load(entry)
            _entries = entries
        return _entries


def reset() -> None:
    """Forget what was discovered (for tests, or after installing a plugin in a running process)."""
    global _entries
    with _lock:
        _entries = None


def registry() -> dict[str, Backend]:
    return {name: e.backend for name, e in _all().items() if e.backend is not None}


def availability(backend: Backend) -> Availability:
    try:
        return backend.available()
    except Exception as err:
        return Availability(False, f"its availability check failed: {type(err).__name__}: {err}")


def _priority(backend: Backend) -> int:
    value = getattr(backend, "priority", 0)
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def backends() -> list[BackendInfo]:
    """Every known backend, with its origin, whether it can run here and why not."""
    infos = []
    for name, e in _all().items():
        if e.backend is None:
            infos.append(BackendInfo(name, False, e.error or "not loaded", "", e.distribution, e.version))
            continue
        av = availability(e.backend)
        infos.append(BackendInfo(name, av.ok, av.reason, getattr(e.backend, "description", ""), e.distribution,
                                 e.version, _priority(e.backend)))
    return infos


def auto_order(args: dict[str, Any] | None = None) -> list[Backend]:
    """The available backends that accept `args`, best first (highest priority, then name):
    what "auto" tries in turn."""
    found = [b for b in registry().values() if availability(b).ok and (args is None or b.accepts(args))]
    return sorted(found, key=lambda b: (-_priority(b), b.name))


def default_name() -> str:
    """KERNELC_BACKEND, else "auto"."""
    return os.environ.get("KERNELC_BACKEND", "").strip() or "auto"


def get(name: str, args: dict[str, Any] | None = None) -> Backend:
    """The backend called `name`, or for "auto" the best available one that accepts `args`."""
    if not isinstance(name, str):
        raise KernelArgumentError("backend", f"expected a backend name, got {type(name).__name__}")
    if name == "auto":
        order = auto_order(args)
        if not order:
            raise KernelcError("no available backend accepts these arguments")
        return order[0]
    entries = _all()
    if name not in entries:
        known = ", ".join(sorted(entries) + ["auto"])
        raise KernelArgumentError("backend", f"no backend named '{name}'", hint=f"known backends: {known}")
    entry = entries[name]
    if entry.backend is None:
        raise BackendUnavailableError(f"backend '{name}' is unavailable: {entry.error}")
    av = availability(entry.backend)
    if not av.ok:
        raise BackendUnavailableError(f"backend '{name}' is unavailable here: {av.reason}")
    return entry.backend
