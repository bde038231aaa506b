"""Block-buffered reductions: argmin/argmax, logsumexp and softmax in two vectorizable passes.

The online forms of these reductions carry a dependency from one j to the next (the running
maximum rescales the running sum; the running minimum decides the index), which stops LLVM's
loop vectorizer. Instead, the pair loop only stores each block's arguments into a small stack
buffer; at the end of the block, plain reductions over the buffer (integer min/max of
order-preserving keys, sums of exp) vectorize, and the block's partial state is merged into the
running one with the monoid's `combine` rule (kernelc.ir.monoids), so ties, NaN and empty
ranges follow LANGUAGE.md §6 exactly as in the online form.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from llvmlite import ir

from kernelc.backends.llvm import ops
from kernelc.backends.llvm.ops import F32, I1, I32, I64, compute_type
from kernelc.ir.nodes import Node, Reduction
from kernelc.ir.ops import ReduceKind

if TYPE_CHECKING:
    from kernelc.backends.llvm.codegen import _FunctionBuilder

BIG = (1 << 62)
MAX_BUFFERED_SOFTMAX_DIM = 64


def buffered(node: Node, dim: int) -> bool:
    kind: ReduceKind = node.arg.kind  # type: ignore[union-attr]
    if kind in (ReduceKind.ARGMIN, ReduceKind.ARGMAX):
        return True
    if kind is ReduceKind.LOGSUMEXP:
        return len(node.src) == 1
    return kind is ReduceKind.SOFTMAX and dim <= MAX_BUFFERED_SOFTMAX_DIM


def _key_type(ty: ir.Type) -> ir.IntType:
    if isinstance(ty, ir.IntType):
        return I32 if ty.width < 32 else ty
    return I32 if ty == F32 else I64


def order_key(b: ir.IRBuilder, v: ir.Value) -> ir.Value:
    """An integer whose signed order is the order of the (non-NaN) float values; -0.0 == +0.0."""
    if isinstance(v.type, ir.IntType):
        return b.zext(v, I32) if v.type.width < 32 else v
    kt = _key_type(v.type)
    bits = b.bitcast(b.fadd(v, ops.const(v.type, 0.0)), kt)
    return b.xor(bits, b.and_(b.ashr(bits, ir.Constant(kt, kt.width - 1)), ir.Constant(kt, (1 << (kt.width - 1)) - 1)))


def from_key(b: ir.IRBuilder, key: ir.Value, ty: ir.Type) -> ir.Value:
    kt = key.type
    bits = b.xor(key, b.and_(b.ashr(key, ir.Constant(kt, kt.width - 1)), ir.Constant(kt, (1 << (kt.width - 1)) - 1)))
    return b.bitcast(bits, ty)


def _is_nan(b: ir.IRBuilder, v: ir.Value) -> ir.Value:
    return ops.is_nan(b, v) if not isinstance(v.type, ir.IntType) else ir.Constant(I1, 0)


def _imin(b: ir.IRBuilder, x: ir.Value, y: ir.Value, largest: bool = False) -> ir.Value:
    return b.select(b.icmp_signed(">" if largest else "<", x, y), x, y)


class BufferedState:
    def __init__(self, fb: "_FunctionBuilder", node: Node) -> None:
        from kernelc.backends.llvm.codegen import SUM_BLOCK, _extreme_init

        self.node = node
        self.red: Reduction = node.arg  # type: ignore[assignment]
        self.kind = self.red.kind
        self.ty = compute_type(node.src[0].dtype)
        with fb.b.goto_block(fb.entry):
            fb.b.position_at_start(fb.entry)
            self.scores = fb.b.alloca(self.ty, size=SUM_BLOCK)
            self.values = [fb.b.alloca(self.ty, size=SUM_BLOCK) for _ in range(fb.dim(node))] \
                if self.kind is ReduceKind.SOFTMAX else []
        slot = fb.alloca
        if self.kind in (ReduceKind.ARGMIN, ReduceKind.ARGMAX):
            self.best = slot(self.ty, _extreme_init(self.ty, node.src[0].dtype, self.kind is ReduceKind.ARGMAX))
            self.idx = slot(I64, ir.Constant(I64, -1))
        else:
            self.m = slot(self.ty, ops.const(self.ty, float("-inf")))
            self.t = [slot(self.ty, ops.const(self.ty, 0)) for _ in range(fb.dim(node))]
            self.den = slot(self.ty, ops.const(self.ty, 0))
            # the block's largest score, found while the scores are stored (no second pass)
            self.top = slot(self.ty, ops.const(self.ty, float("-inf")))

    def accumulate(self, fb: "_FunctionBuilder", args: list[list[ir.Value]], k: ir.Value) -> None:
        b = fb.b
        rel = b.sub(k, fb.block_start)
        s = args[0][0]
        b.store(s, b.gep(self.scores, [rel]))
        if self.kind not in (ReduceKind.ARGMIN, ReduceKind.ARGMAX):
            # llvm.maximum propagates NaN and orders -0 below +0: a reduction LLVM vectorizes
            b.store(fb.math.intrinsic(b, "maximum", b.load(self.top), s), self.top)
        if self.values:
            for buf, v in zip(self.values, fb.broadcast(args[1], len(self.values))):
                b.store(v, b.gep(buf, [rel]))

    def _accumulator(self, fb: "_FunctionBuilder", ty: ir.Type, init: int) -> ir.Value:
        return fb.alloca(ty, ir.Constant(ty, init))

    def _score(self, fb: "_FunctionBuilder", rel: ir.Value) -> ir.Value:
        return fb.b.load(fb.b.gep(self.scores, [rel]))

    def end_block(self, fb: "_FunctionBuilder", start: ir.Value, end: ir.Value) -> None:
        count = fb.b.sub(end, start)
        if self.kind in (ReduceKind.ARGMIN, ReduceKind.ARGMAX):
            self._end_arg(fb, start, count)
        else:
            self._end_exp(fb, count)

    def _end_arg(self, fb: "_FunctionBuilder", start: ir.Value, count: ir.Value) -> None:
        b, largest = fb.b, self.kind is ReduceKind.ARGMAX
        kt = _key_type(self.ty)
        worst = (-(1 << (kt.width - 1))) if largest else (1 << (kt.width - 1)) - 1
        best_key = self._accumulator(fb, kt, worst)
        first_nan = self._accumulator(fb, I64, BIG)

        def scan(rel: ir.Value) -> None:
            v = self._score(fb, rel)
            nan = _is_nan(b, v)
            key = b.select(nan, ir.Constant(kt, worst), order_key(b, v))
            b.store(_imin(b, b.load(best_key), key, largest), best_key)
            b.store(_imin(b, b.load(first_nan), b.select(nan, rel, ir.Constant(I64, BIG))), first_nan)

        fb.loop(ir.Constant(I64, 0), count, "argscan", scan)
        target = b.load(best_key)
        nan_at = b.load(first_nan)
        has_nan = b.icmp_signed("<", nan_at, ir.Constant(I64, BIG))
        # Finding the block's position is needed only when the block can win: a NaN (unless the
        # state already holds one), or an extreme strictly better than the state's (ties keep the
        # earlier index). With data in no particular order that is rare after the first blocks.
        best, idx = b.load(self.best), b.load(self.idx)
        better = b.icmp_signed(">" if largest else "<", target, order_key(b, best))
        empty = b.icmp_signed("<", idx, ir.Constant(I64, 0))
        can_win = b.or_(empty, b.and_(b.not_(_is_nan(b, best)), b.or_(has_nan, better)))
        with b.if_then(can_win):
            first = self._accumulator(fb, I64, BIG)

            def find(rel: ir.Value) -> None:
                v = self._score(fb, rel)
                hit = b.and_(b.icmp_signed("==", order_key(b, v), target), b.not_(_is_nan(b, v)))
                b.store(_imin(b, b.load(first), b.select(hit, rel, ir.Constant(I64, BIG))), first)

            fb.loop(ir.Constant(I64, 0), count, "argfind", find)
            pos = b.select(has_nan, nan_at, b.load(first))
            value, index = self._score(fb, pos), b.add(start, pos)
            from kernelc.backends.llvm.codegen import _better

            take = b.or_(empty, _better(b, value, best, largest))
            b.store(b.select(take, value, best), self.best)
            b.store(b.select(take, index, idx), self.idx)

    def _end_exp(self, fb: "_FunctionBuilder", count: ir.Value) -> None:
        from kernelc.backends.llvm.codegen import _scale

        b = fb.b
        block_m = b.fadd(b.load(self.top), ops.const(self.ty, 0.0))  # -0 -> +0, as the monoid's max
        b.store(ops.const(self.ty, float("-inf")), self.top)
        sums = [fb.alloca(self.ty, ops.const(self.ty, 0)) for _ in self.t]
        den = fb.alloca(self.ty, ops.const(self.ty, 0))

        def add(rel: ir.Value, finite: bool) -> None:
            s = self._score(fb, rel)
            # with a finite block maximum every s - m is in [-inf, 0] and no NaN: a plain exp;
            # otherwise (-inf, inf or NaN) the monoid's rules for the extremes
            w = ops.poly_exp(b, fb.math, b.fsub(s, block_m), nonpositive=True) if finite else _scale(fb, s, block_m)
            if self.kind is ReduceKind.LOGSUMEXP:
                b.store(b.fadd(b.load(sums[0]), w, flags=("reassoc",)), sums[0])
                return
            for acc, buf in zip(sums, self.values):
                b.store(b.fadd(b.load(acc), b.fmul(w, b.load(b.gep(buf, [rel]))), flags=("reassoc",)), acc)
            b.store(b.fadd(b.load(den), w, flags=("reassoc",)), den)

        is_finite = b.fcmp_ordered("<", fb.math.intrinsic(b, "fabs", block_m), ops.const(self.ty, float("inf")))
        with b.if_else(is_finite, likely=True) as (finite, extreme):
            with finite:
                fb.loop(ir.Constant(I64, 0), count, "expsum", lambda rel: add(rel, True))
            with extreme:
                fb.loop(ir.Constant(I64, 0), count, "expsum_extreme", lambda rel: add(rel, False))
        m = b.load(self.m)
        new_m = ops.select_max(b, m, block_m, largest=True)
        keep, fold = _scale(fb, m, new_m), _scale(fb, block_m, new_m)
        for slot, acc in zip(self.t, sums):
            b.store(b.fadd(b.fmul(b.load(slot), keep), b.fmul(b.load(acc), fold)), slot)
        b.store(b.fadd(b.fmul(b.load(self.den), keep), b.fmul(b.load(den), fold)), self.den)
        b.store(new_m, self.m)

    def fields(self, fb: "_FunctionBuilder") -> list[list[ir.Value]]:
        """The state in the layout of kernelc.ir.monoids."""
        b = fb.b
        if self.kind in (ReduceKind.ARGMIN, ReduceKind.ARGMAX):
            return [[b.load(self.best)], [b.load(self.idx)]]
        t = [b.load(x) for x in self.t]
        if self.kind is ReduceKind.LOGSUMEXP:
            return [[b.load(self.m)], t]
        return [[b.load(self.m)], t, [b.load(self.den)]]

    def finalize(self, fb: "_FunctionBuilder") -> list[ir.Value]:
        b = fb.b
        if self.kind in (ReduceKind.ARGMIN, ReduceKind.ARGMAX):
            return [b.load(self.idx)]
        if self.kind is ReduceKind.LOGSUMEXP:
            return [b.fadd(b.load(self.m), fb.math.intrinsic(b, "log", b.load(self.t[0])))]
        den = b.load(self.den)
        zero = ops.const(self.ty, 0)
        empty = b.fcmp_ordered("==", den, zero)
        return [b.select(empty, zero, b.fdiv(b.load(t), den)) for t in self.t]
