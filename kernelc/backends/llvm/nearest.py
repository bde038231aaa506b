"""Nearest neighbours (argkmin/kmin/argmin/min of `sqdist(x, y)`) through a cheap filter with an
exact recheck: the results are those of the exact f32 code, bit for bit.

The exact distance sum_d (x_d - y_d)^2 costs 2D vector operations per pair. Expanded, it is
|x|^2 + |y|^2 - 2 x.y, and for one row i the term |x|^2 is a constant: the filter score
f_j = |y_j|^2 + sum_d (-2 x_d) y_jd costs D fused multiply-adds per pair, with |y_j|^2 and the
coefficients -2 x_d computed once per call. Expanded sums cancel (that is why the exact code
does not use them), but their error is bounded: a pair whose exact distance could still enter
a row's K slots has f_j <= T_i, where T_i is the row's current K-th distance minus |x_i|^2 plus
a margin (`prepared`). Only the pairs that pass get their exact distance, computed as the
exact code computes it (codegen._Chains), and are inserted by the same order (value, then
index).

The error bound. Coordinates are centred on the mean of y (distances do not change, and data
far from the origin keeps a small margin) and rounded to f32: x~ and y~. With u = 2^-24,
S = (|x~_i| + max_j |y~_j|)^2 and the computed values f^ and d^ (exact code),
    |d^ - d| <= 1.01 (D + 2) u d,   d <= S (1 + 2u),
    |f^ - (|x~ - y~|^2 - |x~|^2)| <= 1.01 (D + 2) u S,
    | |x~ - y~|^2 - d | <= 3 u S (the rounding of the centred coordinates),
so d^_j <= last implies f^_j <= last - |x~|^2 + (2.02 D + 7.1) u S. The margin is (4D + 16) u S
plus 2^-96 (subnormal products); the threshold adds 16 u (last + |x~|^2), which covers its two
f32 roundings (`prepared`). The bound needs finite inputs of moderate size: calls with a
value that is not finite or of magnitude outside [2^-40, 2^40] (0 is fine) run the exact code
instead, as do calls of fewer rows or points than `Nearest.min_rows` and `min_points`
(the per-call work does not pay).

Pruning. Points and rows are both put in Z order (Morton codes over y's bounding box), so
that a block of BLOCK_POINTS consecutive points and a group of GROUP consecutive rows each lie
in a small box. Before a tile of points is walked, a group lists the blocks whose box could
hold a pair within reach, the largest K-th distance of its rows: with g the squared distance
between the two boxes (f64, on the original coordinates), a block is skipped when
g (1 - (D + 3) 2^-18) > reach + 2^-96. For every pair of the two boxes d >= g (1 - (D + 2)
2^-53) (the f64 roundings of g) and d^ >= d (1 - 1.01 (D + 2) u) - 2^-140 (subnormal
products), so a skipped pair has d^ > reach >= each row's last value: it could not have entered
any slot, not even by a tie. On uniform data in 3D a group of 16 rows walks 14% of the blocks
at 1e4 x 1e4, 9% at 1e6 x 1e4 and 2% at 1e5 x 1e5 (counted); on clustered data, fewer still.
Where nothing is near, nothing is skipped, and the scan costs what it did without boxes.

How many pairs pass. With the slots filled from the first points in storage order, a row
passes about K (1 + ln(M / K)) times, and each pass costs a recheck, a dependent chain of some
40 cycles: at M = 1e4 they took as long as the row's 1e4 filter scores. So each row's slots are
first filled from SEED points near it (`ZOrder`: the Z order from the row's own place), and
the places of those points are masked out of the row's compares (they are in its slots already:
each would pass). About 8 passes per row are left at 1e4 x 1e4 (counted), some 60 cycles each
with the mispredicted branch to the recheck: half of the generated code's time there. Seeding
takes the SEED points' exact distances a vector at a time and sorts them by a network.

The generated function (`generate`): rows in register blocks of ROWS, the points in vectors of
16 (8 without AVX-512) from a structure-of-arrays copy of y~ and |y~|^2; each row keeps its K
slots in one vector of values and one of indices (K <= 16) and its threshold in a register; a
vector of pairs branches to the recheck only when one of its lanes passes for some row.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass

import numpy as np
from llvmlite import ir

from kernelc.backends.llvm import ops, slots, zorder
from kernelc.backends.llvm.codegen import WIDE_DIM, _Chains
from kernelc.backends.llvm.ops import F32, F64, I1, I32, I64
from kernelc.backends.llvm.patterns import row_and_column
from kernelc.backends.llvm.zorder import Points, ZOrder
from kernelc.backends.threads import map_jobs
from kernelc.ir.dtypes import DType
from kernelc.ir.nodes import Kernel
from kernelc.ir.ops import Op, ReduceKind

MAX_SLOTS = slots.MAX_SLOTS  # the K slots of a row live in one vector
MAX_DIM = WIDE_DIM - 1  # from WIDE_DIM on, the exact code sums the components another way
# Calls of fewer rows or fewer points run the exact code: the per-call copies, the Z orders and
# each row's seed cost more than the filter saves. Measured in one process on 2 threads, filter /
# exact pairs/s (D = 3): argkmin K=10 1000 x 1e4 3.6e9 / 5.0e9, 2000 x 1e4 6.9e9 / 4.8e9,
# 2000 x 2000 2.1e9 / 2.6e9, 2000 x 4000 3.6e9 / 2.8e9, 4000 x 1000 2.0e9 / 1.6e9, 1000 x 1e5
# 7.4e9 / 1.0e10, 2000 x 1e5 1.2e10 / 1.0e10; argmin (its exact code is cheaper) 2000 x 1e4
# 7.0e9 / 9.7e9, 4000 x 1e4 1.3e10 / 9.4e9, 4000 x 8000 9.1e9 / 9.2e9, 1e4 x 4000 9.5e9 / 9.8e9,
# 1e4 x 6000 1.3e10 / 9.5e9, 2000 x 1e5 1.5e10 / 1.1e10
MIN_ROWS = {"k-best": 2048, "extreme": 4096}
MIN_POINTS = {"k-best": 4096, "extreme": 8192}
ROWS = 4  # rows per register block: 4 x D coefficients, 4 thresholds and the y vectors in registers
GROUP = 16  # rows whose slots and thresholds stay in memory while a tile of points is walked; the
# smaller the group, the smaller its box (1e4 x 1e4, native thread time per row: 16 550 ns, 32 590-620, 64 640-680)
TILE_POINTS = 4096  # points per tile: 16 bytes each (D = 3) in the structure-of-arrays copy, in L2
BLOCK_POINTS = 64  # points per box: a tile's blocks that no pair of a group's rows could enter are skipped
PRUNE_SLACK = 2.0 ** -18  # (D + 3) of it, taken off a box distance, covers the exact code's roundings
CHUNK_ROWS = 4096  # rows per job at least, threads permitting (1e4 rows: 2 jobs ran in 4.9 ms, 16 in 5.8-6.3)
SORT_ROWS = 1 << 16  # rows sorted into Z order together: calls of more sort parts of this many on the threads
CHUNK = 1  # vectors of points compared with the thresholds of the chunk's start (1e4 x 1e4: 1 ran 10% faster
# than 2 or 4, whose stale thresholds let more pairs pass; 1e5 x 1e5 and 1e6 x 1e4 alike)
# points near a row that fill its slots before the scan (1e4 x 1e4, native time per row: 16 610-690 ns, 32
# 510-610, 48 590-610 with insertions; 32 still the best of 32-96 with the sorting network)
SEED = 32
SAFE_EXPONENT = 40  # inputs with magnitudes in [2^-40, 2^40] (or 0) take the filter
_U = 2.0 ** -24
_KINDS = {ReduceKind.ARGKMIN: "idx", ReduceKind.KMIN: "vals", ReduceKind.ARGMIN: "idx", ReduceKind.MIN: "vals"}


@dataclass(frozen=True)
class Nearest:
    """A kernel the filter runs: one output over i, the K smallest sqdist(x, y) over j."""

    queries: str  # the parameter indexed by i
    points: str  # the parameter indexed by j
    dim: int
    k: int  # slots: K, or 1 for argmin/min
    output: str  # "idx" or "vals"
    k_best: bool = True  # argkmin/kmin (else argmin/min)

    @property
    def min_rows(self) -> int:
        return MIN_ROWS["k-best" if self.k_best else "extreme"]

    @property
    def min_points(self) -> int:
        return MIN_POINTS["k-best" if self.k_best else "extreme"]


def match(kernel: Kernel, bindings: dict[str, int]) -> Nearest | None:
    """The nearest-neighbour reduction this kernel is, if the filter runs it."""
    if len(kernel.outputs) != 1 or kernel.outputs[0].type.index != ("i",):
        return None
    red = kernel.outputs[0].value
    if red.op is not Op.REDUCE or red.arg.index != "j" or red.arg.kind not in _KINDS:
        return None
    score = red.src[0]
    if score.op is not Op.VSUM or score.dtype is not DType.F32:
        return None
    square = score.src[0]
    if not (square.op is Op.SQUARE or (square.op is Op.MUL and square.src[0] is square.src[1])):
        return None
    diff = square.src[0]
    if diff.op is not Op.SUB:
        return None
    params = {p.name: p for p in kernel.params}
    operands = row_and_column(*diff.src, params)
    if operands is None:
        return None
    a, b = operands
    dim = a.dim.evaluate(bindings)
    k = red.dim.evaluate(bindings) if red.arg.kind in (ReduceKind.ARGKMIN, ReduceKind.KMIN) else 1
    if not 1 <= dim <= MAX_DIM or not 1 <= k <= MAX_SLOTS:
        return None
    return Nearest(a.arg, b.arg, dim, k, _KINDS[red.arg.kind], red.arg.kind in (ReduceKind.ARGKMIN, ReduceKind.KMIN))


def lanes() -> int:
    from kernelc.backends.llvm.jit import vector_widths

    return vector_widths()[0] // 32


# --- code generation ------------------------------------------------------------------------------


def symbol(tag: str) -> str:
    return f"kc_nearest{tag}"


def c64(v: int) -> ir.Constant:
    return ir.Constant(I64, v)


def generate(near: Nearest, tag: str, width: int) -> str:
    """The module of `void f(f32* x, f32* y, f32* columns, f32* ys, f64* centre, u64* codes, u64*
    sorted, i32* order, f64* boxes, i64* dest, void* out, i64 r0, i64 r1, i64 m, i64 mp, i64
    length, f64 radius)`: rows [r0, r1) of x (N x D, rows in Z order, their Morton codes in
    `codes`) written to their rows dest[r] of the output, from y (M x D, in the points' Z order;
    x and y give the exact distances; `columns` is y again, D x length, for the seeds), ys (the
    D coordinates of y less `centre`, in that order, then |y~|^2, each padded to mp, a multiple
    of `width`; padding |y~|^2 = inf), the points' codes in Z order (`sorted`) and their indices
    (`order`, -1 past M to `length`), radius (at least max |y~|) and boxes (per block of
    BLOCK_POINTS points in Z order, the lows, then the highs of their coordinates, f64).
    `length` is at least SEED (zorder.Points).

    Rows go in groups of GROUP. A group's rows are first seeded, then the points are walked in
    tiles of TILE_POINTS (their columns stay in L2): the tile's blocks of points that could hold
    a pair within the group's largest K-th distance (`pruned`) are listed, and the group's rows
    walk them, a register block of ROWS rows at a time; within a block, each row's slots and
    threshold are values in registers (with them in the group's arrays throughout, each
    insertion's stores feeding the next compares' loads, a first version ran 1.4x slower; a
    memory-ordering clear per insertion is the likely cause, not established). Each row's slots
    start as the best of its SEED points (`seed`), whose places are then masked out of the row's
    compares."""
    return str(_Builder(near, tag, width).module)


class _Builder:
    """The nearest function's IR, emitted in order by __init__: the entry's state, then the loop
    over groups (`group`) and, inside it, the seeds, the tiles, their register blocks and
    rechecks. The methods share the builder, the function's arguments and its state arrays."""

    def __init__(self, near: Nearest, tag: str, width: int) -> None:
        assert GROUP % ROWS == 0, "a group's state arrays hold whole register blocks"
        assert SEED % MAX_SLOTS == 0 and SEED >= MAX_SLOTS, "the seeds are whole vectors of slots"
        assert TILE_POINTS % BLOCK_POINTS == 0 and BLOCK_POINTS % (CHUNK * width) == 0, "tiles hold whole blocks"
        self.near, self.width, self.dim, self.k = near, width, near.dim, near.k
        self.module = module = ir.Module(name="kernelc_nearest")
        f32p, f64p, i64p = F32.as_pointer(), F64.as_pointer(), I64.as_pointer()
        out_t = (I64 if near.output == "idx" else F32).as_pointer()
        self.fn = fn = ir.Function(module, ir.FunctionType(ir.VoidType(), [f32p, f32p, f32p, f32p, f64p, i64p, i64p,
                                                                       I32.as_pointer(), f64p, i64p, out_t, I64, I64,
                                                                       I64, I64, I64, F64]), symbol(tag))
        fn.attributes.add("nounwind")
        for arg in fn.args[:11]:
            arg.add_attribute("noalias")
        (self.x, self.y, self.columns, self.ys, self.centre, self.codes, self.sorted_codes, self.order, self.pbox,
         self.dest, self.out, r0, self.r1, self.m, self.mp, self.length, self.radius) = fn.args
        self.math = ops.Math(module)  # the exact code's arithmetic, for the rechecked distances
        self.b = b = ir.IRBuilder(fn.append_basic_block("entry"))
        self.vec, self.mask_t = ir.VectorType(F32, width), ir.IntType(width)
        self.slot_vals, self.slot_idx = ir.VectorType(F32, MAX_SLOTS), ir.VectorType(I32, MAX_SLOTS)
        self.bits_t = ir.IntType(width * ROWS)  # the passing lanes of a register block's rows, row after row
        self.inf = ops.const(F32, float("inf"))
        # the group's states in memory, and the register block's (promoted to registers by LLVM)
        self.saved = [b.alloca(ir.ArrayType(t, GROUP)) for t in (self.slot_vals, self.slot_idx, self.vec)]
        self.block_state = [[b.alloca(t) for t in (self.slot_vals, self.slot_idx, self.vec)] for _ in range(ROWS)]
        self.active, self.n_active = b.alloca(ir.ArrayType(I64, TILE_POINTS // BLOCK_POINTS)), b.alloca(I64)
        self.span = [[b.alloca(F64) for _ in range(self.dim)] for _ in range(2)]  # a group's box (zorder.spanned)
        # the group's rows' -2 x~, threshold bases and seed starts (`prepared`)
        self.coef, self.base, self.start = (b.alloca(ir.ArrayType(t, n)) for t, n in
                                            ((F32, GROUP * self.dim), (F32, GROUP), (I64, GROUP)))
        self.search = [b.alloca(I64) for _ in range(2)]  # a binary search's place and length (`prepared`)
        ctlz = module.declare_intrinsic("llvm.ctlz", [I64, I1])
        self.steps = b.sub(ir.Constant(I64, 64), b.call(ctlz, [self.m, ir.Constant(I1, 0)]))  # a search's halvings
        self.cttz = module.declare_intrinsic("llvm.cttz", [self.bits_t, I1])
        self.seeded = b.select(b.icmp_signed("<", self.m, c64(SEED)), self.m, c64(SEED))
        self.g0: ir.Value = c64(0)  # the group being emitted (`group`), and its rows' box
        self.rows_box: list[list[ir.Value]] = []
        ops.loop(b, r0, self.r1, "groups", self.group, step=GROUP)
        b.ret_void()

    def coordinate(self, array: ir.Value, at: ir.Value, d: int) -> ir.Value:
        """Coordinate d of row `at` of an N x D (or M x D) array."""
        b = self.b
        return b.load(b.gep(array, [b.add(b.mul(at, c64(self.dim)), c64(d))]))

    def exact(self, row: ir.Value, p: ir.Value) -> ir.Value:
        """The exact code's sqdist of the row and the point at place p of the Z order: sub, then
        the squares summed by codegen._Chains."""
        sums = _Chains(self.b, self.math, self.dim)
        for d in range(self.dim):
            t = self.b.fsub(self.coordinate(self.x, row, d), self.coordinate(self.y, p, d))
            sums.add_product(t, t)
        return sums.total()

    def point(self, p: ir.Value) -> ir.Value:
        """The index of the point at place p of the Z order."""
        return self.b.sext(self.b.load(self.b.gep(self.order, [p])), I64)

    def threshold(self, vals: ir.Value, offset: ir.Value) -> ir.Value:
        """T = last (1 + 2^-20) + base (`prepared`) in every lane, by one f32 multiply-add from
        a broadcast of the last slot (+inf while a slot is empty): the next pairs' compares wait
        for it after each insertion."""
        b, width = self.b, self.width
        last = b.shuffle_vector(vals, ir.Constant(vals.type, ir.Undefined),
                                ir.Constant(ir.VectorType(I32, width), [self.k - 1] * width))
        return self.math.intrinsic(b, "fma", last, ops.splat(b, ops.const(F32, 1 + 2.0 ** -20), width), offset)

    def retarget(self, r: int, offset: ir.Value) -> None:
        """Row r's threshold from its slots as they are now."""
        self.b.store(self.threshold(self.b.load(self.block_state[r][0]), offset), self.block_state[r][2])

    def keep(self, rb: ir.Value) -> None:
        """The register block's slots and thresholds back into the group's arrays."""
        b = self.b
        for r in range(ROWS):
            for array, slot in zip(self.saved, self.block_state[r]):
                b.store(b.load(slot), b.gep(array, [c64(0), b.add(rb, c64(r))]))

    def source(self, l: ir.Value) -> ir.Value:
        """The row of the group's l-th: rows past r1 (the last group's) repeat the last row."""
        b = self.b
        row = b.add(self.g0, l)
        return b.select(b.icmp_signed("<", row, self.r1), row, b.sub(self.r1, c64(1)))

    def group(self, g0: ir.Value) -> None:
        """The GROUP rows from g0: their box and preparation, seeds, the tiles of points, and
        their slots written out."""
        b = self.b
        self.g0 = g0
        self.rows_box = zorder.spanned(b, self.math, self.span, c64(0), c64(GROUP),
                                       lambda l, d: self.coordinate(self.x, self.source(l), d), "span")
        ops.loop(b, c64(0), c64(GROUP), "prepare", lambda l: self.prepared(l, self.source(l)))
        ops.loop(b, c64(0), c64(GROUP), "seeds", self.seed, step=ROWS)
        ops.loop(b, c64(0), self.mp, "tiles", self.tile, step=TILE_POINTS)
        rows_here = b.sub(self.r1, g0)
        ops.loop(b, c64(0), b.select(b.icmp_signed("<", rows_here, c64(GROUP)), rows_here, c64(GROUP)), "write",
                 self.write)

    def seed(self, rb: ir.Value) -> None:
        """The rows' slots: the MAX_SLOTS best of their SEED points (ZOrder), then their
        thresholds. The points' exact distances are computed MAX_SLOTS at a time, as the
        exact code computes each, and sorted by a network: what inserting them one by one
        into empty slots gives, at a third of the work."""
        b, dim = self.b, self.dim
        for r in range(ROWS):
            row, at = self.source(b.add(rb, c64(r))), b.add(rb, c64(r))
            first = b.load(b.gep(self.start, [c64(0), at]))
            parts = []
            for q in range(SEED // MAX_SLOTS):
                p = b.add(first, c64(q * MAX_SLOTS))
                sums = _Chains(b, self.math, dim)
                for d in range(dim):
                    column = b.load(b.bitcast(b.gep(self.columns, [b.add(b.mul(self.length, c64(d)), p)]),
                                              self.slot_vals.as_pointer()), align=4)
                    t = b.fsub(ops.splat(b, self.coordinate(self.x, row, d), MAX_SLOTS), column)
                    sums.add_product(t, t)
                idx = b.load(b.bitcast(b.gep(self.order, [p]), self.slot_idx.as_pointer()), align=4)
                valid = b.icmp_signed("<", ir.Constant(ir.VectorType(I64, MAX_SLOTS),
                                                       [q * MAX_SLOTS + s for s in range(MAX_SLOTS)]),
                                      ops.splat(b, self.seeded, MAX_SLOTS))
                parts.append(slots.sorted_slots(b, b.select(valid, sums.total(), ops.splat(b, self.inf, MAX_SLOTS)),
                                                b.select(valid, idx, ir.Constant(self.slot_idx, [-1] * MAX_SLOTS))))
            while len(parts) > 1:
                parts = [slots.lowest(b, *parts[i:i + 2]) if i + 1 < len(parts) else parts[i]
                         for i in range(0, len(parts), 2)]
            vals, idx, _ = self.block_state[r]
            b.store(parts[0][0], vals)
            b.store(parts[0][1], idx)
            self.retarget(r, ops.splat(b, b.load(b.gep(self.base, [c64(0), at])), self.width))
        self.keep(rb)

    def tile(self, t0: ir.Value) -> None:
        """The tile of points from t0: its blocks that the group could reach are listed, then
        walked by each register block."""
        b = self.b
        t1 = b.add(t0, c64(TILE_POINTS))
        t1 = b.select(b.icmp_signed("<", t1, self.mp), t1, self.mp)
        reach = ops.const(F32, 0.0)  # the group's largest K-th distance
        as_floats = b.bitcast(self.saved[0], F32.as_pointer())
        for l in range(GROUP):
            last = b.load(b.gep(as_floats, [c64(l * MAX_SLOTS + self.k - 1)]))
            reach = b.select(b.fcmp_ordered(">", last, reach), last, reach)
        reach = b.fadd(b.fpext(reach, F64), ops.const(F64, 2.0 ** -96))
        b.store(c64(0), self.n_active)
        ops.loop(b, t0, t1, "prune", lambda p0: self.listed(p0, reach), step=BLOCK_POINTS)
        count = b.load(self.n_active)
        ops.loop(b, c64(0), c64(GROUP), "block", lambda rb: self.block(rb, t1, count), step=ROWS)

    def listed(self, p0: ir.Value, reach: ir.Value) -> None:
        """p0's block of points in the tile's list unless `pruned`, without a branch."""
        b = self.b
        count = b.load(self.n_active)
        b.store(p0, b.gep(self.active, [c64(0), count]))
        near_ = b.not_(self.pruned(self.rows_box, self.box(b.sdiv(p0, c64(BLOCK_POINTS))), reach))
        b.store(b.add(count, b.zext(near_, I64)), self.n_active)

    def block(self, rb: ir.Value, t1: ir.Value, count: ir.Value) -> None:
        """The register block's rows over the tile's listed blocks of points. The places of
        the rows' SEED points are masked out of their compares (they are in the slots
        already, and each would pass to a recheck), in the blocks that hold any of them."""
        b, dim, width, seeded = self.b, self.dim, self.width, self.seeded
        rows = [self.source(b.add(rb, c64(r))) for r in range(ROWS)]
        offsets = [ops.splat(b, b.load(b.gep(self.base, [c64(0), b.add(rb, c64(r))])), width) for r in range(ROWS)]
        for r in range(ROWS):
            for array, slot in zip(self.saved, self.block_state[r]):
                b.store(b.load(b.gep(array, [c64(0), b.add(rb, c64(r))])), slot)
        coefs = [[ops.splat(b, b.load(b.gep(self.coef, [c64(0), b.add(b.mul(b.add(rb, c64(r)), c64(dim)), c64(d))])),
                            width) for d in range(dim)] for r in range(ROWS)]
        firsts = [b.load(b.gep(self.start, [c64(0), b.add(rb, c64(r))])) for r in range(ROWS)]
        seed_places = [(ops.splat(b, s, width), ops.splat(b, b.add(s, seeded), width)) for s in firsts]
        lo, hi = firsts[0], b.add(firsts[0], seeded)
        for s in firsts[1:]:
            lo = b.select(b.icmp_signed("<", s, lo), s, lo)
            hi = b.select(b.icmp_signed(">", b.add(s, seeded), hi), b.add(s, seeded), hi)

        def walk(a: ir.Value) -> None:
            p0 = b.load(b.gep(self.active, [c64(0), a]))
            p1 = b.add(p0, c64(BLOCK_POINTS))
            p1 = b.select(b.icmp_signed("<", p1, t1), p1, t1)
            overlap = b.and_(b.icmp_signed("<", p0, hi), b.icmp_signed(">", p1, lo))
            with b.if_else(overlap, likely=False) as (then, otherwise):
                for branch, masked in ((then, seed_places), (otherwise, None)):
                    with branch:
                        ops.loop(b, p0, p1, "chunks", lambda c: self.chunk(c, p1, rows, offsets, coefs, masked),
                                 step=CHUNK * width)

        ops.loop(b, c64(0), count, "listed", walk)
        self.keep(rb)

    def chunk(self, c: ir.Value, t1: ir.Value, rows: list[ir.Value], offsets: list[ir.Value], coefs: list,
              masked: list | None) -> None:
        """CHUNK vectors of points compared with the thresholds as they were at its start
        (with CHUNK > 1, the next compares do not wait for an insertion's new threshold;
        a threshold only falls, so an older one lets more pairs pass to the recheck, never
        fewer)."""
        b = self.b
        stop = b.add(c, c64(CHUNK * self.width))
        stop = b.select(b.icmp_signed("<", stop, t1), stop, t1)
        limits = [b.load(state[2]) for state in self.block_state]
        ops.loop(b, c, stop, "points", lambda jv: self.step(rows, offsets, limits, jv, coefs, masked),
                 step=self.width)

    def step(self, rows: list[ir.Value], offsets: list[ir.Value], limits: list[ir.Value], jv: ir.Value,
             coefs: list, masked: list | None) -> None:
        """One vector of points against the register block's rows: the filter's D FMAs and a
        compare per row; any passing lane goes to the recheck."""
        b, dim, width, bits_t = self.b, self.dim, self.width, self.bits_t
        column = [b.load(b.bitcast(b.gep(self.ys, [b.add(b.mul(self.mp, c64(d)), jv)]), self.vec.as_pointer()),
                         align=4) for d in range(dim + 1)]
        if masked is not None:
            places = b.add(ops.splat(b, jv, width), ir.Constant(ir.VectorType(I64, width), list(range(width))))
        passing = ir.Constant(bits_t, 0)
        for r in range(ROWS):
            f = column[dim]
            for d in range(dim):
                f = self.math.intrinsic(b, "fma", column[d], coefs[r][d], f)
            passes = b.fcmp_ordered("<=", f, limits[r])
            if masked is not None:
                first, end = masked[r]
                passes = b.and_(passes, b.or_(b.icmp_signed("<", places, first), b.icmp_signed(">=", places, end)))
            bits = b.zext(b.bitcast(passes, self.mask_t), bits_t)
            passing = b.or_(passing, b.shl(bits, ir.Constant(bits_t, r * width)))
        with b.if_then(b.icmp_unsigned("!=", passing, ir.Constant(bits_t, 0)), likely=False):
            self.recheck(rows, offsets, jv, passing)

    def write(self, l: ir.Value) -> None:
        """The group's l-th row's K values or indices into its row of the output."""
        b, k = self.b, self.k
        row = b.load(b.gep(self.dest, [b.add(self.g0, l)]))
        if self.near.output == "vals":
            chosen = b.load(b.gep(self.saved[0], [c64(0), l]))
        else:
            chosen = b.sext(b.load(b.gep(self.saved[1], [c64(0), l])), ir.VectorType(I64, MAX_SLOTS))
        for s in range(k):
            value = b.extract_element(chosen, ir.Constant(I32, s))
            b.store(value, b.gep(self.out, [b.add(b.mul(row, c64(k)), c64(s))]))

    def prepared(self, l: ir.Value, row: ir.Value) -> None:
        """Row l of the group: its coefficients -2 x~ (x~ = x - centre rounded to f32, as the
        points' ys), its threshold base margin - |x~|^2 + |x~|^2 2^-20 (f64, then rounded to f32)
        with margin = (4D + 16) u (|x~| + radius)^2 + 2^-96 (the module docstring: the 2^-20 =
        16 u terms cover the f32 roundings of this value and of T = last (1 + 2^-20) + base), and
        where its SEED points start in the Z order: around the first place whose code is not
        below the row's (a branch-free binary search), within [0, M - SEED]."""
        b, dim, math, m = self.b, self.dim, self.math, self.m
        xx = ops.const(F64, 0.0)
        for d in range(dim):
            xc = zorder.centred(b, self.coordinate(self.x, row, d), b.load(b.gep(self.centre, [c64(d)])))
            b.store(b.fmul(xc, ops.const(F32, -2.0)), b.gep(self.coef, [c64(0), b.add(b.mul(l, c64(dim)), c64(d))]))
            xc = b.fpext(xc, F64)
            xx = math.intrinsic(b, "fma", xc, xc, xx)
        reach = b.fadd(math.intrinsic(b, "sqrt", xx), self.radius)
        margin = b.fadd(b.fmul(ops.const(F64, (4 * dim + 16) * _U), b.fmul(reach, reach)), ops.const(F64, 2.0 ** -96))
        value = b.fadd(b.fsub(margin, xx), b.fmul(xx, ops.const(F64, 2.0 ** -20)))
        b.store(b.fptrunc(value, F32), b.gep(self.base, [c64(0), l]))
        code = b.load(b.gep(self.codes, [row]))
        place, length = self.search
        b.store(c64(0), place)
        b.store(m, length)

        def halve(_: ir.Value) -> None:  # [place, place + length) holds the first code >= the row's
            half = b.udiv(b.load(length), c64(2))
            at = b.add(b.load(place), half)
            below = b.icmp_unsigned("<", b.load(b.gep(self.sorted_codes, [at])), code)
            b.store(b.select(below, at, b.load(place)), place)
            b.store(b.sub(b.load(length), half), length)

        ops.loop(b, c64(0), self.steps, "search", halve)
        last = b.load(place)
        found = b.select(b.icmp_unsigned("<", b.load(b.gep(self.sorted_codes, [last])), code), b.add(last, c64(1)),
                         last)
        first = b.sub(found, c64(SEED // 2))
        top = b.sub(m, self.seeded)
        first = b.select(b.icmp_signed(">", first, top), top, first)
        b.store(b.select(b.icmp_signed("<", first, c64(0)), c64(0), first), b.gep(self.start, [c64(0), l]))

    def box(self, at: ir.Value) -> list[list[ir.Value]]:
        """The lows and the highs of the box of the block of points at `at` (f64, D each)."""
        b, dim = self.b, self.dim
        return [[b.load(b.gep(self.pbox, [b.add(b.mul(at, c64(2 * dim)), c64(side * dim + d))])) for d in range(dim)]
                for side in (0, 1)]

    def pruned(self, rows_box: list[list[ir.Value]], points_box: list[list[ir.Value]], reach: ir.Value) -> ir.Value:
        """Whether no pair of the two boxes can come within `reach`: the squared distance between
        the boxes (f64), less (D + 3) PRUNE_SLACK of itself, exceeds it (Pruning, in the module
        docstring)."""
        b = self.b
        (x_lo, x_hi), (y_lo, y_hi) = rows_box, points_box
        zero, gap2 = ops.const(F64, 0.0), ops.const(F64, 0.0)
        for d in range(self.dim):
            below, above = b.fsub(y_lo[d], x_hi[d]), b.fsub(x_lo[d], y_hi[d])
            gap = b.select(b.fcmp_ordered(">", below, above), below, above)
            gap = b.select(b.fcmp_ordered(">", gap, zero), gap, zero)
            gap2 = self.math.intrinsic(b, "fma", gap, gap, gap2)
        return b.fcmp_ordered(">", b.fmul(gap2, ops.const(F64, 1 - (self.dim + 3) * PRUNE_SLACK)), reach)

    def recheck(self, rows: list[ir.Value], offsets: list[ir.Value], jv: ir.Value, passing: ir.Value) -> None:
        """The block's passing lanes, row after row, each in index order: exact distance,
        insertion, new threshold. The lane's row is picked by selects, not branches (a
        mispredicted branch per passing lane had cost as much as the pairs of a row)."""
        b, width, bits_t = self.b, self.width, self.bits_t
        pre = b.block
        work, done = self.fn.append_basic_block("recheck.lane"), self.fn.append_basic_block("recheck.done")
        b.branch(work)
        b.position_at_end(work)
        left = b.phi(bits_t)
        left.add_incoming(passing, pre)
        bit = b.call(self.cttz, [left, ir.Constant(I1, 1)])
        bit = b.trunc(bit, I64) if bits_t.width > 64 else b.zext(bit, I64) if bits_t.width < 64 else bit
        r = b.udiv(bit, c64(width))
        p = b.add(jv, b.urem(bit, c64(width)))
        inside = b.icmp_signed("<", p, self.m)  # padding lanes pass while a slot is empty
        j = self.point(b.select(inside, p, c64(0)))
        mine = [b.icmp_unsigned("==", r, c64(rr)) for rr in range(ROWS)]
        # vector selects take a vector of conditions: with one scalar condition LLVM branches
        lanes_of = {n: [b.icmp_unsigned("==", ops.splat(b, r, n), ops.splat(b, c64(rr), n)) for rr in range(ROWS)]
                    for n in {MAX_SLOTS, width}}

        def choose(rr: int, value: ir.Value, other: ir.Value) -> ir.Value:
            return b.select(lanes_of[value.type.count][rr] if isinstance(value.type, ir.VectorType) else mine[rr],
                            value, other)

        def pick(values: list[ir.Value]) -> ir.Value:
            chosen = values[0]
            for rr in range(1, ROWS):
                chosen = choose(rr, values[rr], chosen)
            return chosen

        row = pick(rows)
        states = [[b.load(slot) for slot in self.block_state[rr][:2]] for rr in range(ROWS)]
        old_v, old_i = pick([st[0] for st in states]), pick([st[1] for st in states])
        v = b.select(inside, self.exact(row, b.select(inside, p, c64(0))), self.inf)
        new_v, new_i = slots.inserted(b, old_v, old_i, v, j)
        target = self.threshold(new_v, pick(offsets))
        for rr in range(ROWS):
            vals, idx, tvec = self.block_state[rr]
            b.store(choose(rr, new_v, states[rr][0]), vals)
            b.store(choose(rr, new_i, states[rr][1]), idx)
            b.store(choose(rr, target, b.load(tvec)), tvec)
        rest = b.and_(left, b.sub(left, ir.Constant(bits_t, 1)))
        left.add_incoming(rest, b.block)
        b.cbranch(b.icmp_unsigned("!=", rest, ir.Constant(bits_t, 0)), work, done)
        b.position_at_end(done)

# --- per call -------------------------------------------------------------------------------------

_FN = ctypes.CFUNCTYPE(None, *[ctypes.c_void_p] * 11, *[ctypes.c_int64] * 5, ctypes.c_double)


def safe(a: np.ndarray) -> bool:
    """Finite, and 0 or of magnitude in [2^-40, 2^40]: where the error bound holds."""
    mag = np.abs(a)
    lo, hi = np.float32(2.0 ** -SAFE_EXPONENT), np.float32(2.0 ** SAFE_EXPONENT)
    return bool(np.all((mag <= hi) & ((mag >= lo) | (mag == 0))))  # NaN fails both


def cache_key(near: Nearest, width: int) -> str:
    import llvmlite

    from kernelc import __version__
    from kernelc.backends.cache import make_key
    from kernelc.backends.llvm import codegen_version
    from kernelc.backends.llvm.jit import host_description

    return make_key("llvm-nearest", codegen_version(), __version__, llvmlite.__version__, host_description(),
                    str((near.dim, near.k, near.output, width, ROWS, GROUP, TILE_POINTS, BLOCK_POINTS, PRUNE_SLACK,
                         SEED, CHUNK)))


class NearestExecutable:
    """The compiled filter function and the per-call work around it: checks, the Z orders of the
    points and the rows, row chunks over threads."""

    def __init__(self, near: Nearest, threads: int, chunks_per_thread: int) -> None:
        from kernelc.backends.llvm.jit import compile_ir

        self.near, self.threads, self.chunks_per_thread = near, threads, chunks_per_thread
        self.width = lanes()
        key = cache_key(near, self.width)
        tag = "_" + key[:20]
        self._text = lambda: generate(near, tag, self.width)
        addresses, self.optimized_ir = compile_ir(self._text, [symbol(tag)], key, self.width * 32)
        self.fn = _FN(addresses[symbol(tag)])

    @property
    def description(self) -> str:
        return ("nearest neighbours through an expanded-distance filter (|y|^2 - 2 x.y, D fused multiply-adds "
                "per pair) with an exact recheck of the pairs that pass: the exact code's results "
                f"(calls of {self.near.min_rows}+ rows and {self.near.min_points}+ points with inputs of magnitude in "
                f"[2^-{SAFE_EXPONENT}, 2^{SAFE_EXPONENT}] or 0; others run the exact code)")

    @property
    def code(self) -> str:
        from kernelc.backends.llvm.jit import optimized_ir

        return self.optimized_ir or optimized_ir(self._text(), self.width * 32)

    def run(self, inputs: dict[str, np.ndarray], out: np.ndarray) -> bool:
        """Compute the output into `out`; False, having done nothing, for calls the filter does
        not take (fewer than `min_rows` rows or `min_points` points, an unsafe value)."""
        near = self.near
        x = np.ascontiguousarray(inputs[near.queries], np.float32).reshape(-1, near.dim)
        y = np.ascontiguousarray(inputs[near.points], np.float32).reshape(-1, near.dim)
        n, m = len(x), len(y)
        if n < near.min_rows or not near.min_points <= m < 2 ** 31 or not safe(x) or not safe(y):
            return False
        columns = np.ascontiguousarray(y.T)
        centre = columns.mean(1, dtype=np.float64)
        zorder = ZOrder(columns, centre)
        rows = RowOrder(x, zorder)
        points: list[Points] = []

        def prepare(job: int) -> None:
            """The points' arrays (job 0) beside the rows' sorted parts (the others)."""
            if job:
                rows.sort(job - 1)
            else:
                zorder.sort(y)
                points.append(zorder.points(y, self.width, BLOCK_POINTS, SEED))

        map_jobs(self.threads, prepare, range(1 + rows.parts))
        rows.join()
        pts = points[0]
        mp, length = pts.ys.shape[1], pts.columns.shape[1]
        bounds = rows.bounds(min(self.threads * self.chunks_per_thread, max(self.threads, n // CHUNK_ROWS)))

        def run_chunk(c: int) -> None:
            """The chunk's rows (their coefficients, thresholds and seeds are made in the generated code)."""
            r0, r1 = bounds[c], bounds[c + 1]
            if r0 == r1:
                return
            arrays = (rows.x[r0:r1], pts.ordered, pts.columns, pts.ys, centre, rows.codes[r0:r1], zorder.sorted,
                      pts.indices, pts.boxes, rows.order[r0:r1], out)
            assert all(a.flags.c_contiguous for a in arrays), "the generated code reads C-contiguous arrays"
            self.fn(*(a.ctypes.data for a in arrays), 0, r1 - r0, m, mp, length, pts.radius)

        map_jobs(self.threads, run_chunk, range(len(bounds) - 1))
        return True


class RowOrder:
    """The rows in Z order (`order`; x and the Morton codes in that order):
    a group of rows then lies in a small box, and the blocks of points far from it are skipped
    (`generate`). Calls of more than SORT_ROWS rows are sorted in parts of that many, on the
    threads; a part is still dense enough for small groups."""

    def __init__(self, x: np.ndarray, zorder: ZOrder) -> None:
        self.x_all, self.zorder = x, zorder
        n = len(x)
        self.parts = max(1, n // SORT_ROWS)
        self.limits = [n * p // self.parts for p in range(self.parts + 1)]
        self.pieces: list = [None] * self.parts

    def sort(self, p: int) -> None:
        """Part p in Z order (a job: the parts run on the threads)."""
        a, b = self.limits[p], self.limits[p + 1]
        x = self.x_all[a:b]
        codes = self.zorder.codes(x)
        order = np.argsort(codes)
        self.pieces[p] = (order + a, np.take(x, order, axis=0), np.take(codes, order))

    def join(self) -> None:
        self.order, self.x, self.codes = (np.concatenate(field) for field in zip(*self.pieces))

    def bounds(self, chunks: int) -> list[int]:
        """Chunk limits in multiples of ROWS that keep each chunk within one sorted part."""
        parts = len(self.limits) - 1
        per_part = max(1, -(-chunks // parts))
        out = [0]
        for p in range(parts):
            a, b = self.limits[p], self.limits[p + 1]
            out += [a + (b - a) * c // per_part // ROWS * ROWS for c in range(1, per_part)] + [b]
        return out
