"""Reductions over an index, each defined once as a monoid: identity, block, combine, finalize.

`block` reduces a block of values (rows x cols x dim, cols running over the reduced index, with
the global index of each column) to a partial state; `combine` merges two partial states. Any
split of the index range (tiles, threads, Dask chunks) merged with `combine`, in any grouping,
gives the same result as one sequential pass, with the tie, NaN and empty-range rules of
LANGUAGE.md §6. This module is the executable definition of those rules: the NumPy backend
runs it directly, other backends implement the same states.

States are tuples of arrays with a leading `rows` axis. Values come in the evaluator's compute
dtype (float64 for every float dtype, the integer's own dtype, or bool).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from kernelc.ir.ops import ReduceKind

State = tuple[np.ndarray, ...]


def _lowest(dt: np.dtype) -> object:
    if dt.kind == "f":
        return -np.inf
    if dt.kind == "b":
        return False
    return np.iinfo(dt).min


def _highest(dt: np.dtype) -> object:
    if dt.kind == "f":
        return np.inf
    if dt.kind == "b":
        return True
    return np.iinfo(dt).max


def scale_by_max(s: np.ndarray, m: np.ndarray) -> np.ndarray:
    """exp(s - m) for the online max-rescaling of logsumexp and softmax, with m = max(s):
    an all -inf (or empty) range weighs 0, and +inf scores weigh 1 against an +inf maximum."""
    with np.errstate(invalid="ignore", over="ignore"):
        shifted = np.where(s == m, 1.0, np.exp(s - m))
    return np.where(m == -np.inf, 0.0, shifted)


@dataclass(frozen=True)
class Monoid:
    kind: ReduceKind
    identity: Callable[[int, int, np.dtype], State]  # (rows, dim, value dtype)
    block: Callable[[tuple[np.ndarray, ...], np.ndarray, int], State]  # (values [rows, cols, dim], idx [cols], dim)
    combine: Callable[[State, State], State]
    finalize: Callable[[State], np.ndarray]  # [rows, dim]

    def accumulate(self, state: State, values: tuple[np.ndarray, ...], idx: np.ndarray) -> State:
        """Fold a block into `state`; `dim` of the result comes from the state (K for the k-ones)."""
        if idx.size == 0:
            return state
        return self.combine(state, self.block(values, idx, state[-1].shape[1]))


def _acc_dtype(dt: np.dtype) -> np.dtype:
    return np.dtype(np.float64) if dt.kind == "f" else np.dtype(np.int64)


# --- sum and mean -------------------------------------------------------------------------------

def _sum_identity(rows: int, dim: int, dt: np.dtype) -> State:
    return (np.zeros((rows, dim), _acc_dtype(dt)),)


def _sum_block(values: tuple[np.ndarray, ...], idx: np.ndarray, dim: int) -> State:
    return (values[0].sum(axis=1, dtype=_acc_dtype(values[0].dtype)),)


def _mean_identity(rows: int, dim: int, dt: np.dtype) -> State:
    return (np.zeros((rows, dim)), np.zeros((rows, 1)))


def _mean_block(values: tuple[np.ndarray, ...], idx: np.ndarray, dim: int) -> State:
    v = values[0]
    return (v.sum(axis=1, dtype=np.float64), np.full((v.shape[0], 1), float(idx.size)))


def _mean_finalize(state: State) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return state[0] / state[1]


def _add(a: State, b: State) -> State:
    return tuple(x + y for x, y in zip(a, b))


# --- max and min: NaN propagates ----------------------------------------------------------------

def _extreme(largest: bool) -> Monoid:
    def identity(rows: int, dim: int, dt: np.dtype) -> State:
        return (np.full((rows, dim), _lowest(dt) if largest else _highest(dt), dt),)

    def block(values: tuple[np.ndarray, ...], idx: np.ndarray, dim: int) -> State:
        return ((values[0].max if largest else values[0].min)(axis=1),)

    def combine(a: State, b: State) -> State:
        return ((np.maximum if largest else np.minimum)(a[0], b[0]),)

    return Monoid(ReduceKind.MAX if largest else ReduceKind.MIN, identity, block, combine, lambda s: s[0])


# --- argmax and argmin: the first NaN wins, then the extreme, ties to the smallest index -------

def _arg_extreme(largest: bool) -> Monoid:
    def identity(rows: int, dim: int, dt: np.dtype) -> State:
        return (np.full((rows, 1), _lowest(dt) if largest else _highest(dt), dt), np.full((rows, 1), -1, np.int64))

    def block(values: tuple[np.ndarray, ...], idx: np.ndarray, dim: int) -> State:
        v = values[0][:, :, 0]
        k = (np.argmax if largest else np.argmin)(v, axis=1)  # NumPy returns the first NaN, then first extreme
        best = np.take_along_axis(v, k[:, None], axis=1)
        return best, idx[k][:, None].astype(np.int64)

    def combine(a: State, b: State) -> State:
        (va, ia), (vb, ib) = a, b
        nan_a, nan_b = _isnan(va), _isnan(vb)
        better = (vb > va) if largest else (vb < va)
        tie = (vb == va) | (nan_a & nan_b)
        better = (better & ~nan_a) | (nan_b & ~nan_a)
        take_b = (ib >= 0) & ((ia < 0) | better | (tie & (ib < ia)))
        return np.where(take_b, vb, va), np.where(take_b, ib, ia)

    kind = ReduceKind.ARGMAX if largest else ReduceKind.ARGMIN
    return Monoid(kind, identity, block, combine, lambda s: s[1])


def _isnan(v: np.ndarray) -> np.ndarray:
    return np.isnan(v) if v.dtype.kind == "f" else np.zeros(v.shape, bool)


# --- logsumexp and softmax: online max-rescaling ------------------------------------------------

def _lse_identity(rows: int, dim: int, dt: np.dtype) -> State:
    return np.full((rows, dim), -np.inf), np.zeros((rows, dim))


def _lse_block(values: tuple[np.ndarray, ...], idx: np.ndarray, dim: int) -> State:
    """The maximum is taken per component over the scores whose weight is not 0, so that a large
    score with weight 0 cannot underflow the others. A weight-0 term is 0, except with a score
    of +inf or NaN, where it is NaN (as exp(s) * 0 is in IEEE arithmetic)."""
    s = values[0]
    if len(values) == 1:
        m = s.max(axis=1)
        return m, scale_by_max(s, m[:, None, :]).sum(axis=1)
    w = values[1]
    zero = w == 0
    m = np.where(zero, -np.inf, s).max(axis=1)
    with np.errstate(invalid="ignore"):
        terms = scale_by_max(s, m[:, None, :]) * w
    terms = np.where(zero & (s < np.inf), 0.0, np.where(zero, np.nan, terms))
    return m, terms.sum(axis=1)


def _lse_combine(a: State, b: State) -> State:
    m = np.maximum(a[0], b[0])
    with np.errstate(invalid="ignore"):
        return m, a[1] * scale_by_max(a[0], m) + b[1] * scale_by_max(b[0], m)


def _lse_finalize(state: State) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return state[0] + np.log(state[1])


def _softmax_identity(rows: int, dim: int, dt: np.dtype) -> State:
    return np.full((rows, 1), -np.inf), np.zeros((rows, dim)), np.zeros((rows, 1))


def _softmax_block(values: tuple[np.ndarray, ...], idx: np.ndarray, dim: int) -> State:
    s, v = values
    m = s.max(axis=1)
    w = scale_by_max(s, m[:, None, :])
    with np.errstate(invalid="ignore"):
        return m, (w * v).sum(axis=1), w.sum(axis=1)


def _softmax_combine(a: State, b: State) -> State:
    m = np.maximum(a[0], b[0])
    sa, sb = scale_by_max(a[0], m), scale_by_max(b[0], m)
    with np.errstate(invalid="ignore"):
        return m, a[1] * sa + b[1] * sb, a[2] * sa + b[2] * sb


def _softmax_finalize(state: State) -> np.ndarray:
    """An empty range, or one where every score is -inf, gives 0."""
    _, num, den = state
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den == 0, 0.0, num / np.where(den == 0, 1.0, den))


# --- kmin, kmax, argkmin, argkmax: K sorted (value, index) pairs --------------------------------

def _k_best(kind: ReduceKind, largest: bool, give_index: bool) -> Monoid:
    """Order: real values (ascending for kmin, descending for kmax), then NaNs, then padding
    (index -1); equal values by smallest index."""

    def identity_k(rows: int, k: int, dt: np.dtype) -> State:
        return np.full((rows, k), _lowest(dt) if largest else _highest(dt), dt), np.full((rows, k), -1, np.int64)

    def select(vals: np.ndarray, idx: np.ndarray, k: int) -> State:
        if vals.dtype.kind == "f":
            key = -vals if largest else vals
        else:
            key = ~vals.astype(np.int64) if largest else vals.astype(np.int64)
        order = np.lexsort((np.where(idx < 0, 0, idx), key, _isnan(vals), idx < 0), axis=-1)[:, :k]
        return np.take_along_axis(vals, order, 1), np.take_along_axis(idx, order, 1)

    def block(values: tuple[np.ndarray, ...], idx: np.ndarray, dim: int) -> State:
        v = values[0][:, :, 0]
        return select(v, np.broadcast_to(idx.astype(np.int64), v.shape), dim)

    def combine(a: State, b: State) -> State:
        k = max(a[0].shape[1], b[0].shape[1])
        vals = np.concatenate([a[0], b[0]], axis=1)
        idx = np.concatenate([a[1], b[1]], axis=1)
        return select(vals, idx, k)

    def finalize(state: State) -> np.ndarray:
        return state[1] if give_index else state[0]

    return Monoid(kind, identity_k, block, combine, finalize)


MONOIDS: dict[ReduceKind, Monoid] = {
    ReduceKind.SUM: Monoid(ReduceKind.SUM, _sum_identity, _sum_block, _add, lambda s: s[0]),
    ReduceKind.MEAN: Monoid(ReduceKind.MEAN, _mean_identity, _mean_block, _add, _mean_finalize),
    ReduceKind.MAX: _extreme(largest=True),
    ReduceKind.MIN: _extreme(largest=False),
    ReduceKind.ARGMAX: _arg_extreme(largest=True),
    ReduceKind.ARGMIN: _arg_extreme(largest=False),
    ReduceKind.LOGSUMEXP: Monoid(ReduceKind.LOGSUMEXP, _lse_identity, _lse_block, _lse_combine, _lse_finalize),
    ReduceKind.SOFTMAX: Monoid(ReduceKind.SOFTMAX, _softmax_identity, _softmax_block, _softmax_combine,
                               _softmax_finalize),
    ReduceKind.KMIN: _k_best(ReduceKind.KMIN, largest=False, give_index=False),
    ReduceKind.KMAX: _k_best(ReduceKind.KMAX, largest=True, give_index=False),
    ReduceKind.ARGKMIN: _k_best(ReduceKind.ARGKMIN, largest=False, give_index=True),
    ReduceKind.ARGKMAX: _k_best(ReduceKind.ARGKMAX, largest=True, give_index=True),
}
