"""The Python API of LANGUAGE.md §7: kernel, compile, load, and the callable Kernel."""

from __future__ import annotations

import math
import os
import threading
from pathlib import Path
from typing import Any, Iterator

from kernelc.backends import registry, runtime
from kernelc.backends.interface import Executable, Schedule
from kernelc.dsl import compile_source
from kernelc.errors import KernelArgumentError, KernelcError, KernelSyntaxError, UnsupportedKernelError
from kernelc.ir import nodes
from kernelc.ir.printer import print_kernel


def _check_tolerance(tolerance: float | None) -> float | None:
    if tolerance is None:
        return None
    if isinstance(tolerance, bool) or not isinstance(tolerance, (int, float)) or not math.isfinite(tolerance) \
            or not 0 < tolerance < 1:
        raise KernelArgumentError("tolerance", f"expected a relative error in (0, 1), got {tolerance!r}",
                                  hint="e.g. tolerance=1e-4")
    return float(tolerance)


class Kernel:
    """A type-checked kernel, compiled for a backend on its first call with that backend."""

    def __init__(self, ir: nodes.Kernel, source: str, tolerance: float | None = None,
                 filename: str | None = None) -> None:
        self.ir = ir
        self.source = source
        self.tolerance = _check_tolerance(tolerance)
        self.filename = filename
        self._executables: dict[tuple[str, Schedule], Executable] = {}
        self._lock = threading.Lock()
        self.skipped: dict[str, str] = {}  # backends "auto" passed over, with why
        self.last_backend: str | None = None  # the backend that ran the latest call

    @property
    def name(self) -> str:
        return self.ir.name

    @property
    def signature(self) -> str:
        params = ", ".join(f"{p.name}: {p.type}" for p in self.ir.params)
        outs = ", ".join(str(o.type) for o in self.ir.outputs)
        return f"{self.name}({params}) -> {outs if len(self.ir.outputs) == 1 else '(' + outs + ')'}"

    def __repr__(self) -> str:
        return f"<kernelc.Kernel {self.signature}>"

    def explain(self) -> str:
        """The typed IR, as `kernelc explain` prints it."""
        return print_kernel(self.ir)

    def __call__(self, *args: Any, backend: str | None = None, **kwargs: Any) -> Any:
        bound = runtime.bind(self.ir, args, kwargs)
        raw = dict(zip([p.name for p in self.ir.params], args)) | kwargs
        executable = self._select(registry.default_name() if backend is None else backend, raw, bound)
        call = runtime.allocate(self.ir, bound)
        executable.run(call)
        outs = call.outputs
        if bound.library is not None:
            outs = [bound.library.from_dlpack(o) for o in outs]
        return outs[0] if len(outs) == 1 else tuple(outs)

    def _select(self, name: str, raw: dict[str, Any], bound: runtime.Bound) -> Executable:
        """The executable of the named backend, or for "auto" of the best backend that can run
        this kernel (a backend that cannot is remembered in `self.skipped` with its reason)."""
        if not isinstance(name, str) or name != "auto":
            chosen = registry.get(name, raw)
            self.last_backend = chosen.name
            return self._executable(chosen, chosen.default_schedule(self.ir, bound.sizes))
        for chosen in registry.auto_order(raw):
            try:
                executable = self._executable(chosen, chosen.default_schedule(self.ir, bound.sizes))
            except UnsupportedKernelError as err:
                self.skipped[chosen.name] = str(err)
                continue
            self.last_backend = chosen.name
            return executable
        raise KernelcError("no available backend can run this kernel: " + "; ".join(self.skipped.values()))

    def _executable(self, backend: Any, schedule: Schedule) -> Executable:
        key = (backend.name, schedule)
        with self._lock:
            if key not in self._executables:
                self._executables[key] = backend.compile(self.ir, schedule)
            return self._executables[key]


class Module:
    """The kernels of one source, as attributes (`mod.gauss`) and by name (`mod["gauss"]`)."""

    def __init__(self, kernels: list[Kernel], filename: str | None = None) -> None:
        self._kernels = {k.name: k for k in kernels}
        self.filename = filename

    def __getattr__(self, name: str) -> Kernel:
        kernels = self.__dict__.get("_kernels", {})
        if name in kernels:
            return kernels[name]
        raise AttributeError(f"no kernel named '{name}' here; kernels: {', '.join(kernels) or '(none)'}")

    def __getitem__(self, name: str) -> Kernel:
        return self.__getattr__(name)

    def __iter__(self) -> Iterator[Kernel]:
        return iter(self._kernels.values())

    def __len__(self) -> int:
        return len(self._kernels)

    def __dir__(self) -> list[str]:
        return list(self._kernels) + ["filename"]

    def __repr__(self) -> str:
        return f"<kernelc.Module {', '.join(self._kernels)}>"


def compile(source: str, tolerance: float | None = None, filename: str | None = None) -> Module:  # noqa: A001
    """Parse and type-check every kernel of `source`."""
    tolerance = _check_tolerance(tolerance)
    kernels = compile_source(source, filename)
    return Module([Kernel(k, source, tolerance, filename) for k in kernels], filename)


def kernel(source: str, name: str | None = None, tolerance: float | None = None) -> Kernel:
    """The one kernel of `source` (or the one called `name`), type-checked now, compiled lazily."""
    module = compile(source, tolerance)
    kernels = list(module)
    if name is not None:
        if name not in module._kernels:
            raise KernelArgumentError("name", f"the source has no kernel named '{name}'",
                                      hint=f"its kernels: {', '.join(k.name for k in kernels) or '(none)'}")
        return module[name]
    if not kernels:
        raise KernelSyntaxError("the source defines no kernel",
                                hint="a kernel looks like: kernel f(x: f32[i]) -> f32[i] { return 2 * x }")
    if len(kernels) > 1:
        raise KernelArgumentError("name", f"the source defines {len(kernels)} kernels: "
                                  f"{', '.join(k.name for k in kernels)}",
                                  hint="pick one with kc.kernel(source, name=...) or use kc.compile(source)")
    return kernels[0]


def load(path: str | os.PathLike, tolerance: float | None = None) -> Module:
    """Read a .kc file like `compile`; errors name the file."""
    p = Path(path)
    try:
        source = p.read_text()
    except OSError as err:
        raise KernelArgumentError("path", f"cannot read {p}: {err.strerror or err}") from None
    except UnicodeDecodeError as err:
        raise KernelSyntaxError(f"{p} is not UTF-8 text: {err.reason}") from None
    return compile(source, tolerance, filename=str(path))


