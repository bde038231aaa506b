"""Exact f32 softmax attention in one fused pass of AVX-512 FMA micro-kernels.

`softmax[j](dot(x, y) * c, v)` at D = E = 64 is 128 FMAs per pair, all of them in two matrix
products. The generic pair loop (codegen) ran them at about a third of this CPU's AVX-512 FMA
peak: its register blocks of 4 rows stream every key's D + E floats from L2 once per 4 rows,
and the rows' x values, broadcast and hoisted out of the loop, spill (16 KB of stack per block).
Here the work is blocked as in a GEMM: a *panel* of PANEL rows meets a *tile* of TILE keys (y
packed per call into panels of 16 keys, component-major; v as it is), which stay in L1 while
the panel's 4-row micro-blocks take them in turn (y and v are read from L2 once per panel). A
micro-block computes its 4 x 64 scores in 16 accumulators over the components (x broadcast from
memory, 4 vectors of y per component), turns them into weights (the online softmax of
kernelc.ir.monoids, against a reference that moves to the running maximum only when a score
passes it by more than HEADROOM, rescaling the sums and numerators), and adds the
4 x E numerators in registers, each key's v loaded once for the 4 rows; the tile's numerators
start from 0 and join the rescaled running ones at the end in one FMA, so that the rescaling
factor (an exp of the new maximum) is off the FMAs' path. The rows' states live in a scratch
array per job between tiles.

Results follow the exact semantics, as the generic code's do: each score is dot(x, y) rounded
in f32 (a sum of products: its order is unspecified) times the factor, rounded; the weights are
the `exp` (0.72 ulp) of the score minus the row's reference, at most HEADROOM below its running
maximum; the output is the sum of weight times v over the sum of the weights (0 for a row with
no key). Only the blocking of the sums and the reference (the generic code's is each block's
maximum) differ from the generic code's. The scores' max, min, argmax or argmin (maximum inner
product search) take the same micro-kernel with 16 lanes of best scores and their keys per row
in place of the weights (`keep_best`, `finish_extreme`), and their K best (top-k retrieval, K
<= 16) K sorted slots in one vector per row (`keep_k_best`). Calls this path cannot take exactly
run the generic code (`run` returns False): inputs that are not finite or whose products could
overflow, a factor that is not finite or nonzero, a division by a factor that is not a power of
2 (its reciprocal would round), no keys or no rows. f16 and bf16 inputs are taken as their f32 values
(narrow values are computed in f32) and a narrow output is the f32 result rounded once.
"""

from __future__ import annotations

import ctypes
import functools
import math
from dataclasses import dataclass, replace

import numpy as np
from llvmlite import ir

from kernelc.backends.llvm import amx, ops
from kernelc.backends.llvm.ops import F32, I32, I64
from kernelc.backends.llvm.patterns import F32_AND_NARROW
from kernelc.backends.threads import map_jobs
from kernelc.ir.nodes import Kernel
from kernelc.ir.ops import Op, ReduceKind

LANES = 16  # f32 lanes of a 512-bit vector
ROWS = 4  # rows of a micro-block: 4 x E numerators (16 vectors at E = 64) stay in registers
TILE = 64  # keys per tile: four vectors of scores per row (16 score accumulators)
PANEL = 256  # rows that meet a tile in turn (a pass over the keys each): 256 ran 13% faster than 32
# at 4096 x 4096; their states (PANEL x (E + 17) floats, 84 KB at E = 64) in a scratch array
MAX_DIM = 256  # longer dot products or values: the generic code
HEADROOM = 8.0  # a row's reference moves when a score passes it by more (weights up to e^8 < 2^12)
SAFE = 2.0 ** 60  # bound on |x|, |y|, |v| (and D |x| |y| |c|): no product or sum can overflow
_FN = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p,
                       ctypes.c_int64, ctypes.c_int64, ctypes.c_int64, ctypes.c_float)


@dataclass(frozen=True)
class Shape:
    dim: int
    values_dim: int
    causal: bool
    extreme: ReduceKind | None = None  # the scores' max, min, argmax or argmin (amx.Attention.extreme)
    k: int = 0  # K of a K-best extreme

    @property
    def state_floats(self) -> int:
        """A panel's states (maximum, 16 sum lanes, E numerators per row, spare rows included;
        for an extreme 16 lanes of the best scores and 16 of their keys), in a scratch array per
        job: 84 KB at E = 64, more than some threads' stacks allow."""
        per_row = 2 * LANES if self.extreme is not None else 1 + LANES + self.values_dim
        return -(-(PANEL + ROWS) * per_row // LANES) * LANES  # whole cache lines


# max/min/argmax/argmin of the scores: the path finds the maximum, of the negated scores for
# min and argmin (negation is exact, and the first of equal minima is the first of equal maxima)
_EXTREMES = frozenset({ReduceKind.MAX, ReduceKind.MIN, ReduceKind.ARGMAX, ReduceKind.ARGMIN})
# the K best scores (top-k retrieval): their K slots in one vector of LANES, so K <= LANES; with a
# causal mask the masked keys are values (-inf) that fill the slots a row's keys leave: generic
K_BEST = frozenset({ReduceKind.KMAX, ReduceKind.KMIN, ReduceKind.ARGKMAX, ReduceKind.ARGKMIN})
_FLIPPED = frozenset({ReduceKind.MIN, ReduceKind.ARGMIN, ReduceKind.KMIN, ReduceKind.ARGKMIN})
_VALUED = frozenset({ReduceKind.MAX, ReduceKind.MIN, ReduceKind.KMAX, ReduceKind.KMIN})


def match(kernel: Kernel, bindings: dict[str, int]) -> amx.Attention | None:
    """Softmax attention, a log-sum-exp of the scores (no values, E = 0), or the scores'
    max/min/argmax/argmin (maximum inner product search), that this path runs: f32, f16 or
    bf16, D and E up to MAX_DIM (padded to multiples of 16 per call), on a host with AVX-512."""
    from kernelc.backends.llvm.jit import vector_widths

    att = amx.match(kernel, bindings) or _extreme(kernel, bindings)
    if att is None or 512 not in vector_widths() or att.dim > MAX_DIM or att.values_dim > MAX_DIM:
        return None
    return att


def _extreme(kernel: Kernel, bindings: dict[str, int]) -> amx.Attention | None:
    """`max/min/argmax/argmin[j](c * dot(x, y))`, or `kmax/kmin/argkmax/argkmin[j, K]` of such
    scores with K <= LANES and no causal mask, as an Attention with `extreme` set (`k` for K)."""
    if len(kernel.outputs) != 1 or kernel.outputs[0].type.index != ("i",):
        return None
    red = kernel.outputs[0].value
    if red.op is not Op.REDUCE or red.arg.index != "j" or red.arg.kind not in _EXTREMES | K_BEST \
            or (red.arg.kind in _VALUED and red.dtype not in F32_AND_NARROW):
        return None
    k = red.arg.k.evaluate(bindings) if red.arg.kind in K_BEST else 0
    if not 0 <= k <= LANES:
        return None
    scores = amx.match_scores(red.src[0], {p.name: p for p in kernel.params}, bindings)
    if scores is None or (k and scores.causal):
        return None
    return replace(scores, negate=scores.negate != (red.arg.kind in _FLIPPED), extreme=red.arg.kind, k=k)


def padded(size: int) -> int:
    """A dimension rounded up to whole vectors: x and y get zero components up to it (adding
    products 0 * 0 leaves a dot product as it was), v zero values (outputs that are dropped)."""
    return -(-size // LANES) * LANES


def symbol(tag: str) -> str:
    return f"kc_fused_attention{tag}"


def generate(shape: Shape, tag: str) -> str:
    """The module of `void f(f32* x, f32* yp, f32* v, f32* out, f32* state, i64 m, i64 r0, i64 r1,
    f32 c)`: rows [r0, r1) of out = softmax over the m keys of (x y^T) c, with y packed as
    (panels, D, 16) (`pack_keys`), the keys' rows of v read up to m, and `state` scratch of
    Shape.state_floats (64-byte aligned)."""
    module = ir.Module(name="fused_attention")
    math_ = ops.Math(module)
    p32 = F32.as_pointer()
    fnty = ir.FunctionType(ir.VoidType(), [p32, p32, p32, p32, p32, I64, I64, I64, F32])
    fn = ir.Function(module, fnty, name=symbol(tag))
    fn.attributes.add("nounwind")
    _Builder(fn, math_, shape).build()
    return str(module)


_VEC = ir.VectorType(F32, LANES)
_KEYS = ir.VectorType(I32, LANES)  # an extreme's best keys per lane (run refuses m >= 2^31)


def _i(value: int) -> ir.Constant:
    return ir.Constant(I64, value)


class _Builder:
    # the scores are finite (run checks the inputs): extremes need no NaN rules; a subclass whose
    # terms may be NaN or -inf (fused_sums) sets False and passes which keys are real
    FINITE = True

    def __init__(self, fn: ir.Function, math_: ops.Math, shape: Shape) -> None:
        self.fn, self.math, self.shape = fn, math_, shape
        self.x, self.yp, self.v, self.out, state, self.m, self.r0, self.r1, self.c = fn.args
        self.entry = fn.append_basic_block("entry")
        self.b = ir.IRBuilder(self.entry)
        self.e_vectors = shape.values_dim // LANES
        slots = PANEL + ROWS  # rows past a panel's end (a last, short micro-block) write spare slots
        # an extreme's state: each row's 16 lanes of best scores, then each row's 16 lanes of keys
        self.best_keys = self.b.bitcast(self.b.gep(state, [_i(slots * LANES)]), I32.as_pointer())
        # each row's 16 sum lanes and E numerators on whole cache lines (the array is 64-byte
        # aligned, E a multiple of 16), the references after them
        self.sums = state
        self.numerators = self.b.gep(state, [_i(slots * LANES)])
        self.row_ref = self.b.gep(state, [_i(slots * (LANES + shape.values_dim))])
        self.weights = self._array(F32, ROWS * TILE)
        self.tile_scores = self._array(F32, TILE)  # a row's scores of a tile, walked for K-best slots

    def _array(self, ty: ir.Type, count: int) -> ir.AllocaInstr:
        return ops.entry_alloca(self.b, self.entry, ty, count, align=64)

    def _slot(self, ty: ir.Type, init: ir.Value) -> ir.AllocaInstr:
        slot = ops.entry_alloca(self.b, self.entry, ty)
        self.b.store(init, slot)
        return slot

    def _vector_at(self, base: ir.Value, offset: ir.Value) -> ir.Value:
        return self.b.bitcast(self.b.gep(base, [offset]), _VEC.as_pointer())

    def _splat(self, x: ir.Value) -> ir.Value:
        return ops.splat(self.b, x, LANES)

    def _min(self, x: ir.Value, y: ir.Value) -> ir.Value:
        return self.b.select(self.b.icmp_signed("<", x, y), x, y)

    def build(self) -> None:
        b = self.b
        ops.loop(b, self.r0, self.r1, "panel", self.panel, step=PANEL)
        b.ret_void()

    def panel(self, p0: ir.Value) -> None:
        b = self.b
        p1 = self._min(b.add(p0, _i(PANEL)), self.r1)
        ops.loop(b, _i(0), _i(PANEL + ROWS), "reset", self.reset)
        keys = self._min(self.m, p1) if self.shape.causal else self.m  # causal: no key after the last row
        ops.loop(b, _i(0), keys, "tile", lambda j0: self.tile(p0, p1, j0), step=TILE)
        ops.loop(b, p0, p1, "finish", lambda r: self.finish(r, b.sub(r, p0)))

    def reset(self, s: ir.Value) -> None:
        """The state of the panel's row in slot s, before its first tile."""
        b, shape = self.b, self.shape
        if shape.extreme is not None:  # best scores -inf (every real key passes it: run checks)
            b.store(ops.const(_VEC, float("-inf")), self._vector_at(self.sums, b.mul(s, _i(LANES))), align=64)
            b.store(ir.Constant(_KEYS, [-1] * LANES), self._keys_at(s), align=64)  # -1: an empty slot
            return
        b.store(ops.const(F32, float("-inf")), b.gep(self.row_ref, [s]))
        b.store(ops.const(_VEC, 0.0), self._vector_at(self.sums, b.mul(s, _i(LANES))), align=64)
        for e in range(self.e_vectors):
            at = b.add(b.mul(s, _i(shape.values_dim)), _i(e * LANES))
            b.store(ops.const(_VEC, 0.0), self._vector_at(self.numerators, at), align=4)

    def tile(self, p0: ir.Value, p1: ir.Value, j0: ir.Value) -> None:
        ops.loop(self.b, p0, p1, "block", lambda q0: self.block(p0, p1, j0, q0), step=ROWS)

    def block(self, p0: ir.Value, p1: ir.Value, j0: ir.Value, q0: ir.Value) -> None:
        """Rows q0 .. q0 + 3 (the last real row repeated past p1, into spare state slots) against
        keys j0 .. j0 + TILE - 1: scores, weights, numerators."""
        b = self.b
        last = b.sub(p1, _i(1))
        rows = [self._min(b.add(q0, _i(r)), last) for r in range(ROWS)]
        slots = [b.add(b.sub(q0, p0), _i(r)) for r in range(ROWS)]
        self.epilogue(rows, slots, self.scores(rows, j0), j0)

    def epilogue(self, rows: list[ir.Value], slots: list[ir.Value], scores: list[list[ir.Value]],
                 j0: ir.Value) -> None:
        """What the micro-block's scores do to its rows' states: weights and numerators, or the
        best scores."""
        if self.shape.extreme is not None:
            keep = self.keep_k_best if self.shape.k else self.keep_best
            for row, slot, row_scores in zip(rows, slots, scores):
                keep(slot, self._masked(row, row_scores, j0), j0)
            return
        keys = self._min(self.b.sub(self.m, j0), _i(TILE))  # keys of this tile (the last may be short)
        alphas = []
        for r, (row, slot) in enumerate(zip(rows, slots)):
            alphas.append(self.weigh(r, row, slot, scores[r], j0))
        self.accumulate(slots, alphas, j0, keys)

    def scores(self, rows: list[ir.Value], j0: ir.Value) -> list[list[ir.Value]]:
        """(x y^T) c for the rows and the tile's 16-key panels of y: ROWS x TILE / 16 accumulators
        over the components, x[row, d] broadcast from memory, y[panel, d, :] one vector."""
        b, dim = self.b, self.shape.dim
        panels = [b.sdiv(b.add(j0, _i(p * LANES)), _i(LANES)) for p in range(TILE // LANES)]
        accs = [[self._slot(_VEC, ops.const(_VEC, 0.0)) for _ in panels] for _ in rows]
        x_rows = [b.mul(row, _i(dim)) for row in rows]
        y_panels = [b.mul(p, _i(dim * LANES)) for p in panels]
        unroll = 4

        def step(d0: ir.Value) -> None:
            for u in range(unroll):
                d = b.add(d0, _i(u))
                ys = [b.load(self._vector_at(self.yp, b.add(base, b.mul(d, _i(LANES)))), align=4) for base in y_panels]
                for r, x_row in enumerate(x_rows):
                    xd = self._splat(b.load(b.gep(self.x, [b.add(x_row, d)])))
                    for p, y in enumerate(ys):
                        b.store(self.product(xd, y, b.load(accs[r][p])), accs[r][p])

        ops.loop(b, _i(0), _i(dim), "dot", step, step=unroll)
        return self.scaled([[b.load(acc) for acc in row_accs] for row_accs in accs])

    def product(self, xd: ir.Value, y: ir.Value, acc: ir.Value) -> ir.Value:
        """acc plus component d's term of the score: x_d y_d (one FMA)."""
        return self.math.intrinsic(self.b, "fma", xd, y, acc)

    def scaled(self, sums: list[list[ir.Value]]) -> list[list[ir.Value]]:
        """The scores from the sums over the components: times the factor."""
        c = self._splat(self.c)
        return [[self.b.fmul(v, c) for v in row] for row in sums]

    def weigh(self, r: int, row: ir.Value, slot: ir.Value, scores: list[ir.Value], j0: ir.Value) -> ir.Value:
        """The row's scores of this tile as weights exp(s - ref) in the weights array (keys past m,
        and with a causal mask past the row, weigh 0) and added to its sum lanes; the factor that
        rescales its numerators. The reference `ref` is the row's maximum when it last moved: it
        moves (to the new maximum, rescaling the sums and numerators by exp(old - new)) only when
        a score passes it by more than HEADROOM, rarely after a row's first tile, so that the
        weights need not wait for a horizontal maximum and an exp of it on every tile. Without
        FINITE, by the online softmax's rules for any score (monoids.scale_by_max): the maximum
        skips NaN, which then makes the sum NaN, and +inf weighs 1 against a +inf reference."""
        b = self.b
        nnan = ("nnan",) if self.FINITE else ()
        masked = self._masked(row, scores, j0)
        ref_at = b.gep(self.row_ref, [slot])
        old = b.load(ref_at)
        limit = self._splat(b.fadd(old, ops.const(F32, HEADROOM)))  # -inf until the row meets a key
        over = [b.bitcast(b.fcmp_ordered(">", s, limit), ir.IntType(LANES)) for s in masked]
        alpha_at = self._slot(F32, ops.const(F32, 1.0))  # 1 unless the reference moves
        with b.if_then(b.icmp_unsigned("!=", functools.reduce(b.or_, over), ir.Constant(ir.IntType(LANES), 0)),
                       likely=False):
            top = functools.reduce(lambda u, w: self.math.intrinsic(b, "maxnum", u, w, flags=nnan), masked)
            # FINITE: no NaN score (run checks the inputs); else a lane passed the limit, a number
            new = b.call(self.math._declared("llvm.vector.reduce.fmax.v16f32", F32, [_VEC]), [top], fastmath=nnan)
            b.store(new, ref_at)
            b.store(ops.poly_exp(b, self.math, b.fsub(old, new), nonpositive=True), alpha_at)  # 0 from -inf
        ref = b.load(ref_at)
        # a row that has met no key yet keeps -inf: its weights exp(-inf - 0) are 0
        ref = self._splat(b.select(b.fcmp_ordered("==", ref, ops.const(F32, float("-inf"))), ops.const(F32, 0.0), ref))
        alpha = self._splat(b.load(alpha_at))
        sums_at = self._vector_at(self.sums, b.mul(slot, _i(LANES)))
        total = b.fmul(b.load(sums_at, align=64), alpha)
        for p, s in enumerate(masked):
            w = ops.poly_exp(b, self.math, b.fsub(s, ref), nonpositive=True)
            if not self.FINITE:
                w = b.select(b.fcmp_ordered("==", s, ref), ops.const(_VEC, 1.0), w)
            if self.e_vectors:
                b.store(w, self._vector_at(self.weights, _i(r * TILE + p * LANES)), align=64)
            total = b.fadd(total, w)
        b.store(total, sums_at, align=64)
        return alpha

    def _keys_at(self, slot: ir.Value) -> ir.Value:
        return self.b.bitcast(self.b.gep(self.best_keys, [self.b.mul(slot, _i(LANES))]), _KEYS.as_pointer())

    def keep_best(self, slot: ir.Value, scores: list[ir.Value], j0: ir.Value, real: list[ir.Value] = ()) -> None:
        """Each lane's best score and its key, over the tile's 16-key panels in key order: a
        score replaces the lane's best only when greater, so that of equal scores a lane keeps
        the first key (finish then takes the first of the lanes' equal bests). Without FINITE,
        by argmax's rules for any value: a NaN replaces a number (the first NaN wins), an empty
        lane takes any real key (a -inf too), keys that are not `real` never enter."""
        b = self.b
        best_at, keys_at = self._vector_at(self.sums, b.mul(slot, _i(LANES))), self._keys_at(slot)
        best, keys = b.load(best_at, align=64), b.load(keys_at, align=64)
        lane = ir.Constant(_KEYS, list(range(LANES)))
        for p, s in enumerate(scores):
            key = b.add(ops.splat(b, b.trunc(b.add(j0, _i(p * LANES)), I32), LANES), lane)
            better = b.fcmp_ordered(">", s, best)
            if not self.FINITE:
                better = b.or_(better, b.and_(ops.is_nan(b, s), b.not_(ops.is_nan(b, best))))
                empty = b.icmp_signed("<", keys, ir.Constant(_KEYS, [0] * LANES))
                better = b.and_(real[p], b.or_(empty, better))
            best, keys = b.select(better, s, best), b.select(better, key, keys)
        b.store(best, best_at, align=64)
        b.store(keys, keys_at, align=64)

    def keep_k_best(self, slot: ir.Value, scores: list[ir.Value], j0: ir.Value, real: list[ir.Value] = ()) -> None:
        """The row's K slots (best first; lanes past K hold what slid out) updated with the tile's
        scores: the keys whose score passes the K-th best (any real key while a slot is empty:
        empty slots hold -inf, which masked keys do not pass) are walked in key order, each one
        inserted by codegen's BufferedKBest rule (the lanes it sorts before take the slot before
        them, so equal scores keep index order; a key that no longer enters changes nothing).
        Random keys make that rare after a row's first tiles (about K ln(M / K) insertions).
        Without FINITE, by kmax's rules for any value (NaN after every number; a -inf enters an
        empty slot), only `real` keys."""
        from kernelc.backends.llvm.codegen import _sorts_before

        b, k = self.b, self.shape.k
        vals_at, keys_at = self._vector_at(self.sums, b.mul(slot, _i(LANES))), self._keys_at(slot)
        last = ir.Constant(I32, k - 1)
        bar = self._splat(b.extract_element(b.load(vals_at, align=64), last))
        if self.FINITE:
            sorts = lambda v, x: b.fcmp_ordered(">", v, x)  # noqa: E731 (no NaN score: run checks)
            enters = [sorts(s, bar) for s in scores]
        else:
            sorts = lambda v, x: _sorts_before(b, v, x, True)  # noqa: E731 (NaN after every number)
            open_ = self._splat(b.icmp_signed("<", b.extract_element(b.load(keys_at, align=64), last),
                                              ir.Constant(I32, 0)))
            enters = [b.and_(real[p], b.or_(open_, sorts(s, bar))) for p, s in enumerate(scores)]
        mask_t = ir.IntType(TILE)
        passing = ir.Constant(mask_t, 0)
        for p, e in enumerate(enters):
            bits = b.zext(b.bitcast(e, ir.IntType(LANES)), mask_t)
            passing = b.or_(passing, b.shl(bits, ir.Constant(mask_t, p * LANES)))
        with b.if_then(b.icmp_unsigned("!=", passing, ir.Constant(mask_t, 0)), likely=False):
            for p, s in enumerate(scores):
                b.store(s, self._vector_at(self.tile_scores, _i(p * LANES)), align=64)
            ops.each_set_bit(b, passing, "kbest", lambda t: self.insert(vals_at, keys_at, j0, t, sorts))

    def insert(self, vals_at: ir.Value, keys_at: ir.Value, j0: ir.Value, t: ir.Value, sorts) -> None:
        """Key j0 + t, its score in tile_scores[t], into a row's sorted slots: the lanes it sorts
        before (`sorts(v, slots)`, lane by lane) and the empty ones take the slot before them,
        the first of them takes it; one that sorts before none changes nothing."""
        b = self.b
        up = ir.Constant(ir.VectorType(I32, LANES), [0] + list(range(LANES, 2 * LANES - 1)))
        v = b.load(b.gep(self.tile_scores, [t]))
        slots, keys = b.load(vals_at, align=64), b.load(keys_at, align=64)
        v_all, k_all = self._splat(v), ops.splat(b, b.trunc(b.add(j0, t), I32), LANES)
        before = b.or_(b.icmp_signed("<", keys, ir.Constant(_KEYS, [0] * LANES)), sorts(v_all, slots))
        after_first = b.shuffle_vector(ir.Constant(before.type, [0] * LANES), before, up)
        b.store(b.select(before, b.select(after_first, b.shuffle_vector(v_all, slots, up), v_all), slots),
                vals_at, align=64)
        b.store(b.select(before, b.select(after_first, b.shuffle_vector(k_all, keys, up), k_all), keys),
                keys_at, align=64)

    def _masked(self, row: ir.Value, scores: list[ir.Value], j0: ir.Value) -> list[ir.Value]:
        """The scores, -inf for keys past m (and with a causal mask, past the row)."""
        b = self.b
        lane = ir.Constant(ir.VectorType(I64, LANES), list(range(LANES)))
        masked = []
        for p, s in enumerate(scores):
            key = b.add(self._splat(b.add(j0, _i(p * LANES))), lane)
            out = b.icmp_signed(">=", key, self._splat(self.m))
            if self.shape.causal:
                out = b.or_(out, b.icmp_signed(">", key, self._splat(row)))
            masked.append(b.select(out, ops.const(_VEC, float("-inf")), s))
        return masked

    def accumulate(self, slots: list[ir.Value], alphas: list[ir.Value], j0: ir.Value, keys: ir.Value) -> None:
        """numerators[row] = numerators[row] alpha + the tile's numerators, which start at 0 so
        that they need not wait for alpha (an exp of the new maximum), which joins them at the
        end in one FMA."""
        b, e_dim = self.b, self.shape.values_dim
        for slot, alpha, row_sums in zip(slots, alphas, self.tile_numerators(len(slots), j0, keys)):
            for e, tile_sum in enumerate(row_sums):
                at = self._vector_at(self.numerators, b.add(b.mul(slot, _i(e_dim)), _i(e * LANES)))
                b.store(self.math.intrinsic(b, "fma", b.load(at, align=4), alpha, tile_sum), at, align=4)

    def tile_numerators(self, rows: int, j0: ir.Value, keys: ir.Value) -> list[list[ir.Value]]:
        """Per row, the sums over the tile's first `keys` keys of w v[key] (w in the weights
        array, v row-major with E values per key): E / 16 vectors per row in registers, each
        key's v loaded once for the rows."""
        b, e_dim = self.b, self.shape.values_dim
        accs = [[self._slot(_VEC, ops.const(_VEC, 0.0)) for _ in range(self.e_vectors)] for _ in range(rows)]

        def key(k: ir.Value) -> None:
            base = b.mul(b.add(j0, k), _i(e_dim))
            vs = [b.load(self._vector_at(self.v, b.add(base, _i(e * LANES))), align=4) for e in range(self.e_vectors)]
            for r, row_accs in enumerate(accs):
                w = self._splat(b.load(b.gep(self.weights, [b.add(k, _i(r * TILE))])))
                for acc, value in zip(row_accs, vs):
                    b.store(self.math.intrinsic(b, "fma", w, value, b.load(acc)), acc)

        ops.loop(b, _i(0), keys, "keys", key)
        return [[b.load(acc) for acc in row_accs] for row_accs in accs]

    def finish(self, row: ir.Value, slot: ir.Value) -> None:
        """out[row] = numerators / sum of the weights (0 for a row that met no key), or for a
        log-sum-exp the maximum plus the log of the sum."""
        b, e_dim = self.b, self.shape.values_dim
        lanes = b.load(self._vector_at(self.sums, b.mul(slot, _i(LANES))), align=64)
        if self.shape.extreme is not None:
            self.finish_extreme(row, lanes, b.load(self._keys_at(slot), align=64))
            return
        total = b.call(self.math._declared("llvm.vector.reduce.fadd.v16f32", F32, [F32, _VEC]),
                       [ops.const(F32, 0.0), lanes], fastmath=("reassoc",))
        if not self.e_vectors:  # log sum exp(s) = ref + log sum exp(s - ref): -inf for no key
            out = b.fadd(b.load(b.gep(self.row_ref, [slot])), self.math.intrinsic(b, "log", total))
            b.store(out, b.gep(self.out, [row]))
            return
        empty = b.fcmp_ordered("==", total, ops.const(F32, 0.0))
        for e in range(self.e_vectors):
            num = b.load(self._vector_at(self.numerators, b.add(b.mul(slot, _i(e_dim)), _i(e * LANES))), align=4)
            value = b.select(empty, ops.const(_VEC, 0.0), b.fdiv(num, self._splat(total)))
            b.store(value, self._vector_at(self.out, b.add(b.mul(row, _i(e_dim)), _i(e * LANES))), align=4)


    def finish_extreme(self, row: ir.Value, best: ir.Value, keys: ir.Value) -> None:
        """out[row] = the largest of the lanes' best scores (negated back for a min), or for an
        arg the first key among the lanes that hold it (an i64); the K slots of a K best.
        Without FINITE, a NaN in a lane makes the max NaN and the arg the first NaN's key."""
        b, kind = self.b, self.shape.extreme
        if self.shape.k:  # the K slots, best first; empty ones (M < K) -inf and -1, as the language pads
            k = self.shape.k
            at = b.mul(row, _i(k))
            for t in range(k):
                if kind in _VALUED:
                    v = b.extract_element(best, ir.Constant(I32, t))
                    b.store(b.fneg(v) if kind in _FLIPPED else v, b.gep(self.out, [b.add(at, _i(t))]))
                else:
                    key = b.sext(b.extract_element(keys, ir.Constant(I32, t)), I64)
                    b.store(key, b.gep(b.bitcast(self.out, I64.as_pointer()), [b.add(at, _i(t))]))
            return
        if not self.FINITE:
            self._finish_any_extreme(row, best, keys)
            return
        top = b.call(self.math._declared("llvm.vector.reduce.fmax.v16f32", F32, [_VEC]), [best],
                     fastmath=("nnan",))  # no NaN score: run checks the inputs
        if kind in (ReduceKind.MAX, ReduceKind.MIN):
            b.store(b.fneg(top) if kind is ReduceKind.MIN else top, b.gep(self.out, [row]))
            return
        first = b.select(b.fcmp_ordered("==", best, self._splat(top)), keys, ir.Constant(_KEYS, [2 ** 31 - 1] * LANES))
        key = b.call(self.math._declared("llvm.vector.reduce.smin.v16i32", I32, [_KEYS]), [first])
        b.store(b.sext(key, I64), b.gep(b.bitcast(self.out, I64.as_pointer()), [row]))


    def _finish_any_extreme(self, row: ir.Value, best: ir.Value, keys: ir.Value) -> None:
        """finish_extreme without FINITE: the language's max/argmax on the materialized matrix
        (NaN, and the first NaN's key, if a lane holds one; lanes that met no key left out)."""
        b, kind = self.b, self.shape.extreme
        nan = ops.is_nan(b, best)
        any_nan = b.icmp_unsigned("!=", b.bitcast(nan, ir.IntType(LANES)), ir.Constant(ir.IntType(LANES), 0))
        held = b.icmp_signed(">=", keys, ir.Constant(_KEYS, [0] * LANES))
        numbers = b.select(b.or_(nan, b.not_(held)), ops.const(_VEC, float("-inf")), best)
        top = b.call(self.math._declared("llvm.vector.reduce.fmax.v16f32", F32, [_VEC]), [numbers],
                     fastmath=("nnan",))
        if kind in _VALUED:
            value = b.select(any_nan, ops.const(F32, float("nan")), top)
            b.store(b.fneg(value) if kind in _FLIPPED else value, b.gep(self.out, [row]))
            return
        tops = b.and_(held, b.fcmp_ordered("==", best, self._splat(top)))
        first = b.select(b.select(self._splat(any_nan), nan, tops), keys, ir.Constant(_KEYS, [2 ** 31 - 1] * LANES))
        key = b.call(self.math._declared("llvm.vector.reduce.smin.v16i32", I32, [_KEYS]), [first])
        b.store(b.sext(key, I64), b.gep(b.bitcast(self.out, I64.as_pointer()), [row]))


def cache_key(shape: Shape) -> str:
    import llvmlite

    from kernelc import __version__
    from kernelc.backends.cache import make_key
    from kernelc.backends.llvm import codegen_version
    from kernelc.backends.llvm.jit import host_description

    return make_key("llvm-fused-attention", codegen_version(), __version__, llvmlite.__version__,
                    host_description(), str((shape.dim, shape.values_dim, shape.causal, ROWS, TILE, PANEL,
                                             shape.extreme, shape.k)))


def pack_keys(y: np.ndarray, dim: int) -> np.ndarray:
    """y (m, D) as (panels, dim, 16): 16 keys' component d contiguous, zero-padded to whole tiles
    and to `dim` components."""
    m, d = y.shape
    panels = -(-m // TILE) * (TILE // LANES)
    packed = np.empty((panels, dim, LANES), np.float32)
    full = m // LANES  # written straight from y: 5x faster than through a zero-padded copy (1e4 x 64)
    packed[:full, :d] = y[:full * LANES].reshape(full, LANES, d).transpose(0, 2, 1)
    packed[:full, d:] = 0
    packed[full:] = 0
    if full < panels:
        packed[full, :d, :m - full * LANES] = y[full * LANES:].T
    return packed


class FusedAttentionExecutable:
    """The compiled function and the per-call work around it: the checks that keep the call
    exact, the packed keys, row ranges over threads."""

    def __init__(self, att: amx.Attention, threads: int, chunks_per_thread: int) -> None:
        from kernelc.backends.llvm.jit import compile_ir

        self.att, self.threads, self.chunks_per_thread = att, threads, chunks_per_thread
        self.shape = Shape(padded(att.dim), padded(att.values_dim), att.causal, att.extreme, att.k)
        key = cache_key(self.shape)
        tag = "_" + key[:20]
        self._text = lambda: generate(self.shape, tag)
        addresses, self.optimized_ir = compile_ir(self._text, [symbol(tag)], key, 512)
        self.fn = _FN(addresses[symbol(tag)])

    @property
    def description(self) -> str:
        return (f"{self.att.what} fused in AVX-512 FMA micro-kernels, "
                f"exact f32 ({PANEL}-row panels x {TILE}-key tiles; calls with non-finite or huge inputs run the "
                "generic code)")

    @property
    def code(self) -> str:
        from kernelc.backends.llvm.jit import optimized_ir

        return self.optimized_ir or optimized_ir(self._text(), 512)

    def factor(self, inputs: dict[str, np.ndarray]) -> float | None:
        """The scores' factor, where multiplying by it is exactly what the kernel computes: a
        division only by a power of 2 (whose reciprocal is exact)."""
        c = amx.factor(self.att, inputs)
        if c is None:
            return None
        if self.att.invert and math.frexp(abs(c))[0] != 0.5:
            return None
        return c

    def run(self, inputs: dict[str, np.ndarray], out: np.ndarray) -> bool:
        """out (n x E) for this call; False, having done nothing, for calls it cannot take
        exactly (see the module's docstring)."""
        att = self.att
        x = np.ascontiguousarray(inputs[att.queries], np.float32)
        y = np.ascontiguousarray(inputs[att.keys], np.float32)
        v = np.ascontiguousarray(inputs[att.values], np.float32).reshape(len(y), att.values_dim) \
            if att.values is not None else np.zeros((len(y), 0), np.float32)
        n, m = len(x), len(y)
        c = self.factor(inputs)
        if n == 0 or m == 0 or c is None or m >= 2 ** 31:
            return False
        bounds = [max(float(a.max()), -float(a.min())) if a.size else 0.0 for a in (x, y, v)]  # no |a| copy
        if not all(math.isfinite(t) and t <= SAFE for t in bounds) or bounds[0] * bounds[1] * att.dim * abs(c) > SAFE:
            return False
        dim, values_dim = self.shape.dim, self.shape.values_dim
        yp = pack_keys(y, dim)
        x, v = _zero_padded(x, dim), _zero_padded(v, values_dim)
        blocks = -(-n // ROWS)  # chunks of whole micro-blocks (a chunk runs in panels of up to PANEL rows)
        chunks = max(1, min(blocks, self.threads * self.chunks_per_thread))
        edges = [min(n, blocks * k // chunks * ROWS) for k in range(chunks + 1)]
        # f16 and bf16 outputs are the f32 results rounded, as the row functions round them
        whole = out.flags.c_contiguous and out.dtype in (np.float32, np.int64) and values_dim == att.values_dim
        width = att.k or values_dim  # the function's outputs per row (0: one)
        target = out if whole else np.empty((n, width) if width else n, np.float32)
        states = amx._aligned((chunks, self.shape.state_floats), zero=False, dtype=np.float32)

        def job(k: int) -> None:
            self.fn(x.ctypes.data, yp.ctypes.data, v.ctypes.data, target.ctypes.data, states[k].ctypes.data, m,
                    edges[k], edges[k + 1], c)

        map_jobs(self.threads, job, range(chunks))
        if target is not out:
            out[...] = (target[:, :att.values_dim] if values_dim else target).reshape(out.shape)
        return True


def _zero_padded(a: np.ndarray, width: int) -> np.ndarray:
    """Rows of `a` with zero columns up to `width` (a copy only when it has fewer)."""
    if a.shape[1] == width:
        return a
    wide = np.zeros((len(a), width), np.float32)
    wide[:, :a.shape[1]] = a
    return wide
