"""Sign bits of float values that the IR fixes, NaN aside: `exp(-sqdist(x, y) / (2 * s * s))`
never takes a positive argument, whatever s is, so a backend can drop the upper clamp of its exp.

A value's sign bit is tracked as a constant bit XOR the sign bits of a set of unknown values:
products and quotients XOR their operands' signs exactly (zeros and infinities included), so
`s * (2 * s)` is known non-negative although s is not. Sums are known only when both terms are.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

from kernelc.ir.nodes import Node
from kernelc.ir.ops import Op

# the sign bit is clear for every result that is not NaN (sqrt keeps its operand's: sqrt(-0) = -0)
_CLEARS = frozenset({Op.SQUARE, Op.ABS, Op.EXP, Op.EXP2})


@dataclass(frozen=True)
class Sign:
    """The sign bit of a value: `negative` XOR the sign bits of `unknowns`."""
    unknowns: frozenset[Node]
    negative: bool

    def flipped(self) -> Sign:
        return Sign(self.unknowns, not self.negative)

    def times(self, other: Sign) -> Sign:
        return Sign(self.unknowns ^ other.unknowns, self.negative != other.negative)


@lru_cache(maxsize=4096)
def sign(node: Node) -> Sign:
    """The sign bit of a float node's non-NaN values (of every component of a vector)."""
    leaf = Sign(frozenset({node}), False)
    if not node.dtype.is_float:
        return leaf
    op, src = node.op, node.src
    if op is Op.CONST and isinstance(node.arg, (int, float)):
        return Sign(frozenset(), math.copysign(1.0, float(node.arg)) < 0)
    if op in _CLEARS:
        return _CLEAR
    if op is Op.SQRT or (op is Op.CAST and src[0].dtype.is_float):
        return sign(src[0])
    if op is Op.NEG:
        return sign(src[0]).flipped()
    if op in (Op.MUL, Op.DIV):
        return sign(src[0]).times(sign(src[1]))
    if op in (Op.ADD, Op.SUB):
        a, b = sign(src[0]), sign(src[1]) if op is Op.ADD else sign(src[1]).flipped()
        if not a.unknowns and a == b:  # two terms of one sign: a sum of that sign (+0 + +0 = +0)
            return a
    if op is Op.VSUM and sign(src[0]) == _CLEAR:  # (an empty sum is +0)
        return _CLEAR
    return leaf


_CLEAR = Sign(frozenset(), False)


def nonpositive(node: Node) -> bool:
    """Whether every non-NaN value of `node` is <= 0 (its sign bit is set)."""
    s = sign(node)
    return not s.unknowns and s.negative
