"""Measuring kernels on data: the error of a result against a float64 evaluation, sampling the
rows of a call, and the tolerance-driven choice of a precision variant (ir/passes/precision.py
builds the variants; this module runs them)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from kernelc.backends.interface import Sizes
from kernelc.ir.dtypes import holds_floats
from kernelc.ir.nodes import Kernel, reductions
from kernelc.ir.passes.precision import weighted_cost


def relative_error(got: list[np.ndarray], want: list[np.ndarray]) -> float:
    """The largest normwise relative error over the outputs; inf when an integer output (an index)
    or the pattern of NaN and infinities differs."""
    worst = 0.0
    for g, w in zip(got, want):
        g, w = np.asarray(g), np.asarray(w)
        if not holds_floats(w.dtype) and not holds_floats(g.dtype):
            if not np.array_equal(g, w):
                return float("inf")
            continue
        g64, w64 = g.astype(np.float64), w.astype(np.float64)
        finite = np.isfinite(w64)
        if not np.array_equal(finite, np.isfinite(g64)) or not np.array_equal(g64[~finite], w64[~finite],
                                                                                 equal_nan=True):
            return float("inf")
        if finite.any():
            scale = np.abs(w64[finite]).max()
            err = np.abs(g64[finite] - w64[finite]).max()
            worst = max(worst, err / scale if scale > 0 else (0.0 if err == 0 else float("inf")))
    return worst


@dataclass(frozen=True)
class VariantResult:
    name: str
    cost: int  # weighted operations per pair (ir/passes/cost.py), after hoisting
    error: float | None  # measured relative error on the sampled rows; None if not run
    chosen: bool


SAMPLED_ROWS = 64
_UNSAMPLED_PAIRS = 1 << 22  # a kernel whose rows cannot be sampled is checked whole up to this size


def row_sampleable(kernel: Kernel) -> bool:
    """Whether each output row depends on its own i-inputs only (outputs indexed by i, no
    reduction over i), so a subset of rows can be computed alone."""
    by_rows = all(o.type.index[:1] == ("i",) for o in kernel.outputs)
    return by_rows and not any(r.arg.index == "i" for r in reductions([o.value for o in kernel.outputs]))


def take_rows(kernel: Kernel, inputs: dict[str, np.ndarray], sizes: Sizes,
              rows: np.ndarray) -> tuple[dict[str, np.ndarray], Sizes]:
    taken = {p.name: inputs[p.name][rows] if p.type.index[:1] == ("i",) else inputs[p.name] for p in kernel.params}
    return taken, Sizes(len(rows), sizes.m, sizes.dims)


def sample(kernel: Kernel, inputs: dict[str, np.ndarray], sizes: Sizes) -> tuple[dict[str, np.ndarray], Sizes] | None:
    """Inputs restricted to a few rows when the kernel allows; the whole call if small enough;
    else None."""
    if row_sampleable(kernel):
        rows = np.unique(np.linspace(0, max(sizes.n - 1, 0), min(sizes.n, SAMPLED_ROWS)).astype(np.int64))
        return take_rows(kernel, inputs, sizes, rows)
    return (inputs, sizes) if sizes.n * sizes.m <= _UNSAMPLED_PAIRS else None


def choose(exact: Kernel, candidates: list[tuple[str, Kernel]], inputs: dict[str, np.ndarray], sizes: Sizes,
           tolerance: float, run: Callable, reference: Callable) -> tuple[Kernel, list[VariantResult]]:
    """The cheapest candidate whose relative error against `reference` (a float64 evaluation of
    the exact kernel) on sampled rows is within `tolerance`, else `exact`; and the report.
    `run(name, kernel, inputs, sizes)` and `reference(kernel, inputs, sizes)` return the outputs."""
    bindings = sizes.bindings
    exact_cost = weighted_cost(exact, bindings)
    cheaper = sorted(((weighted_cost(k, bindings, approx=True), name, k) for name, k in candidates),
                     key=lambda t: (t[0], t[1]))
    cheaper = [(c, name, k) for c, name, k in cheaper if c < exact_cost]
    sampled = sample(exact, inputs, sizes) if cheaper else None
    report: list[VariantResult] = []
    chosen, chosen_name = exact, "exact"  # by name: "approx-math" is the exact kernel with approximate math
    if sampled is not None:
        want = reference(exact, *sampled)
        for price, name, k in cheaper:
            error = float(relative_error(run(name, k, *sampled), want))
            take = bool(chosen_name == "exact" and error <= tolerance)
            chosen, chosen_name = (k, name) if take else (chosen, chosen_name)
            report.append(VariantResult(name, price, error, take))
    else:
        report += [VariantResult(name, price, None, False) for price, name, k in cheaper]
    report.append(VariantResult("exact", exact_cost, 0.0, chosen_name == "exact"))
    return chosen, report
