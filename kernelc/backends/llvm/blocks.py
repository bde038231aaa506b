"""Block-buffered reductions: argmin/argmax, logsumexp, softmax and the K-best reductions in
vectorizable passes.

The online forms of these reductions carry a dependency from one j to the next (the running
maximum rescales the running sum; the running minimum decides the index), which stops LLVM's
loop vectorizer. Instead, the pair loop stores each block's arguments into a small stack buffer
and keeps the block's extreme (a NaN-propagating min/max reduction, which vectorizes); at the end
of the block, logsumexp/softmax sum exp(s - max) over the buffer, and argmin/argmax look for the
extreme's first position only when the block can beat the running state (rare after the first
blocks), and kmin/argkmin insert a block's scores only when one of them enters the K slots. The
block's partial state is merged into the running one with the monoid's `combine` rule
(kernelc.ir.monoids), so ties, NaN and empty ranges follow LANGUAGE.md §6 exactly as in the
online form.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from llvmlite import ir

from kernelc.backends.llvm import ops
from kernelc.backends.llvm.ops import I1, I32, I64, compute_type
from kernelc.ir.nodes import Node, Reduction
from kernelc.ir.ops import Op, ReduceKind

if TYPE_CHECKING:
    from kernelc.backends.llvm.codegen import _FunctionBuilder

BIG = (1 << 62)
MAX_BUFFERED_SOFTMAX_DIM = 64
VECTOR_SLOTS = 32  # K-best reductions with K up to this keep their slots in one vector (16 or 32 lanes)


K_BEST = (ReduceKind.KMIN, ReduceKind.KMAX, ReduceKind.ARGKMIN, ReduceKind.ARGKMAX)


def buffered(node: Node, dim: int) -> bool:
    kind: ReduceKind = node.arg.kind  # type: ignore[union-attr]
    if kind in (ReduceKind.ARGMIN, ReduceKind.ARGMAX):
        return True
    if kind in K_BEST:
        return not node.src[0].dtype.is_bool
    if kind is ReduceKind.LOGSUMEXP and len(node.src) == 1:
        return True
    # values computed per pair are copied into a buffer of SUM_BLOCK x E (up to 64 components);
    # a parameter of the reduced index is read again from its array, for E up to the unrolled
    # limit (softmax: E accumulators in register-sized chunks; weighted logsumexp: a loop)
    from kernelc.backends.llvm.codegen import MAX_UNROLLED_DIM

    if kind not in (ReduceKind.SOFTMAX, ReduceKind.LOGSUMEXP):
        return False
    value = node.src[1]
    direct = value.op is Op.PARAM and value.deps == frozenset({node.arg.index})  # type: ignore[union-attr]
    return dim <= (MAX_UNROLLED_DIM if direct else MAX_BUFFERED_SOFTMAX_DIM) \
        and value.dtype.is_float and compute_type(value.dtype) == compute_type(node.src[0].dtype)


def _is_nan(b: ir.IRBuilder, v: ir.Value) -> ir.Value:
    return ops.is_nan(b, v) if not isinstance(v.type, ir.IntType) else ir.Constant(I1, 0)


def _fold(b: ir.IRBuilder, slot: ir.Value, keep: ir.Value, block: ir.Value, fold: ir.Value) -> None:
    """slot = slot * keep + block * fold: a running sum and a block's, each rescaled."""
    b.store(b.fadd(b.fmul(b.load(slot), keep), b.fmul(block, fold)), slot)


def _imin(b: ir.IRBuilder, x: ir.Value, y: ir.Value, largest: bool = False) -> ir.Value:
    return b.select(b.icmp_signed(">" if largest else "<", x, y), x, y)


def block_products(fb: "_FunctionBuilder", weights: list[ir.Value], outs: list[ir.Value], values: ir.Value,
                   ty: ir.Type, dim: int, count: ir.Value) -> None:
    """outs[r][e] = sum over the block's columns k < count of weights[r][k] * values[block_start
    + k, e]: a small matrix product, weights (rows x block) times values (block x E, a row-major
    parameter), for softmax numerators and weighted sums. Per column, E components are loaded as
    vectors once for all the rows and each row adds weight * values to its E accumulators (one
    FMA per vector, the weight broadcast): no sum across vector lanes, no loop per component. E
    is covered in chunks whose accumulators fit the vector registers; with few accumulators,
    alternate columns go to separate ones (an FMA's latency)."""
    b = fb.b
    lanes = fb.vector_bits // (32 if ty == ops.F32 else 64)
    registers = 32 if fb.vector_bits >= 512 else 16
    align = 4 if ty == ops.F32 else 8
    rows = len(weights)
    # whole vectors per chunk (LLVM legalizes odd-sized long vectors into scalar shuffles),
    # then the rest of E (fewer than `lanes` components) in one short vector
    width = min(dim // lanes * lanes or dim, lanes * max(1, (registers - 4) // (rows + 1)))
    chunks = [(e0, min(width, dim // lanes * lanes - e0)) for e0 in range(0, dim // lanes * lanes, width)]
    if dim % lanes:
        chunks.append((dim - dim % lanes, dim % lanes))
    for e0, w in chunks:
        pieces = [(off, min(lanes, w - off)) for off in range(0, w, lanes)]  # (offset, width)
        ways = max(1, min(4, (registers - 4) // ((rows + 1) * len(pieces)), -(-8 // (rows * len(pieces)))))
        accs = [[[fb.alloca(ir.VectorType(ty, pw), ir.Constant(ir.VectorType(ty, pw), [0.0] * pw))
                  for _, pw in pieces] for _ in weights] for _ in range(ways)]

        def column(rel: ir.Value, way: int, e0: int = e0, pieces: list = pieces, accs: list = accs) -> None:
            k = b.add(fb.block_start, rel)
            base = b.add(b.mul(k, ir.Constant(I64, dim)), ir.Constant(I64, e0))
            row_weights = [b.load(b.gep(buffer, [rel])) for buffer in weights]
            for p, (off, pw) in enumerate(pieces):
                vec_t = ir.VectorType(ty, pw)
                at = b.gep(values, [b.add(base, ir.Constant(I64, off))])
                loaded = b.load(b.bitcast(at, vec_t.as_pointer()), align=align)
                for weight, row_accs in zip(row_weights, accs[way]):
                    acc = row_accs[p]
                    b.store(fb.math.intrinsic(b, "fmuladd", ops.splat(b, weight, pw), loaded, b.load(acc),
                                              flags=fb.math.contract), acc)

        whole = b.mul(b.sdiv(count, ir.Constant(I64, ways)), ir.Constant(I64, ways))

        def step(rel: ir.Value, ways: int = ways, column=column) -> None:
            for way in range(ways):
                column(b.add(rel, ir.Constant(I64, way)), way)

        fb.loop(ir.Constant(I64, 0), whole, "block_product", step, step=ways)
        if ways > 1:
            fb.loop(whole, count, "block_product_tail", lambda rel, column=column: column(rel, 0))
        for r, out in enumerate(outs):
            for p, (off, pw) in enumerate(pieces):
                total = b.load(accs[0][r][p])
                for other in accs[1:]:
                    total = b.fadd(total, b.load(other[r][p]))
                at = b.gep(out, [ir.Constant(I64, e0 + off)])
                b.store(total, b.bitcast(at, ir.VectorType(ty, pw).as_pointer()), align=align)


class BufferedState:
    def __init__(self, fb: "_FunctionBuilder", node: Node) -> None:
        from kernelc.backends.llvm.codegen import SUM_BLOCK, _extreme_init

        self.node = node
        self.red: Reduction = node.arg  # type: ignore[assignment]
        self.kind = self.red.kind
        self.ty = compute_type(node.src[0].dtype)
        # softmax values and logsumexp weights that are an inner-indexed parameter (v[j] in
        # attention) are read again at the end of the block rather than copied into a buffer:
        # from the structure-of-arrays copy a component at a time, or row-major all components
        # of a column at once
        value = node.src[1] if len(node.src) == 2 else None
        self.weighted = self.kind is ReduceKind.LOGSUMEXP and value is not None
        self.row_major = value is not None and value.op is Op.PARAM and value.arg in fb.row_major_pointers
        self.direct = self.row_major or (value is not None and value.op is Op.PARAM and value.arg in fb.spec.soa)
        self.dim, self.block = fb.dim(node), SUM_BLOCK
        self.scores = ops.entry_alloca(fb.b, fb.entry, self.ty, SUM_BLOCK)
        buffered_values = value is not None and not self.direct
        self.values = ops.entry_alloca(fb.b, fb.entry, self.ty, SUM_BLOCK * self.dim) if buffered_values else None
        self.numerators = ops.entry_alloca(fb.b, fb.entry, self.ty, self.dim) \
            if self.kind is ReduceKind.SOFTMAX else None
        slot = fb.alloca
        if self.kind in (ReduceKind.ARGMIN, ReduceKind.ARGMAX):
            self.best = slot(self.ty, _extreme_init(self.ty, node.src[0].dtype, self.kind is ReduceKind.ARGMAX))
            self.idx = slot(I64, ir.Constant(I64, -1))
            # the block's extreme (NaN if it holds one), found while the scores are stored
            self.worst = _extreme_init(self.ty, node.src[0].dtype, self.kind is ReduceKind.ARGMAX)
            self.top = slot(self.ty, self.worst)
        else:
            # a sum (weighted logsumexp: and a maximum) per component, in arrays that the end of a
            # block walks with a loop over the components (E copies of its code compile slowly,
            # and E scalars spill)
            if self.weighted:
                self.ms = self._array(fb, float("-inf"))
            else:
                self.ms = [slot(self.ty, ops.const(self.ty, float("-inf")))]
            self.m = self.ms[0]
            self.t = self._array(fb, 0.0)
            self.den = slot(self.ty, ops.const(self.ty, 0))
            # the block's largest score, found while the scores are stored (no second pass)
            self.top = slot(self.ty, ops.const(self.ty, float("-inf")))

    def _array(self, fb: "_FunctionBuilder", init: float) -> list[ir.Value]:
        """dim slots of one stack array (a loop over the components indexes it), set to init."""
        b = fb.b
        array = ops.entry_alloca(b, fb.entry, self.ty, self.dim)
        slots = [b.gep(array, [ir.Constant(I64, e)]) for e in range(self.dim)]
        for slot in slots:
            b.store(ops.const(self.ty, init), slot)
        return slots

    def accumulate(self, fb: "_FunctionBuilder", args: list[list[ir.Value]], k: ir.Value) -> None:
        b = fb.b
        rel = b.sub(k, fb.block_start)
        s = args[0][0]
        b.store(s, b.gep(self.scores, [rel]))
        largest = self.kind is not ReduceKind.ARGMIN
        # (weighted logsumexp: the maxima per component skip the scores of weight 0, found at
        # the block's end)
        if not self.weighted:
            b.store(fb.math.extreme(b, b.load(self.top), s, largest), self.top)
        if self.values is not None:
            for e, v in enumerate(fb.broadcast(args[1], self.dim)):
                b.store(v, b.gep(self.values, [b.add(rel, ir.Constant(I64, e * self.block))]))

    def _accumulator(self, fb: "_FunctionBuilder", ty: ir.Type, init: int) -> ir.Value:
        return fb.alloca(ty, ir.Constant(ty, init))

    def _score(self, fb: "_FunctionBuilder", rel: ir.Value) -> ir.Value:
        return fb.b.load(fb.b.gep(self.scores, [rel]))

    def _value(self, fb: "_FunctionBuilder", e: ir.Value, rel: ir.Value) -> ir.Value:
        """Component e (a value) of the softmax value at column block_start + rel: from its
        buffer, or from the parameter (`direct`)."""
        b = fb.b
        if not self.direct:
            return b.load(b.gep(self.values, [b.add(rel, b.mul(e, ir.Constant(I64, self.block)))]))
        return fb.soa_component_at(self.node.src[1], b.add(fb.block_start, rel), e)

    def end_block(self, fb: "_FunctionBuilder", start: ir.Value, end: ir.Value) -> None:
        count = fb.b.sub(end, start)
        if self.kind in (ReduceKind.ARGMIN, ReduceKind.ARGMAX):
            self._end_arg(fb, start, count)
        else:
            self._end_exp(fb, count)

    def _end_arg(self, fb: "_FunctionBuilder", start: ir.Value, count: ir.Value) -> None:
        from kernelc.backends.llvm.codegen import _better

        b, largest = fb.b, self.kind is ReduceKind.ARGMAX
        target = b.load(self.top)  # the block's extreme, or NaN
        b.store(self.worst, self.top)
        has_nan = _is_nan(b, target)
        # Finding the block's position is needed only when the block can win: a NaN (unless the
        # state already holds one), or an extreme strictly better than the state's (ties keep the
        # earlier index). With data in no particular order that is rare after the first blocks.
        best, idx = b.load(self.best), b.load(self.idx)
        empty = b.icmp_signed("<", idx, ir.Constant(I64, 0))
        if isinstance(self.ty, ir.IntType):
            can_win = b.or_(empty, b.icmp_signed(">" if largest else "<", target, best))
        else:
            better = b.fcmp_ordered(">" if largest else "<", target, best)
            can_win = b.or_(empty, b.and_(b.not_(_is_nan(b, best)), b.or_(has_nan, better)))
        with b.if_then(can_win, likely=False):
            first = self._accumulator(fb, I64, BIG)

            def find(rel: ir.Value) -> None:
                v = self._score(fb, rel)
                if isinstance(self.ty, ir.IntType):
                    hit = b.icmp_signed("==", v, target)
                else:  # the first NaN, else the first value equal to the extreme (-0 == +0)
                    hit = b.select(has_nan, _is_nan(b, v), b.fcmp_ordered("==", v, target))
                b.store(_imin(b, b.load(first), b.select(hit, rel, ir.Constant(I64, BIG))), first)

            fb.loop(ir.Constant(I64, 0), count, "argfind", find)
            pos = b.load(first)
            value, index = self._score(fb, pos), b.add(start, pos)
            take = b.or_(empty, _better(b, value, best, largest))
            b.store(b.select(take, value, best), self.best)
            b.store(b.select(take, index, idx), self.idx)

    def _end_exp(self, fb: "_FunctionBuilder", count: ir.Value) -> None:
        if self.weighted:
            self._end_weighted(fb, count)
            return
        block = self._weights(fb, count)
        if self.kind is ReduceKind.SOFTMAX:
            BufferedState._numerators(fb, [(self, block)], count)
        self._merge(fb, block)

    @staticmethod
    def end_softmax_blocks(fb: "_FunctionBuilder", states: list["BufferedState"], count: ir.Value) -> None:
        """The end of a block for the softmax states of a register block's rows whose values are
        read directly: the rows' numerators in one pass, each value loaded once for all rows."""
        blocks = [(st, st._weights(fb, count)) for st in states]
        if states[0].row_major:
            first = states[0]
            block_products(fb, [st.scores for st in states], [st.numerators for st in states],
                           fb.row_major_pointers[first.node.src[1].arg], first.ty, first.dim,  # type: ignore[index]
                           count)
        else:
            BufferedState._numerators(fb, blocks, count)
        for st, block in blocks:
            st._merge(fb, block)

    def _weights(self, fb: "_FunctionBuilder", count: ir.Value) -> tuple[ir.Value, list[ir.Value], ir.Value]:
        """The block's maximum and sums of exp(s - max) (logsumexp), or its weights, written over
        the scores, and their sum (softmax)."""
        from kernelc.backends.llvm.codegen import _scale

        b = fb.b
        block_m = b.fadd(b.load(self.top), ops.const(self.ty, 0.0))  # -0 -> +0, as the monoid's max
        b.store(ops.const(self.ty, float("-inf")), self.top)
        softmax = self.kind is ReduceKind.SOFTMAX
        sums = [] if softmax else [fb.alloca(self.ty, ops.const(self.ty, 0))]  # softmax: `numerators`
        den = fb.alloca(self.ty, ops.const(self.ty, 0))

        def weigh(rel: ir.Value, finite: bool) -> None:
            s = self._score(fb, rel)
            # with a finite block maximum every s - m is in [-inf, 0] and no NaN: a plain exp;
            # otherwise (-inf, inf or NaN) the monoid's rules for the extremes
            w = ops.poly_exp(b, fb.math, b.fsub(s, block_m), nonpositive=True) if finite else _scale(fb, s, block_m)
            total = den if softmax else sums[0]
            b.store(b.fadd(b.load(total), w, flags=("reassoc",)), total)
            if softmax:
                b.store(w, b.gep(self.scores, [rel]))  # the weights replace the scores

        self._by_block_max(fb, block_m, count, "expsum", weigh)
        return block_m, sums, den

    def _by_block_max(self, fb: "_FunctionBuilder", block_m: ir.Value, count: ir.Value, name: str, body) -> None:
        """body(rel, finite) over the block: with finite=True when the block maximum is finite
        (every exponent s - max is then at most 0: a plain exp), else the monoid's rules."""
        b = fb.b
        finite = b.fcmp_ordered("<", fb.math.intrinsic(b, "fabs", block_m), ops.const(self.ty, float("inf")))
        with b.if_else(finite, likely=True) as (then, otherwise):
            with then:
                fb.loop(ir.Constant(I64, 0), count, name, lambda rel: body(rel, True))
            with otherwise:
                fb.loop(ir.Constant(I64, 0), count, name + "_extreme", lambda rel: body(rel, False))

    @staticmethod
    def _numerators(fb: "_FunctionBuilder", blocks: list, count: ir.Value) -> None:
        """Softmax numerators of the block: one loop over it per component (one accumulator per
        state; a single loop with E accumulators spills them for E = 64), the components in a
        loop (compile time); a directly read value is loaded once for all the states. Each
        weight * value is added with `llvm.fmuladd`, as any sum of products (SEMANTICS.md)."""
        b = fb.b
        first = blocks[0][0]

        def component(e: ir.Value) -> None:
            accs = [fb.alloca(first.ty, ops.const(first.ty, 0)) for _ in blocks]

            def numerator(rel: ir.Value) -> None:
                shared = first._value(fb, e, rel) if first.direct else None
                for (st, _), acc in zip(blocks, accs):
                    v = shared if shared is not None else st._value(fb, e, rel)
                    b.store(fb.math.intrinsic(b, "fmuladd", st._score(fb, rel), v, b.load(acc),
                                              flags=("reassoc",) + fb.math.contract), acc)

            fb.loop(ir.Constant(I64, 0), count, "softmax_num", numerator)
            for (st, _), acc in zip(blocks, accs):
                b.store(b.load(acc), b.gep(st.numerators, [e]))

        fb.loop(ir.Constant(I64, 0), ir.Constant(I64, first.dim), "softmax_e", component)

    def _end_weighted(self, fb: "_FunctionBuilder", count: ir.Value) -> None:
        """Weighted logsumexp at the end of a block, in a loop over the components: the block's
        maximum over the scores of nonzero weight (NaN weights count), then the sum of
        exp(s - max) * w (with a finite maximum no term of nonzero weight has a positive
        exponent), a weight-0 term 0 but NaN for a score of +inf or NaN (as kernelc.ir.monoids),
        merged into the running state of that component."""
        from kernelc.backends.llvm.codegen import _scale

        b = fb.b
        zero, inf = ops.const(self.ty, 0), ops.const(self.ty, float("inf"))

        def component(e: ir.Value) -> None:
            top = fb.alloca(self.ty, ops.const(self.ty, float("-inf")))
            zeros = fb.alloca(I1, ir.Constant(I1, 0))

            # the plain maximum and whether any weight is 0 (both vectorize); only a block with a
            # weight of 0 looks again, skipping those scores (a masked maximum does not vectorize)
            def scan(rel: ir.Value) -> None:
                b.store(fb.math.extreme(b, b.load(top), self._score(fb, rel), True), top)
                b.store(b.or_(b.load(zeros), b.fcmp_ordered("==", self._value(fb, e, rel), zero)), zeros)

            def counted(rel: ir.Value) -> None:
                s = b.select(b.fcmp_unordered("!=", self._value(fb, e, rel), zero), self._score(fb, rel),
                             ops.const(self.ty, float("-inf")))
                b.store(fb.math.extreme(b, b.load(top), s, True), top)

            fb.loop(ir.Constant(I64, 0), count, "lse_max", scan)
            with b.if_then(b.load(zeros), likely=False):
                b.store(ops.const(self.ty, float("-inf")), top)
                fb.loop(ir.Constant(I64, 0), count, "lse_max_nonzero", counted)
            block_m = b.fadd(b.load(top), zero)  # -0 -> +0, as the monoid's max
            total = fb.alloca(self.ty, zero)

            def term(rel: ir.Value, finite: bool) -> None:
                s, w = self._score(fb, rel), self._value(fb, e, rel)
                scaled = ops.poly_exp(b, fb.math, b.fsub(s, block_m), nonpositive=True) if finite \
                    else _scale(fb, s, block_m)
                dead = b.select(b.fcmp_ordered("<", s, inf), zero, ops.const(self.ty, float("nan")))
                value = b.select(b.fcmp_ordered("==", w, zero), dead, b.fmul(scaled, w))
                b.store(b.fadd(b.load(total), value, flags=("reassoc",)), total)

            self._by_block_max(fb, block_m, count, "lse_terms", term)
            keep, fold = self._rescale(fb, b.gep(self.m, [e]), block_m)
            _fold(b, b.gep(self.t[0], [e]), keep, b.load(total), fold)

        fb.loop(ir.Constant(I64, 0), ir.Constant(I64, self.dim), "lse_e", component)

    def _merge(self, fb: "_FunctionBuilder", block: tuple[ir.Value, list[ir.Value], ir.Value]) -> None:
        """The block's state into the running one (the monoid's combine); softmax numerators in a
        loop over the components (vectorized for long values)."""
        b = fb.b
        block_m, sums, den = block
        keep, fold = self._rescale(fb, self.m, block_m)
        if self.kind is ReduceKind.SOFTMAX:
            fb.loop(ir.Constant(I64, 0), ir.Constant(I64, self.dim), "softmax_merge",
                    lambda e: _fold(b, b.gep(self.t[0], [e]), keep, b.load(b.gep(self.numerators, [e])), fold))
        for slot, acc in zip(self.t, sums):
            _fold(b, slot, keep, b.load(acc), fold)
        _fold(b, self.den, keep, b.load(den), fold)

    def _rescale(self, fb: "_FunctionBuilder", m_slot: ir.Value, block_m: ir.Value) -> tuple[ir.Value, ir.Value]:
        """The factors that rescale the running sums and the block's to the larger of the two
        maxima, which becomes the running maximum."""
        from kernelc.backends.llvm.codegen import _scale

        b = fb.b
        m = b.load(m_slot)
        new_m = ops.select_max(b, m, block_m, largest=True)
        b.store(new_m, m_slot)
        return _scale(fb, m, new_m), _scale(fb, block_m, new_m)

    def fields(self, fb: "_FunctionBuilder") -> list[list[ir.Value]]:
        """The state in the layout of kernelc.ir.monoids."""
        b = fb.b
        if self.kind in (ReduceKind.ARGMIN, ReduceKind.ARGMAX):
            return [[b.load(self.best)], [b.load(self.idx)]]
        t = [b.load(x) for x in self.t]
        if self.kind is ReduceKind.LOGSUMEXP:
            return [[b.load(m) for m in self.ms], t]
        return [[b.load(self.m)], t, [b.load(self.den)]]

    def finalize(self, fb: "_FunctionBuilder") -> list[ir.Value]:
        b = fb.b
        if self.kind in (ReduceKind.ARGMIN, ReduceKind.ARGMAX):
            return [b.load(self.idx)]
        if self.kind is ReduceKind.LOGSUMEXP:
            return [b.fadd(b.load(m), fb.math.intrinsic(b, "log", b.load(t))) for m, t in zip(self.ms, self.t)]
        den = b.load(self.den)
        zero = ops.const(self.ty, 0)
        empty = b.fcmp_ordered("==", den, zero)
        return [b.select(empty, zero, b.fdiv(b.load(t), den)) for t in self.t]


class BufferedKBest:
    """kmin/kmax/argkmin/argkmax: the pair loop stores the block's scores and keeps their best
    (both vectorize); at the end of the block, only if that best could enter the K slots are the
    block's scores walked again and the entering ones inserted in index order by the online rule.
    With data in no particular order that is ever fewer blocks: about K ln(M / K) insertions in
    all. Up to K = 16 the slots live in one vector (an insertion is a few vector instructions),
    above that in K scalars (codegen._State)."""

    def __init__(self, fb: "_FunctionBuilder", node: Node) -> None:
        from kernelc.backends.llvm.codegen import SUM_BLOCK, _extreme_init, _State

        self.node = node
        self.ty = compute_type(node.src[0].dtype)
        self.largest = node.arg.kind in (ReduceKind.KMAX, ReduceKind.ARGKMAX)  # type: ignore[union-attr]
        self.scores = ops.entry_alloca(fb.b, fb.entry, self.ty, SUM_BLOCK)
        self.best = _State.create(fb, node)
        # the block's best score (NaN if it holds one), found while the scores are stored
        self.worst = _extreme_init(self.ty, node.src[0].dtype, self.largest)
        self.top = fb.alloca(self.ty, self.worst)
        self.k = len(self.best.slots["vals"])
        self.vector: tuple[ir.Value, ir.Value] | None = None
        # the K slots in one vector (values) and its indices (-1: empty): 16 lanes up to K = 16
        # (one register of f32), else 32 (kmin K=32: 1.6x the scalar slots)
        self.slot_lanes = 16 if self.k <= 16 else VECTOR_SLOTS
        if self.k <= VECTOR_SLOTS:
            n = self.slot_lanes
            self.vector = (fb.alloca(ir.VectorType(self.ty, n), ops.splat(fb.b, self.worst, n)),
                           fb.alloca(ir.VectorType(I64, n), ir.Constant(ir.VectorType(I64, n), [-1] * n)))

    def accumulate(self, fb: "_FunctionBuilder", args: list[list[ir.Value]], k: ir.Value) -> None:
        b, s = fb.b, args[0][0]
        b.store(s, b.gep(self.scores, [b.sub(k, fb.block_start)]))
        b.store(fb.math.extreme(b, b.load(self.top), s, self.largest), self.top)  # NaN-propagating

    def _insert(self, fb: "_FunctionBuilder", v: ir.Value, k: ir.Value) -> None:
        """Insert (v, k) into the K slots (k grows, so equal values keep index order). With the
        slots in a vector: the lanes v sorts before form a suffix (the slots are sorted, empty ones
        last); they take the slot before them, and the first of them takes v: compares, three
        shuffles and four selects instead of K scalar compare-and-shift steps. A v that enters no
        slot changes nothing."""
        if self.vector is None:
            self.best._k_best(fb, v, k)
            return
        from kernelc.backends.llvm.codegen import _sorts_before

        b, n = fb.b, self.slot_lanes
        vals, idx = b.load(self.vector[0]), b.load(self.vector[1])
        v_all, k_all = ops.splat(b, v, n), ops.splat(b, k, n)
        empty = b.icmp_signed("<", idx, ir.Constant(idx.type, [0] * n))
        before = b.or_(empty, _sorts_before(b, v_all, vals, self.largest))
        up = ir.Constant(ir.VectorType(I32, n), [0] + list(range(n, 2 * n - 1)))  # lane 0: v; lane p: slot p - 1
        after_first = b.shuffle_vector(ir.Constant(before.type, [0] * n), before, up)
        b.store(b.select(before, b.select(after_first, b.shuffle_vector(v_all, vals, up), v_all), vals), self.vector[0])
        b.store(b.select(before, b.select(after_first, b.shuffle_vector(k_all, idx, up), k_all), idx), self.vector[1])

    def _flush(self, fb: "_FunctionBuilder") -> None:
        """The vector slots back into the state's K slots (which fields and finalize read)."""
        if self.vector is None:
            return
        b = fb.b
        for name, vec in zip(("vals", "idx"), self.vector):
            values = b.load(vec)
            self.best.save(fb, name, [b.extract_element(values, ir.Constant(I32, p)) for p in range(self.k)])

    def end_block(self, fb: "_FunctionBuilder", start: ir.Value, end: ir.Value) -> None:
        """Only a block whose best score (kept by the pair loop) would enter the K slots, or
        holds a NaN, or meets an empty slot, is walked again, 64 scores at a time: the lanes
        whose scores would enter form a bit mask, and the set bits, in index order, are inserted
        one by one (each insertion checks again: the last slot has moved). With data in no
        particular order that is ever fewer blocks: about K ln(M / K) insertions in all."""
        b = fb.b
        target = b.load(self.top)
        b.store(self.worst, self.top)
        last_v, room = self._last(fb)
        if isinstance(self.ty, ir.IntType):
            can_enter = b.icmp_signed(">" if self.largest else "<", target, last_v)
        else:  # unordered: a NaN in the block or in the last slot
            can_enter = b.fcmp_unordered(">" if self.largest else "<", target, last_v)
        count = b.sub(end, start)
        with b.if_then(b.or_(room, can_enter), likely=False):
            fb.loop(ir.Constant(I64, 0), count, "kbest_walk", lambda base: self._insert_lanes(fb, start, count, base),
                    step=self.lanes)

    lanes = 64  # scores per walk step: their entering lanes as one 64-bit mask

    def _insert_lanes(self, fb: "_FunctionBuilder", start: ir.Value, count: ir.Value, base: ir.Value) -> None:
        """Insert, in index order, the scores of lanes base .. base + 63 that enter: one compare
        of 64 scores against the last slot as it is now (4 AVX-512 vectors of f32), then a loop
        over the set bits only (each insertion checks again), so a walk branches per entering
        score rather than per vector."""
        from kernelc.backends.llvm.codegen import _sorts_before

        b, lanes = fb.b, self.lanes
        last_v, room = self._last(fb)
        vec_t = ir.VectorType(self.ty, lanes)
        scores = b.load(b.bitcast(b.gep(self.scores, [base]), vec_t.as_pointer()), align=4)
        wants = b.or_(_sorts_before(b, scores, ops.splat(b, last_v, lanes), self.largest), ops.splat(b, room, lanes))
        mask_t = ir.IntType(lanes)
        left_in_block = b.sub(count, base)  # lanes past the block hold stale scores
        whole = b.icmp_signed(">=", left_in_block, ir.Constant(I64, lanes))
        tail = b.sub(b.shl(ir.Constant(mask_t, 1), b.select(whole, ir.Constant(I64, 0), left_in_block)),
                     ir.Constant(mask_t, 1))
        bits = b.and_(b.bitcast(wants, mask_t), b.select(whole, ir.Constant(mask_t, -1), tail))

        def lane(k: ir.Value) -> None:
            at = b.add(base, k)
            self._insert(fb, b.load(b.gep(self.scores, [at])), b.add(start, at))

        ops.each_set_bit(b, bits, "kbest", lane)

    def _last(self, fb: "_FunctionBuilder") -> tuple[ir.Value, ir.Value]:
        """The value in the last of the K slots, and whether that slot is still empty."""
        b = fb.b
        if self.vector is None:
            last_v, last_i = b.load(self.best.slots["vals"][-1]), b.load(self.best.slots["idx"][-1])
        else:
            at = ir.Constant(I32, self.k - 1)
            last_v, last_i = (b.extract_element(b.load(vec), at) for vec in self.vector)
        return last_v, b.icmp_signed("<", last_i, ir.Constant(I64, 0))

    def fields(self, fb: "_FunctionBuilder") -> list[list[ir.Value]]:
        self._flush(fb)
        return self.best.fields(fb)

    def finalize(self, fb: "_FunctionBuilder") -> list[ir.Value]:
        self._flush(fb)
        return self.best.finalize(fb)
