"""partial: a kernel's reductions as partial states computed by *any* backend for one block of
the inner index, merged by the monoids of ir/monoids.py, then finished by an epilogue kernel.

Each reduction is replaced, in a derived `partial` kernel, by ordinary reductions whose results
carry its state for the block (an equivalent state where the monoid's own is not a reduction's
result):

| reduction | partial outputs | monoid state |
| --- | --- | --- |
| sum, max, min | itself | (value,) |
| mean | sum | (sum, count of the block) |
| argmin / argmax | min / max and argmin / argmax | (value, global index) |
| kmin, argkmin (kmax, argkmax) | kmin and argkmin (kmax and argkmax) | (values, global indices) |
| logsumexp(s) | L = logsumexp(s) | logsumexp (L, 1 or 0 when L = -inf) |
| softmax(s, v) | L = logsumexp(s), r = softmax(s, v) | softmax (L, r, 1 or 0) |
| logsumexp(s, w) | L = logsumexp(s), r = softmax(s, w) | softmax (L, r, 1 or 0), finished as m + log(num) |

(m, s) ~ (m + log s, 1) is the same logsumexp state, and (m, num, den) ~ (m + log den, num / den,
1) the same softmax state, so blocks merge exactly as one pass does, with the same ties, NaN
and top-K rules. Weighted logsumexp as a softmax differs from one pass in one way: a block's
maximum is taken over all its scores, also those of weight 0, so a weight-0 score larger than
the others by more than the float range (~700 in f64) underflows them.

The `finish` kernel is the original with each reduction replaced by a parameter (split_passes'
`detach`): the epilogue, run once per row on the merged results.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from kernelc.ir import build
from kernelc.ir.dtypes import DType, holds_floats
from kernelc.ir.monoids import MONOIDS, State
from kernelc.ir.nodes import Kernel, Node, Output, walk
from kernelc.ir.ops import Op, ReduceKind
from kernelc.ir.passes.split_passes import detach, value_type
from kernelc.ir.verify import verify

_PAIRED = {ReduceKind.ARGMIN: ReduceKind.MIN, ReduceKind.ARGMAX: ReduceKind.MAX,
           ReduceKind.ARGKMIN: ReduceKind.KMIN, ReduceKind.ARGKMAX: ReduceKind.KMAX}
_VALUES_AND_INDICES = {ReduceKind.MIN: ReduceKind.ARGMIN, ReduceKind.MAX: ReduceKind.ARGMAX,
                       ReduceKind.KMIN: ReduceKind.ARGKMIN, ReduceKind.KMAX: ReduceKind.ARGKMAX}


@dataclass(frozen=True)
class Plan:
    """How to run `kernel` (single-pass, outputs over one index) in blocks of its inner index."""

    kernel: Kernel
    inner: str  # the index the reductions run over
    reductions: tuple[Node, ...]
    partial: Kernel  # same parameters; outputs: every reduction's state parts, in order
    parts: tuple[tuple[int, ...], ...]  # per reduction, its outputs of `partial`
    finish: Kernel  # the epilogue, with the reductions as parameters `names`
    names: tuple[str, ...]


def _reduce(kind: ReduceKind, like: Node, src: tuple[Node, ...]) -> Node:
    return build.make(Op.REDUCE, *src, arg=replace(like.arg, kind=kind, k=like.arg.k if kind.takes_k else None))


def _wide(node: Node) -> Node:
    """f16/bf16 values summed in f32, so that a block's sum is not rounded to the narrow type."""
    return build.make(Op.CAST, node, arg=DType.F32) if node.dtype in (DType.F16, DType.BF16) else node


def _parts(r: Node) -> list[Node]:
    kind = r.arg.kind
    if kind in (ReduceKind.MAX, ReduceKind.MIN):
        return [r]
    if kind in (ReduceKind.SUM, ReduceKind.MEAN):
        return [_reduce(ReduceKind.SUM, r, (_wide(r.src[0]),))]
    if kind in _PAIRED or kind in _VALUES_AND_INDICES:
        values = _PAIRED.get(kind, kind)
        return [_reduce(values, r, r.src), _reduce(_VALUES_AND_INDICES[values], r, r.src)]
    src = tuple(_wide(s) for s in r.src)
    if kind is ReduceKind.LOGSUMEXP and len(r.src) == 1:
        return [_reduce(ReduceKind.LOGSUMEXP, r, src)]
    return [_reduce(ReduceKind.LOGSUMEXP, r, src[:1]), _reduce(ReduceKind.SOFTMAX, r, src)]


def plan(kernel: Kernel) -> Plan:
    reductions = tuple(dict.fromkeys(n for n in walk([o.value for o in kernel.outputs]) if n.op is Op.REDUCE))
    if not reductions:
        raise ValueError("a kernel without reductions needs no partial states")
    inners = {r.arg.index for r in reductions}
    if len(inners) != 1:
        raise ValueError("the reductions of one output group run over one index")
    outputs: list[Node] = []
    parts = []
    for r in reductions:
        nodes = _parts(r)
        parts.append(tuple(range(len(outputs), len(outputs) + len(nodes))))
        outputs += nodes
    partial = verify(Kernel(f"{kernel.name}__partial", kernel.params, tuple(Output(n, value_type(n)) for n in outputs),
                            kernel.symbols, kernel.checks))
    finish, names = detach(kernel, list(reductions), "__reduced")
    return Plan(kernel, inners.pop(), reductions, partial, tuple(parts), finish, names)


# --- states of blocks: from the partial kernel's outputs, merged, finished -------------------------

def _rows(a: np.ndarray, indexed: bool) -> np.ndarray:
    """Results as (rows, components); a reduction whose value is the same for every row (its
    argument reads only the inner index) has one row."""
    if not indexed:
        a = a[None]
    return a[:, None] if a.ndim == 1 else a


def _global(index: np.ndarray, offset: int) -> np.ndarray:
    return np.where(index >= 0, index + offset, -1).astype(np.int64)


def _weighed(logsumexp: np.ndarray) -> np.ndarray:
    """The scale of an (L, ...) state: 0 for an empty (all -inf) block, else 1."""
    return np.where(logsumexp == -np.inf, 0.0, 1.0)


def block_state(r: Node, outputs: list[np.ndarray], offset: int, count: int) -> State:
    """The monoid state of reduction `r` for one block of `count` inner elements starting at
    `offset`, from its parts among the partial kernel's outputs for that block."""
    kind = r.arg.kind
    parts = [_rows(np.asarray(o), bool(r.deps)) for o in outputs]
    if kind is ReduceKind.SUM:
        return (parts[0].astype(np.float64 if holds_floats(parts[0].dtype) else np.int64),)
    if kind is ReduceKind.MEAN:
        return parts[0].astype(np.float64), np.full((parts[0].shape[0], 1), float(count))
    values = parts[0].astype(np.float64) if r.src[0].dtype.is_float else parts[0]  # bf16/f16 exactly, as NumPy floats
    if kind in (ReduceKind.MAX, ReduceKind.MIN):
        return (values,)
    if kind in _PAIRED or kind in _VALUES_AND_INDICES:
        return values, _global(parts[1], offset)
    lse = parts[0].astype(np.float64)
    if kind is ReduceKind.LOGSUMEXP and len(r.src) == 1:
        return lse, _weighed(lse)
    return lse, parts[1].astype(np.float64), _weighed(lse)


def _monoid(r: Node) -> ReduceKind:
    kind = r.arg.kind
    if kind is ReduceKind.LOGSUMEXP and len(r.src) == 2:
        return ReduceKind.SOFTMAX
    return kind


def combine(r: Node, a: State, b: State) -> State:
    """Merge the states of two consecutive blocks (a first)."""
    return MONOIDS[_monoid(r)].combine(a, b)


def finalize(r: Node, state: State) -> np.ndarray:
    """The reduction's result, in its dtype, shaped as the finish kernel's parameter."""
    if r.arg.kind is ReduceKind.LOGSUMEXP and len(r.src) == 2:
        m, num, den = state
        with np.errstate(divide="ignore", invalid="ignore"):
            value = np.where(den == 0, -np.inf, m + np.log(num))
    else:
        value = MONOIDS[_monoid(r)].finalize(state)
    value = np.asarray(value).astype(r.dtype.numpy)
    value = value.reshape(value.shape[0]) if r.is_scalar else value
    return value if r.deps else value[0]
