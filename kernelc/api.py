"""The Python API of LANGUAGE.md §7: kernel, compile, load, and the callable Kernel."""

from __future__ import annotations

import math
import os
import threading
from pathlib import Path
from typing import Any, Iterator

from kernelc import dask as kernelc_dask
from kernelc.backends import registry, runtime
from kernelc.backends.interface import Executable, Schedule
from kernelc.dsl import compile_source
from kernelc.errors import KernelArgumentError, KernelcError, KernelSyntaxError, UnsupportedKernelError
import kernelc.explain as explain
from kernelc.backends.autotune import mode as autotune_mode
from kernelc.backends.autotune import measure, tuner
from kernelc.ir import nodes, passes
from kernelc.ir.passes import precision
from kernelc.ir.printer import print_kernel


def _check_optimize(optimize: bool | None) -> bool:
    if optimize is None:
        return os.environ.get("KERNELC_OPTIMIZE", "1").strip().lower() not in ("0", "off", "false", "no")
    if not isinstance(optimize, bool):
        raise KernelArgumentError("optimize", f"expected True or False, got {optimize!r}")
    return optimize


def _check_tolerance(tolerance: float | None) -> float | None:
    if tolerance is None:
        return None
    if isinstance(tolerance, bool) or not isinstance(tolerance, (int, float)) or not math.isfinite(tolerance) \
            or not 0 < tolerance < 1:
        raise KernelArgumentError("tolerance", f"expected a relative error in (0, 1), got {tolerance!r}",
                                  hint="e.g. tolerance=1e-4")
    return float(tolerance)


def with_generic_knobs(schedule: Schedule, optimize: bool, approx: bool) -> Schedule:
    """Knobs every backend may honor (docs/plugins.md): `optimize=False` (no IR-level rewriting
    of its own) and `approx_math=True` (a tolerance variant: approximate math functions allowed,
    the result is validated by measurement)."""
    extra = ({} if optimize else {"optimize": False}) | ({"approx_math": True} if approx else {})
    return Schedule(schedule.backend, tuple(sorted((dict(schedule.knobs) | extra).items()))) if extra else schedule


class Kernel:
    """A type-checked kernel, compiled for a backend on its first call with that backend."""

    def __init__(self, ir: nodes.Kernel, source: str, tolerance: float | None = None,
                 filename: str | None = None, optimize: bool | None = None, autotune: str | None = None) -> None:
        self.ir = ir  # as typed by the front end: calls are validated against it
        self.source = source
        self.tolerance = _check_tolerance(tolerance)
        self.filename = filename
        self.optimize = _check_optimize(optimize)
        self.trace: list[tuple[str, nodes.Kernel]] = []  # the kernel after each pass
        self.optimized = passes.optimize(ir, self.trace) if self.optimize else ir  # what backends compile
        self._variants: dict[tuple[str, Any], tuple[str, nodes.Kernel]] = {}
        self.autotune = autotune_mode(autotune) if autotune is not None else None  # None: KERNELC_AUTOTUNE
        self._tunings: dict[tuple[str, str, str], tuner.Tuning | None] = {}  # (backend, bucket, mode)
        self._variant_list: list[tuple[str, nodes.Kernel]] | None = None
        self._last_tuning: tuner.Tuning | None = None
        self.variant_report: list[measure.VariantResult] = []  # the latest tolerance-driven choice
        self._executables: dict[tuple[str, Schedule, nodes.Kernel], Executable] = {}
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

    def explain(self, passes: bool = False, backend: str | None = None, code: bool = False, n: int = 64,
                m: int | None = None, dims: dict[str, int] | None = None) -> str:
        """What `kernelc explain` prints: the typed IR; with `passes` the IR after each optimizer
        pass with its operations per pair, the hoisted stages and the fused passes; with `backend`
        or `code` the schedule (and variant choice) of a call on random data of n x m, and the
        backend's generated code."""
        text = explain.passes(self, dims) if passes else print_kernel(self.ir)
        if backend is not None or code:
            text += "\n" + explain.plan(self, backend, code, n, n if m is None else m, dims or {})
        return text

    def compiled(self, *args: Any, backend: str | None = None, **kwargs: Any) -> tuple[str, Schedule, Executable]:
        """What a call with these arguments runs, compiled now: (backend name, schedule, executable)."""
        bound = runtime.bind(self.ir, args, kwargs)
        raw = dict(zip([p.name for p in self.ir.params], args)) | kwargs
        executable = self._select(registry.default_name() if backend is None else backend, raw, bound)
        schedule = next(s for (name, s, _), e in self._executables.items() if e is executable)
        return self.last_backend or "", schedule, executable

    def __call__(self, *args: Any, backend: str | None = None, **kwargs: Any) -> Any:
        if kernelc_dask.any_dask(args, kwargs):  # a Dask graph of block tasks instead (kernelc/dask.py)
            return kernelc_dask.call(self, args, kwargs, backend)
        bound = runtime.bind(self.ir, args, kwargs)
        raw = dict(zip([p.name for p in self.ir.params], args)) | kwargs
        executable = self._select(registry.default_name() if backend is None else backend, raw, bound)
        call = runtime.allocate(self.ir, bound)
        executable.run(call)
        outs = call.outputs
        if bound.library is not None and not bound.on_device:
            outs = [bound.library.from_dlpack(o) for o in outs]
        return outs[0] if len(outs) == 1 else tuple(outs)

    def _select(self, name: str, raw: dict[str, Any], bound: runtime.Bound) -> Executable:
        """The executable of the named backend, or for "auto" of the best backend that can run
        this kernel (a backend that cannot is remembered in `self.skipped` with its reason)."""
        if not isinstance(name, str) or name != "auto":
            chosen = registry.get(name, raw)
            if not chosen.accepts(raw):
                raise KernelArgumentError("backend", f"the backend '{name}' cannot read these arrays (they live on a GPU)",
                                          hint="pass NumPy arrays, or use backend='cuda'")
            self.last_backend = chosen.name
            return self._executable(chosen, bound)
        for chosen in registry.auto_order(raw):
            try:
                executable = self._executable(chosen, bound)
            except UnsupportedKernelError as err:
                self.skipped[chosen.name] = str(err)
                continue
            self.last_backend = chosen.name
            return executable
        raise KernelcError("no available backend can run this kernel: " + "; ".join(self.skipped.values()))

    def _executable(self, backend: Any, bound: runtime.Bound) -> Executable:
        tuning = self._tuning(backend, bound)
        if tuning is not None:
            ir = self._variant_named(tuning.variant)
            if ir is not None:
                knobs = dict(tuning.knobs, dims=bound.sizes.dims)
                return self._compiled(backend, ir, Schedule(backend.name, tuple(sorted(knobs.items()))))
        name, ir = self._variant(backend, bound) if self.tolerance is not None and self.optimize \
            else ("exact", self.optimized)
        return self._compiled(backend, ir, self._schedule(backend, ir, bound.sizes, approx=name != "exact"))

    def _tuning(self, backend: Any, bound: runtime.Bound) -> tuner.Tuning | None:
        """The tuning result to use for this call, per KERNELC_AUTOTUNE / autotune= (looked up
        once per backend and shape bucket in this process)."""
        mode = autotune_mode(self.autotune)
        if mode == "off":
            return None
        memo = (backend.name, tuner.bucket(bound.sizes), mode)
        if memo not in self._tunings:
            found = tuner.stored(self, backend, bound.sizes) if mode != "force" else None
            if found is None and mode in ("on", "force"):
                found = tuner.tune(self, backend, bound.on_host())
                tuner.save(self, backend, bound.sizes, found)
            self._tunings[memo] = found
        self._last_tuning = self._tunings[memo] or self._last_tuning
        return self._tunings[memo]

    def tune(self, *args: Any, backend: str | None = None, budget: float = 10.0, progress: Any = None,
             **kwargs: Any) -> tuner.Tuning:
        """Tune now for these arguments' shape bucket (whatever KERNELC_AUTOTUNE says), store the
        result for later calls, and return it."""
        bound = runtime.bind(self.ir, args, kwargs)
        raw = dict(zip([p.name for p in self.ir.params], args)) | kwargs
        chosen = registry.get(registry.default_name() if backend is None else backend, raw)
        result = tuner.tune(self, chosen, bound.on_host(), budget, progress)
        tuner.save(self, chosen, bound.sizes, result)
        for mode in ("cached", "on"):
            self._tunings[(chosen.name, tuner.bucket(bound.sizes), mode)] = result
        self._last_tuning = result
        return result

    def tuning_report(self) -> list[tuner.Row]:
        """The candidates of the latest tuning used or made (empty if none)."""
        return list(self._last_tuning.rows) if self._last_tuning else []

    def variants(self) -> list[tuple[str, nodes.Kernel]]:
        """The precision variants of the optimized kernel (computed once)."""
        if self._variant_list is None:
            self._variant_list = precision.variants(self.optimized)
        return self._variant_list

    def _variant_named(self, name: str) -> nodes.Kernel | None:
        if name == "exact":
            return self.optimized
        return dict(self.variants()).get(name) if self.tolerance is not None else None

    def _schedule(self, backend: Any, ir: nodes.Kernel, sizes: Any, approx: bool = False) -> Schedule:
        return with_generic_knobs(backend.default_schedule(ir, sizes), self.optimize, approx)

    def _compiled(self, backend: Any, ir: nodes.Kernel, schedule: Schedule) -> Executable:
        key = (backend.name, schedule, ir)
        with self._lock:
            if key not in self._executables:
                self._executables[key] = backend.compile(ir, schedule)
            return self._executables[key]

    def _variant(self, backend: Any, bound: runtime.Bound) -> tuple[str, nodes.Kernel]:
        """Under a tolerance: (name, kernel) of the cheapest variant whose error on sampled rows of
        this call is within it (chosen once per backend and dimensions)."""
        key = (backend.name, bound.sizes.dims)
        if key not in self._variants:
            def run(on: Any, ir: nodes.Kernel, approx: bool, inputs: dict[str, Any], sizes: Any) -> list[Any]:
                call = runtime.allocate(ir, runtime.Bound(inputs, sizes, None))
                self._compiled(on, ir, self._schedule(on, ir, sizes, approx)).run(call)
                return call.outputs

            chosen, self.variant_report = measure.choose(
                self.optimized, self.variants(), bound.on_host().inputs, bound.sizes, self.tolerance,
                run=lambda name, ir, inputs, sizes: run(backend, ir, name != "exact", inputs, sizes),
                reference=lambda ir, inputs, sizes: run(registry.get("numpy"), ir, False, inputs, sizes))
            name = next(r.name for r in self.variant_report if r.chosen)
            self._variants[key] = (name, chosen)
        return self._variants[key]


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


def compile(source: str, tolerance: float | None = None, filename: str | None = None,  # noqa: A001
            optimize: bool | None = None, autotune: str | None = None) -> Module:
    """Parse and type-check every kernel of `source`. `optimize=False` (or KERNELC_OPTIMIZE=0)
    compiles the IR as typed, without the optimizer's passes; `autotune` is one of off, cached,
    on, force (default: KERNELC_AUTOTUNE, else cached; see kernelc/backends/autotune)."""
    tolerance = _check_tolerance(tolerance)
    if autotune is not None:
        autotune_mode(autotune)
    kernels = compile_source(source, filename)
    return Module([Kernel(k, source, tolerance, filename, optimize, autotune) for k in kernels], filename)


def kernel(source: str, name: str | None = None, tolerance: float | None = None,
           optimize: bool | None = None, autotune: str | None = None) -> Kernel:
    """The one kernel of `source` (or the one called `name`), type-checked now, compiled lazily."""
    module = compile(source, tolerance, optimize=optimize, autotune=autotune)
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


def load(path: str | os.PathLike, tolerance: float | None = None, optimize: bool | None = None,
         autotune: str | None = None) -> Module:
    """Read a .kc file like `compile`; errors name the file."""
    p = Path(path)
    try:
        source = p.read_text()
    except OSError as err:
        raise KernelArgumentError("path", f"cannot read {p}: {err.strerror or err}") from None
    except UnicodeDecodeError as err:
        raise KernelSyntaxError(f"{p} is not UTF-8 text: {err.reason}") from None
    return compile(source, tolerance, filename=str(path), optimize=optimize, autotune=autotune)


