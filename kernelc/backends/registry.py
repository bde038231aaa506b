"""Which backends exist: the built-ins and every plugin found through entry points."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any

from kernelc.backends.interface import Availability, Backend
from kernelc.errors import BackendUnavailableError, KernelArgumentError, KernelcError
from kernelc.plugins import API_VERSION, ENTRY_POINT_GROUP

# Built-ins, also declared as entry points: found here too when kernelc runs from a source tree.
_BUILTINS = {"numpy": "kernelc.backends.numpy:backend", "llvm": "kernelc.backends.llvm:backend"}
# What "auto" picks among available backends, best first.
_PREFERENCE = ("cuda", "llvm", "numpy")


@dataclass(frozen=True)
class BackendInfo:
    name: str
    available: bool
    reason: str
    description: str

    def __str__(self) -> str:
        state = "available" if self.available else f"unavailable: {self.reason}"
        return f"{self.name}: {state}"


_registry: dict[str, Backend] | None = None
_load_errors: dict[str, str] = {}


def _load(spec: str) -> Any:
    module, _, attr = spec.partition(":")
    obj = getattr(importlib.import_module(module), attr)
    return obj() if callable(obj) and not hasattr(obj, "compile") else obj


def _discover() -> dict[str, Backend]:
    found: dict[str, Backend] = {}
    specs: dict[str, str] = dict(_BUILTINS)
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name in specs and specs[ep.name] != ep.value:
            _load_errors[ep.name] = f"two plugins claim the backend name '{ep.name}': {specs[ep.name]} and {ep.value}"
            continue
        specs[ep.name] = ep.value
    for name, spec in specs.items():
        if name in _load_errors:
            continue
        try:
            backend = _load(spec)
        except Exception as err:  # a broken plugin must not break kernelc
            _load_errors[name] = f"failed to load {spec}: {type(err).__name__}: {err}"
            continue
        if getattr(backend, "api_version", None) != API_VERSION:
            _load_errors[name] = f"{spec} targets plugin API {getattr(backend, 'api_version', None)}, " \
                                 f"kernelc provides {API_VERSION}"
            continue
        found[name] = backend
    return found


def registry() -> dict[str, Backend]:
    global _registry
    if _registry is None:
        _registry = _discover()
    return _registry


def availability(backend: Backend) -> Availability:
    try:
        return backend.available()
    except Exception as err:
        return Availability(False, f"its availability check failed: {type(err).__name__}: {err}")


def backends() -> list[BackendInfo]:
    """Every known backend, with whether it can run here and why not."""
    infos = []
    for name, b in registry().items():
        av = availability(b)
        infos.append(BackendInfo(name, av.ok, av.reason, getattr(b, "description", "")))
    for name, reason in _load_errors.items():
        infos.append(BackendInfo(name, False, reason, ""))
    return infos


def auto_order(args: dict[str, Any] | None = None) -> list[Backend]:
    """The available backends that accept `args`, best first: what "auto" tries in turn."""
    reg = registry()
    names = [n for n in _PREFERENCE if n in reg] + sorted(n for n in reg if n not in _PREFERENCE)
    return [reg[n] for n in names if availability(reg[n]).ok and (args is None or reg[n].accepts(args))]


def get(name: str, args: dict[str, Any] | None = None) -> Backend:
    """The backend called `name`, or for "auto" the best available one that accepts `args`."""
    if not isinstance(name, str):
        raise KernelArgumentError("backend", f"expected a backend name, got {type(name).__name__}")
    reg = registry()
    if name == "auto":
        for candidate in list(_PREFERENCE) + sorted(reg):
            b = reg.get(candidate)
            if b is not None and availability(b).ok and (args is None or b.accepts(args)):
                return b
        raise KernelcError("no available backend accepts these arguments")
    if name not in reg:
        if name in _load_errors:
            raise BackendUnavailableError(f"backend '{name}' is unavailable: {_load_errors[name]}")
        known = ", ".join(sorted(reg) + ["auto"])
        raise KernelArgumentError("backend", f"no backend named '{name}'", hint=f"known backends: {known}")
    b = reg[name]
    av = availability(b)
    if not av.ok:
        raise BackendUnavailableError(f"backend '{name}' is unavailable here: {av.reason}")
    return b
