"""The K best (value, index) pairs of a row, kept sorted in one vector of MAX_SLOTS lanes
(values, with their indices in an i32 vector): ordered by value, then index, the order in which
kernelc breaks ties (docs/SEMANTICS.md); empty slots hold (+inf, -1). Generated without
branches: one insertion, and a bitonic network that sorts a vector of them and keeps the best
of two sorted vectors."""

from __future__ import annotations

from llvmlite import ir

from kernelc.backends.llvm import ops
from kernelc.backends.llvm.ops import I32

MAX_SLOTS = 16
Slots = tuple[ir.Value, ir.Value]  # (values <16 x f32>, indices <16 x i32>)
_UP = ir.Constant(ir.VectorType(I32, MAX_SLOTS), [0] + list(range(MAX_SLOTS, 2 * MAX_SLOTS - 1)))


def inserted(b: ir.IRBuilder, old_v: ir.Value, old_i: ir.Value, v: ir.Value, j: ir.Value) -> Slots:
    """Slots (values, indices) with (v, j) inserted, sorted by value then index, without
    branches. The slots hold finite values and +inf when empty, so the lanes (v, j) sorts
    before form a suffix: they take the slot before them, the first of them (v, j) (its value
    is max(old[p - 1], v)). A (v, j) that enters no slot, or is there already (a guard: each
    place is met once per row, the seeds' masked out of the scan), changes nothing."""
    v_all, j_all = ops.splat(b, v, MAX_SLOTS), ops.splat(b, b.trunc(j, I32), MAX_SLOTS)
    there = b.icmp_unsigned("!=", b.bitcast(b.icmp_signed("==", j_all, old_i), ir.IntType(MAX_SLOTS)),
                            ir.Constant(ir.IntType(MAX_SLOTS), 0))
    before = b.and_(_before(b, v_all, j_all, old_v, old_i), ops.splat(b, b.not_(there), MAX_SLOTS))
    shifted = b.shuffle_vector(v_all, old_v, _UP)
    new_v = b.select(before, b.select(b.fcmp_ordered(">", shifted, v_all), shifted, v_all), old_v)
    after_first = b.shuffle_vector(ir.Constant(before.type, [0] * MAX_SLOTS), before, _UP)
    return new_v, b.select(before, b.select(after_first, b.shuffle_vector(j_all, old_i, _UP), j_all), old_i)


def _before(b: ir.IRBuilder, v: ir.Value, i: ir.Value, w: ir.Value, j: ir.Value) -> ir.Value:
    """Lane by lane, whether (v, i) comes before (w, j): by value, then index."""
    return b.or_(b.fcmp_ordered("<", v, w), b.and_(b.fcmp_ordered("==", v, w), b.icmp_signed("<", i, j)))


def _exchanged(b: ir.IRBuilder, v: ir.Value, i: ir.Value, stride: int, takes_min: list[bool]) -> Slots:
    """One step of a sorting network on slots (values, indices) ordered by value, then
    index: each lane meets the lane `stride` away and keeps the smaller pair where
    `takes_min`, else the larger."""
    lanes = ir.Constant(ir.VectorType(I32, MAX_SLOTS), [s ^ stride for s in range(MAX_SLOTS)])
    pv, pi = b.shuffle_vector(v, v, lanes), b.shuffle_vector(i, i, lanes)
    gives = ir.Constant(ir.VectorType(ir.IntType(1), MAX_SLOTS), [not t for t in takes_min])
    keeps = b.xor(_before(b, v, i, pv, pi), gives)
    return b.select(keeps, v, pv), b.select(keeps, i, pi)


def _merged(b: ir.IRBuilder, v: ir.Value, i: ir.Value) -> Slots:
    """A bitonic sequence of slots sorted (ascending)."""
    stride = MAX_SLOTS // 2
    while stride:
        v, i = _exchanged(b, v, i, stride, [not s & stride for s in range(MAX_SLOTS)])
        stride //= 2
    return v, i


def sorted_slots(b: ir.IRBuilder, v: ir.Value, i: ir.Value) -> Slots:
    """Slots sorted by a bitonic network."""
    size = 2
    while size <= MAX_SLOTS:
        stride = size // 2
        while stride:
            v, i = _exchanged(b, v, i, stride, [(not s & stride) == (not s & size) for s in range(MAX_SLOTS)])
            stride //= 2
        size *= 2
    return v, i


def lowest(b: ir.IRBuilder, a: Slots, c: Slots) -> Slots:
    """The MAX_SLOTS smallest of two sorted sets of slots, sorted: lane by lane the smaller of
    a and c reversed (a bitonic sequence holding them), then merged."""
    back = ir.Constant(ir.VectorType(I32, MAX_SLOTS), list(reversed(range(MAX_SLOTS))))
    (av, ai), (cv, ci) = a, c
    cv, ci = b.shuffle_vector(cv, cv, back), b.shuffle_vector(ci, ci, back)
    less = _before(b, av, ai, cv, ci)
    return _merged(b, b.select(less, av, cv), b.select(less, ai, ci))
