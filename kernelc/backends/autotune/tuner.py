"""Measuring candidates: validation on sampled rows, timing under a budget, the choice."""

from __future__ import annotations

import os
import statistics
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

import numpy as np

from kernelc.backends import registry, runtime
from kernelc.backends.autotune import measure, store
from kernelc.backends.cache import make_key
from kernelc.backends.interface import Schedule, Sizes
from kernelc.errors import KernelcError
from kernelc.ir.dtypes import DType, holds_floats
from kernelc.ir.nodes import Kernel
from kernelc.ir.passes import cost, hoist
from kernelc.ir.printer import print_kernel

TIMING_PAIRS = 1 << 27  # larger calls are timed on a sample of rows of about this many pairs
MIN_TIMED_ROWS = 256  # enough rows for every thread to get several chunks
REPEATS = 5
FINALISTS = 3
TIE = 0.02  # medians within 2% are a tie: the earlier candidate (the default first) wins


@dataclass(frozen=True)
class Candidate:
    variant: str  # "exact" or a precision variant's name
    ir: Kernel
    schedule: Schedule


@dataclass
class Row:
    """One line of a tuning report."""

    variant: str
    schedule: str  # the knobs, without the dimensions
    status: str  # "ok", "wrong: ...", "failed: ..."
    median_s: float | None = None
    spread: float | None = None  # (max - min) / median of the timed repeats
    gflops: float | None = None
    error: float | None = None
    chosen: bool = False


@dataclass
class Tuning:
    variant: str
    knobs: dict[str, Any]
    rows: list[Row] = field(default_factory=list)
    seconds: float = 0.0
    bucket: str = ""

    def record(self) -> dict[str, Any]:
        return {"variant": self.variant, "knobs": self.knobs, "rows": [asdict(r) for r in self.rows],
                "seconds": self.seconds, "bucket": self.bucket}

    @staticmethod
    def from_record(rec: dict[str, Any]) -> "Tuning":
        return Tuning(rec["variant"], rec["knobs"], [Row(**r) for r in rec["rows"]], rec["seconds"], rec["bucket"])


def _pow2(n: int) -> int:
    return 0 if n <= 0 else 1 << (n - 1).bit_length()


def bucket(sizes: Sizes) -> str:
    dims = ",".join(f"{s}={_pow2(v)}" for s, v in sizes.dims)
    return f"N={_pow2(sizes.n)},M={_pow2(sizes.m)}" + (f",{dims}" if dims else "")


def key(ir: Kernel, backend: Any, sizes: Sizes, tolerance: float | None) -> str:
    target = getattr(backend, "target", None)
    infos = {i.name: i for i in registry.backends()}
    version = infos[backend.name].version if backend.name in infos else ""
    return make_key("autotune-1", print_kernel(ir), backend.name, version, target() if target else "",
                    bucket(sizes), repr(tolerance))


def knobs_of(schedule: Schedule) -> dict[str, Any]:
    return {k: v for k, v in schedule.knobs if k != "dims"}


def candidates(k: Any, backend: Any, sizes: Sizes) -> list[Candidate]:
    from kernelc.api import with_generic_knobs

    variants = [("exact", k.optimized)]
    if k.tolerance is not None and k.optimize:
        variants += k.variants()
    found, seen = [], set()
    canonical = getattr(backend, "canonical_schedule", None)  # optional (docs/plugins.md)
    for name, ir in variants:
        for schedule in backend.candidates(ir, sizes):
            schedule = with_generic_knobs(schedule, k.optimize, approx=name != "exact")
            same = (name, canonical(ir, schedule) if canonical else schedule)
            if same not in seen:  # a schedule whose code is another's is not timed twice
                seen.add(same)
                found.append(Candidate(name, ir, schedule))
    return found


def _float_bound(kernel: Kernel) -> float:
    """How far a correct backend's floats may be from the float64 evaluation (normwise)."""
    dts = {p.type.dtype for p in kernel.params} | {o.type.dtype for o in kernel.outputs}
    if dts & {DType.F16, DType.BF16}:
        return 2e-2
    return 1e-4 if DType.F32 in dts else 1e-9


def _timing_inputs(k: Any, backend: Any, first: Candidate, inputs: dict[str, np.ndarray], sizes: Sizes,
                   seconds_per_call: float) -> tuple[dict[str, np.ndarray], Sizes]:
    """The call to time: the whole one, or its first rows when that keeps one call of the
    default candidate within `seconds_per_call` (the rate per pair is what is compared)."""
    if not measure.row_sampleable(k.optimized):
        return inputs, sizes
    rows = min(sizes.n, max(MIN_TIMED_ROWS, TIMING_PAIRS // max(sizes.m, 1)))
    taken = measure.take_rows(k.optimized, inputs, sizes, np.arange(rows))
    t = min(_time(backend, first, *taken, budget=0.0, repeats=1))
    if t > seconds_per_call and rows > MIN_TIMED_ROWS:
        rows = max(MIN_TIMED_ROWS, int(rows * seconds_per_call / t))
        taken = measure.take_rows(k.optimized, inputs, sizes, np.arange(rows))
    return taken


def tune(k: Any, backend: Any, bound: runtime.Bound, budget: float = 10.0,
         progress: Callable[[str, int, int], None] | None = None, workers: int | None = None) -> Tuning:
    """Measure every candidate for this call's shapes and return the choice (not stored).
    `workers`: processes compiling candidates ahead into the disk cache (None: automatic)."""
    start = time.perf_counter()
    sizes = bound.sizes
    found = candidates(k, backend, sizes)
    precompile(k, backend, found, workers)
    numpy = registry.get("numpy")
    sample = measure.sample(k.optimized, bound.inputs, sizes) or (bound.inputs, sizes)
    want = _run(numpy, k.optimized, numpy.default_schedule(k.optimized, sample[1]), *sample)
    per_candidate = budget / max(len(found), 1)
    timing = _timing_inputs(k, backend, found[0], bound.inputs, sizes, per_candidate / (REPEATS + 4))
    rows: list[Row] = []
    timed: list[tuple[int, list[float]]] = []
    default_out: list[np.ndarray] | None = None
    for n, cand in enumerate(found):
        if progress:
            progress(f"{cand.variant} {cand.schedule}", n, len(found))
        row = Row(cand.variant, " ".join(f"{key}={value}" for key, value in knobs_of(cand.schedule).items()), "ok")
        rows.append(row)
        try:
            got = _run(backend, cand.ir, cand.schedule, *sample)
        except KernelcError as err:
            row.status = f"failed: {err}"
            continue
        error, problem = _validate(got, want, default_out, cand, k.tolerance, _float_bound(k.optimized))
        row.error = float(error)
        if problem:
            row.status = f"wrong: {problem}"
            continue
        if default_out is None and cand.variant == "exact":
            default_out = got  # the first correct exact candidate (the default): indices to agree with
        times = _time(backend, cand, *timing, per_candidate)
        timed.append((n, times))
        _summarize(row, times, cand, timing[1])
    if not timed:
        raise KernelcError(f"no candidate of backend '{backend.name}' computed correct results: "
                           + "; ".join(r.status for r in rows))
    finalists = sorted(timed, key=lambda t: statistics.median(t[1]))[:FINALISTS]
    for _ in range(2):  # interleaved, so that drift of the machine hits all finalists alike
        for n, times in finalists:
            times += _time(backend, found[n], *timing, per_candidate / 4, repeats=2)
    for n, times in finalists:
        _summarize(rows[n], times, found[n], timing[1])
    best = min(statistics.median(t) for _, t in finalists)
    winner = min(n for n, t in finalists if statistics.median(t) <= best * (1 + TIE))
    rows[winner].chosen = True
    if progress:
        progress("done", len(found), len(found))
    return Tuning(found[winner].variant, knobs_of(found[winner].schedule), rows, time.perf_counter() - start,
                  bucket(sizes))


# Worker processes cost about 1 s to start (spawn, import llvmlite); measured on 2 cores with 32
# candidates they lost (4.0 s against 2.7 s), so they are used from 4 cores and 8 candidates.
PARALLEL_FROM = 8
PARALLEL_CORES = 4


def precompile(k: Any, backend: Any, found: list[Candidate], workers: int | None) -> None:
    """Compile candidates in worker processes, for backends whose compiled code lands in the
    disk cache (`compiles_in_processes`): llvmlite serializes compilation within a process.
    Kernels travel as source text and are compiled again there, never as native code."""
    if not getattr(backend, "compiles_in_processes", False) or k.source is None:
        return
    if workers is None:
        cores = os.cpu_count() or 1
        workers = min(cores, len(found)) if len(found) >= PARALLEL_FROM and cores >= PARALLEL_CORES else 0
    if workers < 2:
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    jobs = [(k.source, k.name, k.tolerance, k.optimize, c.variant, backend.name, c.schedule) for c in found]
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        list(pool.map(_compile_job, jobs))


def _compile_job(job: tuple) -> None:
    import kernelc as kc

    source, name, tolerance, optimize, variant, backend_name, schedule = job
    k = kc.kernel(source, name=name, tolerance=tolerance, optimize=optimize, autotune="off")
    ir = k.optimized if variant == "exact" else dict(k.variants())[variant]
    registry.get(backend_name).compile(ir, schedule)


def _run(backend: Any, ir: Kernel, schedule: Schedule, inputs: dict[str, np.ndarray], sizes: Sizes) -> list[np.ndarray]:
    call = runtime.allocate(ir, runtime.Bound(inputs, sizes, None))
    backend.compile(ir, schedule).run(call)
    return call.outputs


def _validate(got: list[np.ndarray], want: list[np.ndarray], default: list[np.ndarray] | None, cand: Candidate,
              tolerance: float | None, bound: float) -> tuple[float, str | None]:
    """(error against the float64 evaluation, why the candidate is wrong or None). Index outputs
    must equal the default schedule's (schedules never change them); floats must be within the
    dtype's rounding of the float64 evaluation, plus the tolerance for precision variants."""
    floats = [(g, w) for g, w in zip(got, want) if holds_floats(np.asarray(w).dtype)]
    error = measure.relative_error([g for g, _ in floats], [w for _, w in floats]) if floats else 0.0
    limit = bound + (tolerance if cand.variant != "exact" and tolerance else 0.0)
    if error > limit:
        return error, f"relative error {error:.2e} > {limit:.1e}"
    if default is not None:
        for g, d in zip(got, default):
            if not holds_floats(np.asarray(d).dtype) and not np.array_equal(g, d):
                return error, "indices differ from the default schedule's"
    return error, None


def _time(backend: Any, cand: Candidate, inputs: dict[str, np.ndarray], sizes: Sizes, budget: float,
          repeats: int = REPEATS) -> list[float]:
    executable = backend.compile(cand.ir, cand.schedule)
    call = runtime.allocate(cand.ir, runtime.Bound(inputs, sizes, None))
    executable.run(call)  # warm-up
    times: list[float] = []
    deadline = time.perf_counter() + budget
    while len(times) < repeats and (not times or time.perf_counter() < deadline):
        t = time.perf_counter()
        executable.run(call)
        times.append(time.perf_counter() - t)
    return times


def _summarize(row: Row, times: list[float], cand: Candidate, sizes: Sizes) -> None:
    median = statistics.median(times)
    row.median_s = median
    row.spread = (max(times) - min(times)) / median if median > 0 else 0.0
    ops = cost.ops_per_pair(hoist.run(cand.ir)[-1].kernel, sizes.bindings)
    row.gflops = ops * sizes.n * sizes.m / median / 1e9 if median > 0 else None


def stored(k: Any, backend: Any, sizes: Sizes) -> Tuning | None:
    rec = store.load(key(k.optimized, backend, sizes, k.tolerance))
    try:
        return Tuning.from_record(rec) if rec else None
    except (KeyError, TypeError):
        return None


def save(k: Any, backend: Any, sizes: Sizes, tuning: Tuning) -> None:
    store.save(key(k.optimized, backend, sizes, k.tolerance), tuning.record())
