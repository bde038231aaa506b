"""Kernel sums of long dot products and distances, `sum[j](f(s) * b)` and `mean[j](f(s) * b)`
with s = sqdist(x, y) or dot(x, y) at D >= 16 (b a weight or a vector of values per key), the
log-sum-exp of f(s), the softmax of f(s) with values, and the extremes and K best of f(s), in
the fused attention's micro-kernels.

The generic pair loop builds a long component sum a component at a time for a register block
of rows, streaming every key's D floats from L2 once per block (a Gaussian at D = 64 ran at
about half of the FMA peak, below it where y outgrew L2). Here the scores come from the
attention path's blocking (fused_attention: y packed in 16-key panels, a panel of rows meets
64-key tiles that stay in L1, 4 x 64 scores in registers per micro-block; for sqdist each
component is a subtraction and an FMA), and the term f(s) b is evaluated on those vectors by
the same `ops` functions the row functions use: f is elementwise in s, in values computed
once per call (constants and scalar parameters, evaluated as the row functions evaluate them,
`amx.factor`'s way) and in scalars of the row or of the key (a bandwidth per point, a cosine's
norms: computed per call in NumPy, a row's value splat, the keys' a vector per 16 keys), b an
optional weight per key. Each row adds its terms in 16 f32 lanes per
tile (the products with one FMA, as the row functions add a sum's products) and the lanes join
16 f64 totals per tile: a blocked sum, as LANGUAGE.md §6 asks. The order of the components'
products differs from the generic code's (which interleaves four partial sums), so results
agree with it to rounding. Non-finite values follow IEEE arithmetic as in the generic code;
calls with no rows or no keys run the generic code (`run` returns False). The extremes keep
the attention path's states (16 lanes of best terms and keys, or K sorted slots, per row) by the
language's rules for any term: a NaN wins argmax and sorts after every number among the K best.
The log-sum-exp and the softmax keep the attention's online state (a lazily moved reference,
16 sum lanes, the softmax's numerators rescaled with it), by the online softmax's rules for any
term; a sum's vectors of values per key take the attention's numerator loop, each tile's sums
joined to f64 totals.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass

import numpy as np
from llvmlite import ir

from kernelc.backends.llvm import amx, fused_attention, ops
from kernelc.backends.llvm.fused_attention import LANES, PANEL, ROWS, TILE, _VEC, _i, pack_keys, padded
from kernelc.backends.llvm.ops import F32, F64, I64
from kernelc.backends.llvm.patterns import F32_AND_NARROW, param_of, row_and_column
from kernelc.backends.threads import map_jobs
from kernelc.ir import signs
from kernelc.ir.dtypes import DType
from kernelc.ir.nodes import Kernel, Node, walk
from kernelc.ir.ops import ELEMENTWISE_OPS, Op, ReduceKind

MIN_DIM = 16  # shorter sums: the row functions' pair loop does well
MAX_DIM = fused_attention.MAX_DIM
# per-pair operations of f that ops.elementwise builds on vectors; libm's functions too where
# libmvec has a variant of 16 lanes (`_on_vectors`; else a call per lane)
_VECTOR_OPS = frozenset({Op.ADD, Op.SUB, Op.MUL, Op.DIV, Op.NEG, Op.EXP, Op.EXP2, Op.LOG, Op.LOG2, Op.SQRT,
                         Op.RSQRT, Op.INV, Op.ABS, Op.SQUARE, Op.MIN, Op.MAX, Op.POW, Op.SIGN, Op.RELU, Op.STEP,
                         Op.FLOOR, Op.CEIL, Op.ROUND, Op.SIGMOID})
_LIBM_OPS = frozenset({Op.SIN, Op.COS, Op.TAN, Op.ASIN, Op.ACOS, Op.ATAN, Op.SINH, Op.COSH, Op.TANH, Op.EXPM1,
                       Op.LOG1P, Op.ERF, Op.SOFTPLUS})
_FN = ctypes.CFUNCTYPE(None, *[ctypes.c_void_p] * 8, ctypes.c_int64, ctypes.c_int64, ctypes.c_int64)
_F64X8 = ir.VectorType(F64, 8)
_SUMS = frozenset({ReduceKind.SUM, ReduceKind.MEAN})
# logsumexp of f(s) alone (no weights) and softmax of f(s) with values: the attention path's
# online state
_ONLINE = frozenset({ReduceKind.LOGSUMEXP, ReduceKind.SOFTMAX})
# the extremes of f(s): of the negated terms for min, argmin, kmin and argkmin (negation is exact)
_EXTREMES = frozenset({ReduceKind.MAX, ReduceKind.MIN, ReduceKind.ARGMAX, ReduceKind.ARGMIN}) | fused_attention.K_BEST
_FLIPPED = frozenset({ReduceKind.MIN, ReduceKind.ARGMIN, ReduceKind.KMIN, ReduceKind.ARGKMIN})
_VALUED = frozenset({ReduceKind.SUM, ReduceKind.MEAN, ReduceKind.MAX, ReduceKind.MIN, ReduceKind.KMAX,
                     ReduceKind.KMIN, ReduceKind.LOGSUMEXP})


@dataclass(frozen=True)
class PairSum:
    """`kind[j](f(s) * weight)`: s the score node (sqdist or dot of `queries` and `keys`), `term`
    f(s), `constants` its per-call subexpressions (passed as f32 values, in this order); f may
    also read scalars of the row and of the key (`row_values`, `key_values`: parameters, or
    expressions of one side's parameters such as norm(x), computed per call in NumPy). With
    `values`, a sum's terms are f(s) times that parameter's vector of `values_dim` per key."""

    kind: ReduceKind
    queries: str
    keys: str
    weight: str | None
    dim: int
    distance: bool
    score: Node
    term: Node
    constants: tuple[Node, ...]
    bindings: tuple[tuple[str, int], ...]
    row_values: tuple[Node, ...] = ()  # f32 scalars of i that f reads (a row's norm, bandwidth)
    key_values: tuple[Node, ...] = ()  # and of j
    k: int = 0  # K of a K-best reduction
    values: str | None = None  # values v[j, E] (f32, f16, bf16) that a sum's terms multiply, or a softmax's
    values_dim: int = 0

    @property
    def what(self) -> str:
        times = f" times {self.values_dim} values per key" if self.values else ""
        return f"{self.kind.name.lower()} of a function of {'sqdist' if self.distance else 'dot'}(x, y){times}"

    def text(self) -> str:
        """The term as text (its part of the cache key): f's operations, the score, the leaves."""
        names: dict[int, str] = {id(self.score): "s"}
        names.update({id(c): f"c{k}" for k, c in enumerate(self.constants)})
        names.update({id(v): f"r{k}" for k, v in enumerate(self.row_values)})
        names.update({id(v): f"k{k}" for k, v in enumerate(self.key_values)})

        def show(n: Node) -> str:
            if id(n) in names:
                return names[id(n)]
            return f"{n.op.name}({', '.join(show(s) for s in n.src)})"
        return (f"{self.kind.name} {self.k} {'sqdist' if self.distance else 'dot'} {show(self.term)} "
                f"weight={bool(self.weight)} values={self.values_dim}")


def match(kernel: Kernel, bindings: dict[str, int]) -> PairSum | None:
    """The pair reduction this path runs, or None: one output over i, sum or mean over j of f(s)
    or f(s) * b (f32 or narrow; b a weight or a vector of values), logsumexp over j of f(s),
    softmax over j of f(s) with f32 values, or max, min, argmax, argmin or the K best (K <= 16)
    of f(s);
    s = sqdist(x, y) or dot(x, y) of f32, f16 or bf16 parameters with MIN_DIM <= D <= MAX_DIM,
    f elementwise (_VECTOR_OPS, f32) in s, per-call values and one side's scalars, b an f32
    parameter of j; on a host with AVX-512."""
    from kernelc.backends.llvm.jit import vector_widths

    if len(kernel.outputs) != 1 or kernel.outputs[0].type.index != ("i",) or 512 not in vector_widths():
        return None
    red = kernel.outputs[0].value
    if red.op is not Op.REDUCE or red.arg.index != "j" or red.arg.kind not in _SUMS | _EXTREMES | _ONLINE \
            or len(red.src) != (2 if red.arg.kind is ReduceKind.SOFTMAX else 1):
        return None
    kind = red.arg.kind
    k = red.arg.k.evaluate(bindings) if kind in fused_attention.K_BEST else 0
    if (kind in _VALUED and red.dtype not in F32_AND_NARROW) or not 0 <= k <= LANES:
        return None
    params = {p.name: p for p in kernel.params}
    term, weight, values = red.src[0], None, None
    if kind is ReduceKind.SOFTMAX:  # softmax[j](f(s), v): v f32 of j, a scalar (one value) or a vector
        values = param_of(red.src[1], params, ("j",), F32_AND_NARROW)
        if values is None or (not _scalar(values, bindings) and values.dim.evaluate(bindings) > MAX_DIM):
            return None
    if term.op is Op.MUL and kind in _SUMS:
        for f, w in (term.src, term.src[::-1]):
            found = param_of(w, params, ("j",), F32_AND_NARROW)  # (narrow ones are taken in f32)
            if found is None or f.deps != frozenset({"i", "j"}) or not _scalar(f, bindings):
                continue
            if _scalar(found, bindings):
                term, weight = f, found.arg
            elif found.dim.evaluate(bindings) <= MAX_DIM:
                term, values = f, found
            break
    if not k and not _scalar(red, bindings) and values is None:
        return None
    scores = [n for n in walk([term]) if n.op is Op.VSUM and n.deps == frozenset({"i", "j"})]
    if len(scores) != 1 or not _in_f32(term):
        return None
    score = scores[0]
    distance = score.src[0].op is Op.SQUARE and score.src[0].src[0].op is Op.SUB
    pair = score.src[0].src[0].src if distance else score.src[0].src if score.src[0].op is Op.MUL else None
    operands = row_and_column(*pair, params, F32_AND_NARROW) if pair is not None else None
    if operands is None or not MIN_DIM <= operands[0].dim.evaluate(bindings) <= MAX_DIM:
        return None
    leaves = _leaves(term, score, params, bindings)
    if leaves is None:
        return None
    constants, row_values, key_values = leaves
    return PairSum(kind, operands[0].arg, operands[1].arg, weight, operands[0].dim.evaluate(bindings),
                   distance, score, term, constants, tuple(sorted(bindings.items())), row_values, key_values, k,
                   values.arg if values is not None else None,
                   0 if values is None else 1 if _scalar(values, bindings) else values.dim.evaluate(bindings))


def _in_f32(node: Node) -> bool:
    """Whether the row functions compute `node` in f32: f32, and f16 and bf16 values (LANGUAGE.md
    §5: narrow values are computed in f32 and rounded only at outputs and explicit casts, which
    are not vector operations here)."""
    return node.dtype is DType.F32 or node.dtype.is_narrow_float


def _scalar(node: Node, bindings: dict[str, int]) -> bool:
    return node.dim is None or node.dim.evaluate(bindings) == 1


def _leaves(term: Node, score: Node, params: dict, bindings: dict[str, int]) \
        -> tuple[tuple[Node, ...], tuple[Node, ...], tuple[Node, ...]] | None:
    """The per-call subexpressions of f and its f32 scalars of the row and of the key (each the
    largest one), or None if f is not elementwise in the score and them with vector operations
    on f32 scalars."""
    found: list[Node] = []
    sides: dict[frozenset, list[Node]] = {frozenset({"i"}): [], frozenset({"j"}): []}

    def visit(n: Node) -> bool:
        if n is score:
            return True
        if n.deps in sides:
            if not _in_f32(n) or not _scalar(n, bindings) or not _one_side(n, params):
                return False
            if all(n is not v for v in sides[n.deps]):
                sides[n.deps].append(n)
            return True
        if not n.deps:
            if not amx._per_call(n, params) or not _in_f32(n):
                return False
            if all(n is not c for c in found):
                found.append(n)
            return True
        if not _on_vectors(n.op) or not _in_f32(n) or not _scalar(n, bindings):
            return False
        if n.op is Op.POW and (n.src[1].op is not Op.CONST or ops.small_integer(float(n.src[1].arg), F32) is None):
            return False  # (a pow call per lane would not vectorize)
        return all(visit(s) for s in n.src)

    return (tuple(found), tuple(sides[frozenset({"i"})]), tuple(sides[frozenset({"j"})])) if visit(term) else None


def _on_vectors(op: Op) -> bool:
    """Whether f may hold `op` (softplus is a log1p of an exp)."""
    if op in _LIBM_OPS:
        return ops.libm_vectorizes(Op.LOG1P if op is Op.SOFTPLUS else op, LANES)
    return op in _VECTOR_OPS


def _one_side(node: Node, params: dict) -> bool:
    """Whether `node` is computed from one side's parameters (and per-call values) by elementwise
    operations and component sums, as `amx.per_call_values` evaluates them in NumPy."""
    for n in walk([node]):
        if n.op is Op.PARAM:
            if params[n.arg].type.index not in ((), tuple(node.deps)):
                return False
        elif n.op not in (Op.CONST, Op.DIMSIZE, Op.VSUM) and n.op not in ELEMENTWISE_OPS:
            return False
    return True


def constant_values(pair: PairSum, inputs: dict[str, np.ndarray]) -> np.ndarray:
    """The per-call subexpressions' values for this call, as the row functions compute them, as
    f32 (one 0 when there are none)."""
    values = amx.per_call_values(list(pair.constants), inputs, dict(pair.bindings))
    with np.errstate(all="ignore"):
        return np.array([np.float32(values[c]) for c in pair.constants] or [0.0], np.float32)


def symbol(tag: str) -> str:
    return f"kc_fused_sum{tag}"


def generate(pair: PairSum, tag: str) -> str:
    """The module of `void f(f32* x, f32* yp, f32* b, f32* out, f64* state, f32* constants,
    f32* row_values, f32* key_values, i64 m, i64 r0, i64 r1)`: rows [r0, r1) of out, y packed as
    fused_attention.pack_keys packs it, b zero-padded to whole tiles (or any array, unread,
    without a weight; with values, v row-major with Ep = padded(E) values per key, and out
    with Ep per row), `state` 64-byte aligned scratch of state_doubles(pair), the rows' values
    (n, len(row_values)) and the keys' (len(key_values), m padded to whole tiles)."""
    module = ir.Module(name="fused_sum")
    p32 = F32.as_pointer()
    fnty = ir.FunctionType(ir.VoidType(), [p32, p32, p32, p32, F64.as_pointer(), p32, p32, p32, I64, I64, I64])
    fn = ir.Function(module, fnty, name=symbol(tag))
    fn.attributes.add("nounwind")
    _SumBuilder(fn, ops.Math(module), pair).build()
    return str(module)


def state_doubles(pair: PairSum) -> int:
    """A panel's states: 16 f64 total lanes per row, or Ep f64 totals with values (spare rows
    included); a softmax's the attention's (f32 sums, numerators, references)."""
    if pair.kind is ReduceKind.SOFTMAX:
        return fused_attention.Shape(padded(pair.dim), padded(pair.values_dim), False).state_floats // 2
    return (PANEL + ROWS) * max(LANES, padded(pair.values_dim))


class _SumBuilder(fused_attention._Builder):
    """The attention builder's panels, tiles and scores, with a sum of f(s) b per row (or its
    extremes, or its log-sum-exp or softmax in the attention's online state: terms may be NaN
    or inf)."""

    FINITE = False

    def __init__(self, fn: ir.Function, math_: ops.Math, pair: PairSum) -> None:
        self.fn, self.math, self.pair = fn, math_, pair
        self.extreme, self.online = pair.kind in _EXTREMES, pair.kind in _ONLINE
        self.shape = fused_attention.Shape(padded(pair.dim), padded(pair.values_dim) if pair.values else 0, False,
                                           pair.kind if self.extreme else None, pair.k)
        self.e_vectors = self.shape.values_dim // LANES
        self.x, self.yp, self.weights_in, self.out, self.totals, constants, self.row_in, self.key_in, \
            self.m, self.r0, self.r1 = fn.args
        self.v = self.weights_in  # with values: v, row-major, Ep per key
        self.entry = fn.append_basic_block("entry")
        self.b = ir.IRBuilder(self.entry)
        # the per-call values, splat once at the function's start
        self.leaves = {id(c): self._splat(self.b.load(self.b.gep(constants, [_i(k)])))
                       for k, c in enumerate(pair.constants)}
        # an extreme's state (the attention builder's): each row's 16 lanes of best terms, then
        # each row's 16 lanes of keys; a log-sum-exp's or a softmax's: 16 sum lanes, Ep
        # numerators (softmax), then each row's reference
        slots = PANEL + ROWS
        self.sums = self.b.bitcast(self.totals, F32.as_pointer())
        self.best_keys = self.b.bitcast(self.b.gep(self.sums, [_i(slots * LANES)]), ops.I32.as_pointer())
        self.softmax = pair.kind is ReduceKind.SOFTMAX
        self.numerators = self.b.gep(self.sums, [_i(slots * LANES)])
        self.row_ref = self.b.gep(self.sums, [_i(slots * (LANES + (self.shape.values_dim if self.softmax else 0)))])
        self.tile_scores = self._array(F32, TILE)
        self.weights = self._array(F32, ROWS * TILE)  # with values: the micro-block's terms or weights

    def product(self, xd: ir.Value, y: ir.Value, acc: ir.Value) -> ir.Value:
        if not self.pair.distance:
            return super().product(xd, y, acc)
        diff = self.b.fsub(xd, y)
        return self.math.intrinsic(self.b, "fma", diff, diff, acc)

    def scaled(self, sums: list[list[ir.Value]]) -> list[list[ir.Value]]:
        return sums  # (a factor is part of f)

    def _totals_at(self, slot: ir.Value, half: int, e: int = 0) -> ir.Value:
        """Half a vector of a row's f64 totals: of its 16 lanes, or of its values e*16.. ."""
        width = self.shape.values_dim or LANES
        at = self.b.gep(self.totals, [self.b.add(self.b.mul(slot, _i(width)), _i(e * LANES + 8 * half))])
        return self.b.bitcast(at, _F64X8.as_pointer())

    def _join(self, lanes: ir.Value, slot: ir.Value, e: int = 0) -> None:
        """f64 totals += 16 f32 lanes (a blocked sum: a tile's terms in f32, the tiles in f64)."""
        b = self.b
        for half in range(2):
            part = b.fpext(b.shuffle_vector(lanes, lanes, ir.Constant(ir.VectorType(ops.I32, 8),
                                                                      list(range(8 * half, 8 * half + 8)))), _F64X8)
            at = self._totals_at(slot, half, e)
            b.store(b.fadd(b.load(at, align=64), part), at, align=64)

    def reset(self, s: ir.Value) -> None:
        if self.extreme or self.online:
            super().reset(s)
            return
        for e in range(max(1, self.e_vectors)):
            for half in range(2):
                self.b.store(ir.Constant(_F64X8, [0.0] * 8), self._totals_at(s, half, e), align=64)

    def epilogue(self, rows: list[ir.Value], slots: list[ir.Value], scores: list[list[ir.Value]],
                 j0: ir.Value) -> None:
        """Each row's terms of the tile in 16 f32 lanes (keys past m add 0), joined to its f64
        totals."""
        b = self.b
        lane = ir.Constant(ir.VectorType(I64, LANES), list(range(LANES)))
        real = [b.icmp_signed("<", b.add(self._splat(b.add(j0, _i(p * LANES))), lane), self._splat(self.m))
                for p in range(TILE // LANES)]
        weights = [b.load(self._vector_at(self.weights_in, b.add(j0, _i(p * LANES))), align=4)
                   for p in range(TILE // LANES)] if self.pair.weight is not None else []
        zero = ops.const(_VEC, 0.0)
        padded_m = b.mul(b.sdiv(b.add(self.m, _i(TILE - 1)), _i(TILE)), _i(TILE))
        key_values = [{id(v): b.load(self._vector_at(self.key_in, b.add(b.mul(_i(k), padded_m),
                                                                         b.add(j0, _i(p * LANES)))), align=4)
                       for k, v in enumerate(self.pair.key_values)} for p in range(TILE // LANES)]
        width = _i(len(self.pair.row_values))
        alphas: list[ir.Value] = []  # a softmax's rescaling of each row's numerators
        for r, (row, slot, row_scores) in enumerate(zip(rows, slots, scores)):
            row_values = {id(v): self._splat(b.load(b.gep(self.row_in, [b.add(b.mul(row, width), _i(k))])))
                          for k, v in enumerate(self.pair.row_values)}
            if self.extreme or self.online:
                terms = [self.term(self.pair.term, s, row_values | key_values[p]) for p, s in enumerate(row_scores)]
                if self.online:  # (weigh masks the keys past m)
                    alphas.append(self.weigh(r, row, slot, terms, j0))
                    continue
                terms = [b.fneg(t) for t in terms] if self.pair.kind in _FLIPPED else terms
                (self.keep_k_best if self.pair.k else self.keep_best)(slot, terms, j0, real)
                continue
            if self.e_vectors:  # a sum's terms, for the values' products (only keys below m are read)
                for p, s in enumerate(row_scores):
                    b.store(self.term(self.pair.term, s, row_values | key_values[p]),
                            self._vector_at(self.weights, _i(r * TILE + p * LANES)), align=64)
                continue
            lanes = zero
            for p, s in enumerate(row_scores):
                t = b.select(real[p], self.term(self.pair.term, s, row_values | key_values[p]), zero)
                lanes = self.math.intrinsic(b, "fma", t, weights[p], lanes) if weights else b.fadd(lanes, t)
            self._join(lanes, slot)
        keys = self._min(b.sub(self.m, j0), _i(TILE))  # keys of this tile (the last may be short)
        if self.softmax:
            self.accumulate(slots, alphas, j0, keys)
        elif self.e_vectors:
            for slot, row_sums in zip(slots, self.tile_numerators(len(slots), j0, keys)):
                for e, tile_sum in enumerate(row_sums):
                    self._join(tile_sum, slot, e)

    def term(self, node: Node, s: ir.Value, sides: dict[int, ir.Value]) -> ir.Value:
        """f(s) on a vector of scores (per-call values and the row's splat, the keys' values a
        vector)."""
        if node is self.pair.score:
            return s
        if id(node) in self.leaves:
            return self.leaves[id(node)]
        if id(node) in sides:
            return sides[id(node)]
        args = [self.term(n, s, sides) for n in node.src]
        if node.op in (Op.EXP, Op.EXP2) and signs.nonpositive(node.src[0]):  # no upper clamp
            return ops.poly_exp(self.b, self.math, args[0], base2=node.op is Op.EXP2, nonpositive=True)
        if node.op is Op.POW:  # a constant integer exponent (match): by multiplication
            return ops.integer_power(self.b, args[0], ops.small_integer(float(node.src[1].arg), F32))
        return ops.elementwise(self.b, self.math, node.op, args)

    def finish(self, row: ir.Value, slot: ir.Value) -> None:
        """out[row] = the sum of the 16 f64 totals (over m for a mean), rounded to f32; or the
        extreme's value or key (NaN, and the first NaN's key, if a lane holds one), or its K
        slots."""
        b = self.b
        if self.online:  # the reference plus the log of the sum; a softmax's numerators over the sum
            super().finish(row, slot)
            return
        if self.extreme:
            best = b.load(self._vector_at(self.sums, b.mul(slot, _i(LANES))), align=64)
            keys = b.load(self._keys_at(slot), align=64)
            self.finish_extreme(row, best, keys)
            return
        if self.e_vectors:  # out[row, e] = the totals (over m for a mean), rounded to f32
            for e in range(self.e_vectors):
                for half in range(2):
                    total = b.load(self._totals_at(slot, half, e), align=64)
                    if self.pair.kind is ReduceKind.MEAN:
                        total = b.fdiv(total, ops.splat(b, b.sitofp(self.m, F64), 8))
                    at = b.gep(self.out, [b.add(b.mul(row, _i(self.shape.values_dim)), _i(e * LANES + 8 * half))])
                    b.store(b.fptrunc(total, ir.VectorType(F32, 8)), b.bitcast(at, ir.VectorType(F32, 8).as_pointer()),
                            align=4)
            return
        both = b.fadd(b.load(self._totals_at(slot, 0), align=64), b.load(self._totals_at(slot, 1), align=64))
        total = b.call(self.math._declared("llvm.vector.reduce.fadd.v8f64", F64, [F64, _F64X8]),
                       [ops.const(F64, 0.0), both], fastmath=("reassoc",))
        if self.pair.kind is ReduceKind.MEAN:
            total = b.fdiv(total, b.sitofp(self.m, F64))
        b.store(b.fptrunc(total, F32), b.gep(self.out, [row]))


def cache_key(pair: PairSum) -> str:
    import llvmlite

    from kernelc import __version__
    from kernelc.backends.cache import make_key
    from kernelc.backends.llvm import codegen_version
    from kernelc.backends.llvm.jit import host_description

    return make_key("llvm-fused-sum", codegen_version(), __version__, llvmlite.__version__, host_description(),
                    str((padded(pair.dim), pair.text(), ROWS, TILE, PANEL)))


class FusedSumExecutable:
    """The compiled function and the per-call work around it: the packed keys, the padded
    weights, the per-call values, row ranges over threads."""

    def __init__(self, pair: PairSum, threads: int, chunks_per_thread: int) -> None:
        from kernelc.backends.llvm.jit import compile_ir

        self.pair, self.threads, self.chunks_per_thread = pair, threads, chunks_per_thread
        key = cache_key(pair)
        tag = "_" + key[:20]
        self._text = lambda: generate(pair, tag)
        addresses, self.optimized_ir = compile_ir(self._text, [symbol(tag)], key, 512)
        self.fn = _FN(addresses[symbol(tag)])

    @property
    def description(self) -> str:
        return (f"{self.pair.what} fused in AVX-512 FMA micro-kernels, exact f32 "
                f"({PANEL}-row panels x {TILE}-key tiles; calls with no rows or keys run the generic code)")

    @property
    def code(self) -> str:
        from kernelc.backends.llvm.jit import optimized_ir

        return self.optimized_ir or optimized_ir(self._text(), 512)

    def run(self, inputs: dict[str, np.ndarray], out: np.ndarray) -> bool:
        """out (n,) for this call; False, having done nothing, without rows or keys."""
        pair = self.pair
        x = np.ascontiguousarray(inputs[pair.queries], np.float32)
        y = np.ascontiguousarray(inputs[pair.keys], np.float32)
        n, m = len(x), len(y)
        if n == 0 or m == 0:
            return False
        dim = padded(pair.dim)
        yp = pack_keys(y, dim)
        x = fused_attention._zero_padded(x, dim)
        keys = -(-m // TILE) * TILE  # whole tiles: the weights' and the keys' values
        width = padded(pair.values_dim) if pair.values else 0
        if pair.values is not None:  # (the argument b carries v)
            values = np.ascontiguousarray(inputs[pair.values], np.float32).reshape(m, pair.values_dim)
            weights = fused_attention._zero_padded(values, width)
        else:
            weights = np.zeros(keys, np.float32)
            if pair.weight is not None:
                weights[:m] = np.asarray(inputs[pair.weight], np.float32).reshape(m)
        constants = constant_values(pair, inputs)
        sides = amx.per_call_values(list(pair.row_values + pair.key_values), inputs, dict(pair.bindings))
        with np.errstate(all="ignore"):
            row_values = np.ascontiguousarray(np.stack([np.asarray(sides[v], np.float32).reshape(n)
                                                        for v in pair.row_values] or [np.zeros(n, np.float32)], 1))
            key_values = np.zeros((max(1, len(pair.key_values)), keys), np.float32)
            for k, v in enumerate(pair.key_values):
                key_values[k, :m] = np.asarray(sides[v], np.float32).reshape(m)
        blocks = -(-n // ROWS)
        chunks = max(1, min(blocks, self.threads * self.chunks_per_thread))
        edges = [min(n, blocks * k // chunks * ROWS) for k in range(chunks + 1)]
        # f32 values or i64 keys as they are; f16 and bf16 values are the f32 results rounded once
        whole = out.flags.c_contiguous and out.dtype in (np.float32, np.int64) and width == pair.values_dim
        target = out if whole else np.empty((n, pair.k or width) if pair.k or width else n, np.float32)
        states = amx._aligned((chunks, state_doubles(pair)), zero=False, dtype=np.float64)

        def job(k: int) -> None:
            self.fn(x.ctypes.data, yp.ctypes.data, weights.ctypes.data, target.ctypes.data, states[k].ctypes.data,
                    constants.ctypes.data, row_values.ctypes.data, key_values.ctypes.data, m, edges[k], edges[k + 1])

        map_jobs(self.threads, job, range(chunks))
        if target is not out:
            out[...] = (target[:, :pair.values_dim] if width else target).reshape(out.shape)
        return True
