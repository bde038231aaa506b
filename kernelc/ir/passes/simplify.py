"""simplify: constant folding, algebraic identities, strength reduction and a canonical order of
commutative operands.

`exact` rules give bit-identical results on every backend (IEEE 754 round-to-nearest, NaN and
signed zeros included): `x * 1`, `x - 0`, `-(-x)`, `x - (-y)`, `x ** 2 -> x * x`, `x / 2**k ->
x * 2**-k`, a negation moved to the operand computed less often (`-a / c -> a / -c`), ...
`fast` rules change rounding or special cases and are used only under a `tolerance=`:
division by a value computed less often becomes a multiplication by its hoistable inverse,
`x ** 0.5 -> sqrt(x)`, `x ** -1 -> inv(x)`, `exp(a) * exp(b) -> exp(a + b)`, `sqrt(x * x) -> abs(x)`.
"""

from __future__ import annotations

import hashlib
import math

import numpy as np

from kernelc.ir import build
from kernelc.ir.dtypes import DType
from kernelc.ir.nodes import Kernel, Node
from kernelc.ir.ops import ELEMENTWISE_OPS, Op
from kernelc.ir.passes.rewrite import rewrite
from kernelc.ir.reference import compute_dtype, evaluate_elementwise

COMMUTATIVE = frozenset({Op.ADD, Op.MUL, Op.MIN, Op.MAX, Op.EQ, Op.NE, Op.AND, Op.OR})


def run(kernel: Kernel, fast: bool = False) -> Kernel:
    return rewrite(kernel, lambda node: simplify(node, fast))


def simplify(node: Node, fast: bool = False) -> Node | None:
    return fold(node) or order(node) or exact(node) or (fast_rule(node) if fast else None)


# --- constant folding -------------------------------------------------------------------------------

def fold(node: Node) -> Node | None:
    """An elementwise op of constants, when evaluating it in float64 and in float32 agree (so
    that no backend, whichever of the two it computes narrow floats in, has another result)."""
    if node.op not in ELEMENTWISE_OPS or not node.src or any(s.op is not Op.CONST for s in node.src):
        return None
    wide = _evaluate(node, lambda s: np.asarray(s.arg, compute_dtype(s.dtype)))
    if node.dtype.is_float or any(s.dtype.is_float for s in node.src):
        narrow = _evaluate(node, lambda s: np.asarray(s.arg, _narrow(s.dtype)))
        if narrow is None or wide is None or not _same(float(wide), float(narrow)):
            return None
    return None if wide is None else build.const(wide.item(), node.dtype)


def _narrow(dt: DType) -> np.dtype:
    return np.dtype(np.float32) if dt.is_float and dt is not DType.F64 else compute_dtype(dt)


def _evaluate(node: Node, operand) -> np.ndarray | None:
    try:
        with np.errstate(all="ignore"):
            return np.asarray(evaluate_elementwise(node.op, [operand(s) for s in node.src], node.arg))
    except (TypeError, ValueError, OverflowError):
        return None


def _same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or (a == b and math.copysign(1, a) == math.copysign(1, b))


# --- canonical order of commutative operands --------------------------------------------------------

def digest(node: Node) -> str:
    """A structural hash, the same in every process (Python's hash() of strings is not)."""
    cached = node.__dict__.get("_digest")
    if cached is None:
        h = hashlib.sha1(f"{node.op}|{node.dtype}|{node.dim}|{sorted(node.deps)}|{node.arg!r}".encode())
        for s in node.src:
            h.update(digest(s).encode())
        cached = h.hexdigest()
        object.__setattr__(node, "_digest", cached)
    return cached


def _order_key(node: Node) -> tuple:
    # the operand that varies with more indices first, constants last, then by structure
    return (-len(node.deps), node.op is Op.CONST, digest(node))


def order(node: Node) -> Node | None:
    if node.op not in COMMUTATIVE:
        return None
    a, b = node.src
    if _order_key(a) <= _order_key(b):
        return None
    return build.make(node.op, b, a, arg=node.arg)


# --- exact identities -------------------------------------------------------------------------------

def _is_const(node: Node, value: float) -> bool:
    return node.op is Op.CONST and not node.dtype.is_bool and node.arg == value and \
        math.copysign(1, float(node.arg)) == math.copysign(1, value)


def _power_of_two_inverse(node: Node) -> Node | None:
    """1 / c as a constant of c's dtype when c is a power of two whose inverse is representable."""
    if node.op is not Op.CONST or not node.dtype.is_float:
        return None
    c = float(node.arg)
    if c == 0 or not math.isfinite(c) or math.frexp(abs(c))[0] != 0.5:
        return None
    inverse = 1.0 / c
    with np.errstate(all="ignore"):
        if float(np.asarray(inverse, node.dtype.numpy)) != inverse:
            return None
    return build.const(inverse, node.dtype)


def _fewer_deps(a: Node, b: Node) -> bool:
    return a.deps < b.deps


def exact(node: Node) -> Node | None:
    op, src = node.op, node.src
    if not node.dtype.is_float and op not in (Op.NOT, Op.WHERE, Op.MIN, Op.MAX):
        return None
    if op is Op.NEG and src[0].op is Op.NEG:
        return src[0].src[0]
    if op is Op.NOT and src[0].op is Op.NOT:
        return src[0].src[0]
    if op in (Op.MIN, Op.MAX) and src[0] == src[1]:
        return src[0]
    if op is Op.WHERE:
        if src[1] == src[2]:
            return src[1]
        if src[0].op is Op.CONST:
            return src[1] if src[0].arg else src[2]
        return None
    if op is Op.MUL:
        a, b = src
        if _is_const(b, 1.0):
            return a
        if a.op is Op.NEG and b.op is Op.NEG:
            return build.make(Op.MUL, a.src[0], b.src[0])
        if a.op is Op.NEG and _fewer_deps(b, a):  # negate once per row instead of once per pair
            return build.make(Op.MUL, a.src[0], build.make(Op.NEG, b))
    if op is Op.DIV:
        a, b = src
        if _is_const(b, 1.0):
            return a
        if a.op is Op.NEG and _fewer_deps(b, a):
            return build.make(Op.DIV, a.src[0], build.make(Op.NEG, b))
        inverse = _power_of_two_inverse(b)
        if inverse is not None:
            return build.make(Op.MUL, a, inverse)
    if op is Op.SUB:
        a, b = src
        if _is_const(b, 0.0):
            return a
        if b.op is Op.NEG:
            return build.make(Op.ADD, a, b.src[0])
    if op is Op.ADD:
        a, b = src
        if _is_const(b, -0.0):
            return a
        if b.op is Op.NEG:
            return build.make(Op.SUB, a, b.src[0])
        if a.op is Op.NEG:
            return build.make(Op.SUB, b, a.src[0])
    if op is Op.POW and src[1].op is Op.CONST:
        a, e = src
        if _is_const(e, 1.0):
            return a
        if _is_const(e, 2.0):
            return build.make(Op.SQUARE, a)
        if _is_const(e, 0.0) or _is_const(e, -0.0):
            return build.const(1.0, node.dtype)
    if op in (Op.ABS, Op.SQUARE) and src[0].op in (Op.NEG, Op.ABS):
        return build.make(op, src[0].src[0])
    return None


# --- rules for a tolerance ------------------------------------------------------------------------------

def fast_rule(node: Node) -> Node | None:
    op, src = node.op, node.src
    if not node.dtype.is_float:
        return None
    if op is Op.DIV and _fewer_deps(src[1], src[0]):
        return build.make(Op.MUL, src[0], build.make(Op.INV, src[1]))
    if op is Op.POW and src[1].op is Op.CONST:
        a, e = src
        table = {0.5: Op.SQRT, -1.0: Op.INV, -0.5: Op.RSQRT}
        if float(e.arg) in table:
            return build.make(table[float(e.arg)], a)
        if float(e.arg) == 3.0:
            return build.make(Op.MUL, build.make(Op.SQUARE, a), a)
    if op is Op.MUL and src[0].op is Op.EXP and src[1].op is Op.EXP:
        return build.make(Op.EXP, build.make(Op.ADD, src[0].src[0], src[1].src[0]))
    if op is Op.SQRT and src[0].op is Op.SQUARE:
        return build.make(Op.ABS, src[0].src[0])
    return None

