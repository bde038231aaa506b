"""How many operations a kernel performs per pair (i, j): the measure the optimizer lowers.

Counted per row group, as a backend runs it: every non-leaf node that varies with the group's
inner index (elementwise ops count once per vector component, component reductions once per
component), plus one state update per reduction over the inner index (per component; weighted, logsumexp and
softmax also count the exp of their online update).
Parameter reads are not operations.
"""

from __future__ import annotations

from kernelc.ir.dtypes import DType
from kernelc.ir.nodes import Kernel, other_index, walk
from kernelc.ir.ops import LEAF_OPS, Op, ReduceKind


# Relative costs for ranking variants (a division or a square root costs several multiplies,
# a transcendental function about ten, an f64 operation two f32 ones as SIMD lanes halve);
# the plain count weighs every operation 1.
WEIGHTS = {Op.DIV: 4, Op.SQRT: 4, Op.RSQRT: 4, Op.INV: 4, Op.POW: 24, Op.ERF: 12, Op.ATAN2: 16}
_TRANSCENDENTAL = frozenset({Op.EXP, Op.EXP2, Op.EXPM1, Op.LOG, Op.LOG2, Op.LOG1P, Op.SIN, Op.COS, Op.TAN, Op.ASIN,
                             Op.ACOS, Op.ATAN, Op.SINH, Op.COSH, Op.TANH, Op.SIGMOID, Op.SOFTPLUS})


def weight(op: Op, approx: bool = False) -> int:
    return (5 if approx else 10) if op in _TRANSCENDENTAL else WEIGHTS.get(op, 1)


def ops_per_pair(kernel: Kernel, bindings: dict[str, int], weighted: bool = False, approx: bool = False) -> int:
    groups: dict[str | None, list] = {}
    for out in kernel.outputs:
        groups.setdefault(out.type.index[0] if out.type.index else None, []).append(out.value)
    total = 0
    for rows, values in groups.items():
        nodes = list(walk(values))
        reds = [n for n in nodes if n.op is Op.REDUCE]
        inner = other_index(rows) if rows else (reds[0].arg.index if reds else None)
        if inner is None:
            continue
        for node in nodes:
            if node.op in LEAF_OPS or inner not in node.deps and node.op is not Op.REDUCE:
                continue
            if node.op is Op.REDUCE:
                if node.arg.index == inner:
                    total += node.dim.evaluate(bindings)
                    if weighted and node.arg.kind in (ReduceKind.LOGSUMEXP, ReduceKind.SOFTMAX):
                        # the online update's exp of the score: the reduction's own transcendental
                        total += weight(Op.EXP, approx) * (2 if node.src[0].dtype is DType.F64 else 1)
                continue
            width = max(s.dim.evaluate(bindings) for s in node.src) if node.src else 1
            if node.op not in (Op.ELEMENT, Op.SLICE, Op.CONCAT):
                total += width * (weight(node.op, approx) * (2 if node.dtype is DType.F64 else 1) if weighted else 1)
    return total
