"""Typed IR (with every dimension bound) to an LLVM module, built with llvmlite's IR builder.

One function per *row group*: the outputs indexed by i (and by [i, j]) share a function whose
rows run over i and whose reductions run over j; outputs indexed by j get the mirror image;
outputs with no index run as a single row. A function computes, for each of its rows:
values that depend on nothing once (entry), values of the row once (hoisted out of the inner
loop), the reductions in one pass over the inner index (states per the monoids of
`kernelc.ir.monoids`), then the outputs, with a second inner loop for [i, j] outputs.

Signature: void f(i8** pointers, i64 n, i64 m, i64 row_start, i64 row_end), pointers being the
parameters, the outputs, the row-major copies (RowFunction.row_major_copies) and the scratch
arrays, each C-contiguous in its storage dtype.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from llvmlite import ir

from kernelc.backends.llvm import ops, weighted
from kernelc.backends.llvm.blocks import K_BEST, BufferedKBest, BufferedState, buffered
from kernelc.backends.llvm.ops import F32, F64, I1, I8, I64, UnsupportedKernel, compute_type, storage_type
from kernelc.ir import build, signs
from kernelc.ir.dtypes import DType
from kernelc.ir.nodes import Kernel, Node, Reduction, other_index, walk
from kernelc.ir.ops import COMPONENT_REDUCE_OPS, ELEMENTWISE_OPS, Op, ReduceKind

MAX_UNROLLED_DIM = 256
WIDE_DIM = 16  # pair-level component sums of vectors this long are built one component at a time
SUM_CHAINS = 4  # interleaved partial sums of a long component sum (_Chains)
# f32 sums run in f32 within blocks of this many terms (vectorizable, 8-16 lanes), and the
# block sums are added in f64: the error does not grow with M (LANGUAGE.md §6).
SUM_BLOCK = 256
ROW_MAJOR_MIN_DIM = 8  # softmax values this wide are read E components at a time (RowFunction.row_major)
SOA_BLOCK = SUM_BLOCK  # columns per block of structure-of-arrays parameters (RowFunction.soa)
# Each component's row of a block is SOA_BLOCK + SOA_PAD elements long. Rows of exactly 1 KB (256
# f32) put the D components of a column in 4 of L1's 64 sets, so the pair loop's D streams of a
# long dot or sqdist evicted each other (D = 64: 128 lines per 32 columns for 48 ways); one more
# cache line per row spreads them over every set.
SOA_PAD = 16
SOA_STRIDE = SOA_BLOCK + SOA_PAD
_LONG_REDUCTIONS = (ReduceKind.SUM, ReduceKind.MEAN, ReduceKind.MAX, ReduceKind.MIN)
Vec = list[ir.Value]


@dataclass(frozen=True)
class RowFunction:
    name: str
    outer: str | None  # "i", "j" or None (one row)
    outputs: tuple[int, ...]  # indices into kernel.outputs
    # Vector parameters read along the inner loop, passed structure-of-arrays in blocks of
    # SOA_BLOCK columns (`soa_blocks`: shape (ceil(M / SOA_BLOCK), D, SOA_BLOCK), zero-padded), so
    # that the vectorized inner loop reads each component contiguously and a block of columns
    # is one contiguous stretch of memory (D separate arrays were D streams at once: 64 defeat
    # the hardware prefetchers) addressed from one base register.
    soa: tuple[str, ...] = ()
    # Inner-indexed parameters read only as the values of softmax reductions or weighted sums, E
    # components at a time (blocks.block_products): passed as they are, row-major.
    row_major: tuple[str, ...] = ()
    # Such values that the pair loop also reads (mean shift's y in `sum[j](k(x, y) * y)`): passed
    # in structure-of-arrays blocks in their place, and as they are after the outputs.
    row_major_copies: tuple[str, ...] = ()
    # Scratch arrays (in 8-byte elements) for the states of reductions of long vectors, passed
    # after the outputs; each concurrent call of the function gets its own.
    scratch: tuple[int, ...] = ()


@dataclass
class _Scope:
    """Values emitted at one loop level; deeper levels see the shallower ones."""

    values: dict[Node, Vec] = field(default_factory=dict)


@dataclass
class _Row:
    """One row of a register block: its index and the values computed once for it."""

    index: ir.Value
    scope: _Scope = field(default_factory=_Scope)
    pair: _Scope = field(default_factory=_Scope)  # its values at the current column


def _level(node: Node, inner: str | None) -> int:
    """0: computed once per call; 1: once per row; 2: per pair (inside the inner loop)."""
    if inner is not None and inner in node.deps:
        return 2
    if node.deps or build.contains_reduction(node):
        return 1
    return 0


def _on_the_divider(node: Node) -> bool:
    """A square root, or a division other than by a constant power of 2 (a product) or one of
    EXACT_DIVISORS_F32 (a product and a remainder step)."""
    if node.op is Op.SQRT:
        return True
    if node.op is not Op.DIV:
        return False
    divisor = node.src[1]
    if divisor.op is not Op.CONST:
        return True
    c = abs(float(divisor.arg))  # type: ignore[arg-type]
    return not (c in ops.EXACT_DIVISORS_F32 or (0 < c < float("inf") and np.frexp(c)[0] == 0.5))


def _cut(srcs: list[Node], outer: str, inner: str, bindings: dict[str, int]) -> Node | None:
    """The last scalar f32 value per pair (row and column) on the way to the reductions that is
    computed on the divider (`_on_the_divider`): the long-latency work that _pipelined_pass
    moves a block ahead of the rest of the terms. None if there is not exactly one last."""
    found = [n for n in walk(srcs) if inner in n.deps and outer in n.deps and n.dim.evaluate(bindings) == 1
             and compute_type(n.dtype) == F32 and not build.contains_reduction(n) and _on_the_divider(n)]
    contained = {id(m) for n in found for m in walk([n]) if m is not n}
    last = [n for n in found if id(n) not in contained]
    return last[0] if len(last) == 1 else None


def pipeline_applies(kernel: Kernel, bindings: dict[str, int]) -> bool:
    """Whether some reduction's terms have a cut for knob `pipeline` (`_cut`); the row
    functions decide for themselves (states, wide sums, a tolerance) when they are built."""
    for node in walk([o.value for o in kernel.outputs]):
        if node.op is Op.REDUCE and node.arg.kind in (ReduceKind.SUM, ReduceKind.MEAN):  # type: ignore[union-attr]
            inner = node.arg.index  # type: ignore[union-attr]
            if _cut(list(node.src), other_index(inner), inner, bindings) is not None:
                return True
    return False


class _FunctionBuilder:
    def __init__(self, module: ir.Module, math: ops.Math, kernel: Kernel, bindings: dict[str, int],
                 spec: RowFunction, partial: bool = False, rows: int = 1, interleave: int = 0,
                 vector_bits: int = 256, pipeline: bool = False) -> None:
        self.kernel, self.bindings, self.spec, self.math = kernel, bindings, spec, math
        self.rows, self.interleave, self.pipeline = rows, interleave, pipeline
        self.vector_bits = vector_bits  # the widest vectors the pair loop uses (register budgets)
        self.outer = spec.outer
        self.inner = other_index(spec.outer) if spec.outer else _single_reduced_index(kernel, spec)
        pp = I8.as_pointer().as_pointer()
        self.partial: ir.Value | None = None  # the state pointers, when building the partial variant
        if partial:
            fnty = ir.FunctionType(ir.VoidType(), [pp, I64, I64, I64, I64, I64, I64, pp])
            self.fn = ir.Function(module, fnty, name=spec.name + "_partial")
            self.ptrs_arg, self.n, self.m, self.r0, self.r1, self.c0, self.c1, self.partial = self.fn.args
        else:
            fnty = ir.FunctionType(ir.VoidType(), [pp, I64, I64, I64, I64])
            self.fn = ir.Function(module, fnty, name=spec.name)
            self.ptrs_arg, self.n, self.m, self.r0, self.r1 = self.fn.args
        self.fn.attributes.add("nounwind")
        self.entry = self.fn.append_basic_block("entry")
        self.b = ir.IRBuilder(self.entry)
        self.scopes = [_Scope(), _Scope(), _Scope()]
        # per pair, the values that depend on the inner index only: shared by a block's rows
        self.column = _Scope()
        self.row: ir.Value = ir.Constant(I64, 0)
        self.col: ir.Value = ir.Constant(I64, 0)
        self.block_start: ir.Value = ir.Constant(I64, 0)
        self.in_block = False  # in the pair loop of a block that starts at a multiple of SUM_BLOCK
        self.scratch_slot = 0  # long reductions take scratch arrays in order of appearance
        self.long_states: dict[Node, "_LongState"] = {}
        self.pointers: dict[str, ir.Value] = {}
        for k, p in enumerate(kernel.params):
            self.pointers[p.name] = self._pointer(k, p.type.dtype)
        self.out_pointers = [self._pointer(len(kernel.params) + k, o.type.dtype) for k, o in enumerate(kernel.outputs)]
        # where values read E components at a time (softmax numerators, weighted sums) are row-major
        self.row_major_pointers = {name: self.pointers[name] for name in spec.row_major}
        for k, name in enumerate(spec.row_major_copies):
            self.row_major_pointers[name] = self._pointer(len(kernel.params) + len(kernel.outputs) + k,
                                                          kernel.param(name).type.dtype)

    def _pointer(self, k: int, dt: DType) -> ir.Value:
        raw = self.b.load(self.b.gep(self.ptrs_arg, [ir.Constant(I64, k)]))
        return self.b.bitcast(raw, storage_type(dt).as_pointer())

    def dim(self, node: Node) -> int:
        return node.dim.evaluate(self.bindings)

    @property
    def inner_extent(self) -> ir.Value:
        return self.m if self.inner == "j" else self.n

    # --- loops ------------------------------------------------------------------------------------

    def loop(self, start: ir.Value, stop: ir.Value, name: str, body, step: int = 1,
             interleave: int = 0) -> None:
        """for (k = start; k < stop; k += step) body(k), with the builder left after the loop;
        `interleave` (if not 0) tells the loop vectorizer how many vectors to run side by side."""
        ops.loop(self.b, start, stop, name, body, step, interleave)

    def alloca(self, ty: ir.Type, init: ir.Value) -> ir.Value:
        slot = ops.entry_alloca(self.b, self.entry, ty)
        self.b.store(init, slot)
        return slot

    # --- the function -----------------------------------------------------------------------------

    def build(self) -> None:
        outputs = [self.kernel.outputs[k] for k in self.spec.outputs]
        roots = [o.value for o in outputs]
        reds = [n for n in walk(roots) if n.op is Op.REDUCE]
        for r in reds:
            if r.arg.index != self.inner:  # type: ignore[union-attr]
                raise UnsupportedKernel("a reduction over the same index as its output's rows (two passes)")
        self.pre_emit(roots + [s for r in reds for s in r.src], 0)

        def rows_body(indices: list[ir.Value]) -> None:
            rows = [_Row(o) for o in indices]
            if reds:
                self.reduce(reds, rows)
            for row in rows:
                self.enter(row)
                for k, out in zip(self.spec.outputs, outputs):
                    self.store_output(k, out)

        if self.outer is None:
            rows_body([ir.Constant(I64, 0)])
        else:
            self.row_loop(self.r0, self.r1, self.rows if reds and blockable(self.kernel, self.spec, self.bindings)
                          else 1, rows_body)
        self.b.ret_void()

    def row_loop(self, start: ir.Value, stop: ir.Value, block: int, body) -> None:
        """body(rows) over [start, stop) in register blocks of `block` rows (their reductions share
        one pass over the inner index, so each inner-index value is loaded once per block). A last
        block with fewer rows left repeats the last row (each copy computes and stores the same
        values): every row runs the same code, and there is no remainder loop to compile."""
        b = self.b
        last = b.sub(stop, ir.Constant(I64, 1))

        def rows(o: ir.Value) -> list[ir.Value]:
            nexts = [b.add(o, ir.Constant(I64, r)) for r in range(1, block)]
            return [o] + [b.select(b.icmp_signed("<", r, stop), r, last) for r in nexts]

        self.loop(start, stop, "rows" if block > 1 else "row", lambda o: body(rows(o)), step=block)

    def enter(self, row: _Row) -> None:
        """Make `row` the current one: its index and its once-per-row values."""
        self.row = row.index
        self.scopes[1], self.scopes[2] = row.scope, row.pair

    def build_partial(self) -> None:
        """The variant that reduces over columns [c0, c1) only and stores each row's reduction
        states (the fields of `state_fields`) instead of outputs: the runtime splits the inner
        index over threads with it and merges the states with the monoids' combine."""
        reds = partial_reductions(self.kernel, self.spec)
        self.pre_emit([s for r in reds for s in r.src], 0)

        def rows_body(indices: list[ir.Value]) -> None:
            rows = [_Row(o) for o in indices]
            for row, states in zip(rows, self.reduce(reds, rows, self.c0, self.c1)):
                self.enter(row)
                slot = 0
                for st in states:
                    for values in st.fields(self):
                        base = self.b.bitcast(self.b.load(self.b.gep(self.partial, [ir.Constant(I64, slot)])),
                                              values[0].type.as_pointer())
                        row_base = self.b.mul(self.b.sub(row.index, self.r0), ir.Constant(I64, len(values)))
                        for c, v in enumerate(values):
                            self.b.store(v, self.b.gep(base, [self.b.add(row_base, ir.Constant(I64, c))]))
                        slot += 1

        self.row_loop(self.r0, self.r1, self.rows if blockable(self.kernel, self.spec, self.bindings) else 1, rows_body)
        self.b.ret_void()

    def pre_emit(self, roots: list[Node], level: int) -> None:
        """Emit every node of `level` reachable from `roots` at the builder's position."""
        for node in walk(roots):
            if node.op is not Op.REDUCE and _level(node, self.inner) == level and not (
                    level == 1 and build.contains_reduction(node)) and not self.is_long(node):
                self.emit(node)

    # --- reductions -------------------------------------------------------------------------------

    def reduce(self, reds: list[Node], rows: list[_Row], start: ir.Value | None = None,
               stop: ir.Value | None = None) -> list[list]:
        """One pass over [start, stop) of the inner index (all of it by default) for every row of
        the block; each row's finalized values go to its scope, and its states are returned (the
        partial function stores them)."""
        states = []
        for row in rows:
            self.enter(row)
            self.pre_emit([s for r in reds for s in r.src], 1)
            states.append([self._new_state(r) for r in reds])
        start = ir.Constant(I64, 0) if start is None else start
        stop = self.inner_extent if stop is None else stop

        wide = [n for n in walk([s for r in reds for s in r.src]) if self.is_wide_sum(n)]

        def col_body(k: ir.Value) -> None:
            self.col = k
            self.new_column(rows)
            for node in wide:
                self.wide_sum(node, rows)
            for row, row_states in zip(rows, states):
                self.enter(row)
                for st, r in zip(row_states, reds):
                    if isinstance(st, _LongState):
                        st.accumulate(self, r, k)
                    else:
                        self.accumulate(st, r, k)
            self.new_column(rows)

        def block_body(first: ir.Value) -> None:
            end = self.b.add(first, ir.Constant(I64, SUM_BLOCK))
            end = self.b.select(self.b.icmp_signed("<", end, stop), end, stop)
            self.block_start, self.in_block = first, True
            self.loop(first, end, "col", col_body, interleave=self.interleave)
            self.in_block = False
            for k in range(len(reds)):
                group = [row_states[k] for row_states in states]
                if isinstance(group[0], BufferedState) and group[0].direct and group[0].kind is ReduceKind.SOFTMAX:
                    BufferedState.end_softmax_blocks(self, group, self.b.sub(end, first))
                    continue
                if isinstance(group[0], weighted.WeightedSum):  # the rows' products in one pass
                    weighted.WeightedSum.end_blocks(self, group, self.b.sub(end, first))
                    continue
                for row, st in zip(rows, group):
                    self.enter(row)
                    st.end_block(self, first, end)

        cut = self._pipeline_cut(reds, states) if self.pipeline else None
        if cut is not None:
            self._pipelined_pass(reds, rows, states, cut, start, stop)
        else:
            self.loop(start, stop, "block", block_body, step=SUM_BLOCK)
        if self.partial is None:
            for row, row_states in zip(rows, states):
                self.enter(row)
                for st, r in zip(row_states, reds):
                    if not isinstance(st, _LongState):  # long results are read per component (emit_at)
                        self.scopes[1].values[r] = st.finalize(self)
        return states

    def new_column(self, rows: list[_Row]) -> None:
        """Forget the values of the last column (and the rows' pairs with it): the pair loop's
        body computes them anew for each column."""
        self.scopes[2], self.column = _Scope(), _Scope()
        for row in rows:
            row.pair = _Scope()

    def _pipeline_cut(self, reds: list[Node], states: list[list]) -> Node | None:
        """The pair value after which the pair loop is split in two stages (see _pipelined_pass),
        or None where the pass runs as one stage."""
        if self.math.approx or any(not isinstance(st, _State) or st.red.kind not in (ReduceKind.SUM, ReduceKind.MEAN)
                                   for row_states in states for st in row_states):
            return None  # (under a tolerance a division by an invariant is a product)
        srcs = [s for r in reds for s in r.src]
        if self.outer is None or any(self.is_wide_sum(n) for n in walk(srcs)):
            return None
        return _cut(srcs, self.outer, self.inner, self.bindings)

    def _pipelined_pass(self, reds: list[Node], rows: list[_Row], states: list[list], cut: Node,
                        start: ir.Value, stop: ir.Value) -> None:
        """The pass over [start, stop) in two stages skewed by a block: stage A computes `cut`
        for block t's columns into a buffer per row, stage B the rest of the terms from it for
        block t - 1, in one loop (B's slot is read before A writes it), so that the long-latency
        divisions or square roots of one block and the exp of the previous are independent
        work for the out-of-order core."""
        b = self.b
        bufs = [ops.entry_alloca(b, self.entry, F32, SUM_BLOCK, align=64) for _ in rows]

        def stage(first: ir.Value, o: ir.Value, finish: bool) -> None:
            k = b.add(first, o)
            self.col, self.block_start, self.in_block = k, first, True
            self.new_column(rows)
            for row, buf, row_states in zip(rows, bufs, states):
                self.enter(row)
                at = b.gep(buf, [o])
                if finish:
                    row.pair.values[cut] = [b.load(at)]
                    for st, r in zip(row_states, reds):
                        self.accumulate(st, r, k)
                else:
                    b.store(self.emit(cut)[0], at)
            self.in_block = False
            self.new_column(rows)

        def clamp(x: ir.Value) -> ir.Value:
            x = b.select(b.icmp_signed("<", x, ir.Constant(I64, 0)), ir.Constant(I64, 0), x)
            return b.select(b.icmp_signed(">", x, ir.Constant(I64, SUM_BLOCK)), ir.Constant(I64, SUM_BLOCK), x)

        zero = ir.Constant(I64, 0)
        self.loop(zero, clamp(b.sub(stop, start)), "stage_a", lambda o: stage(start, o, False),
                  interleave=self.interleave)

        def block_body(first: ir.Value) -> None:
            prev = b.sub(first, ir.Constant(I64, SUM_BLOCK))
            both = clamp(b.sub(stop, first))

            def fused(o: ir.Value) -> None:
                stage(prev, o, True)
                stage(first, o, False)

            self.loop(zero, both, "stages", fused, interleave=self.interleave)
            self.loop(both, clamp(b.sub(stop, prev)), "stage_b", lambda o: stage(prev, o, True),
                      interleave=self.interleave)
            for row, row_states in zip(rows, states):
                self.enter(row)
                for st in row_states:
                    st.end_block(self, prev, first)

        self.loop(b.add(start, ir.Constant(I64, SUM_BLOCK)), b.add(stop, ir.Constant(I64, SUM_BLOCK)), "block",
                  block_body, step=SUM_BLOCK)

    def accumulate(self, st, r: Node, k: ir.Value) -> None:
        """One term of reduction r into its state; a sum of float products adds each product
        with a fused multiply-add (its order is unspecified already, as a component sum's)."""
        if isinstance(st, weighted.WeightedSum):
            st.accumulate(self, k)
            return
        factors = _factors(r.src[0]) if isinstance(st, _State) and st.red.kind in (ReduceKind.SUM, ReduceKind.MEAN) \
            else None
        if factors is None:
            st.accumulate(self, [self.emit(s) for s in r.src], k)
            return
        dim = self.dim(r.src[0])
        st.accumulate_products(self, *(self.broadcast(self.emit(f), dim) for f in factors))

    def _new_state(self, r: Node):
        pair = weighted.terms(r, self.inner, self.bindings) if not self.is_long(r) else None
        if pair is not None and pair[1].arg in self.row_major_pointers:
            return weighted.WeightedSum(self, r, *pair)
        if self.is_long(r):
            state = _LongState(self, r, self.scratch_slot)
            self.scratch_slot += 1
            self.long_states[r] = state
            return state
        if not buffered(r, self.dim(r)):
            return _State.create(self, r)
        return BufferedKBest(self, r) if r.arg.kind in K_BEST else BufferedState(self, r)  # type: ignore[union-attr]

    # --- outputs ----------------------------------------------------------------------------------

    def store_output(self, k: int, out) -> None:
        dim = out.type.dim.evaluate(self.bindings) if out.type.dim is not None else 1
        if len(out.type.index) == 2:
            self.pre_emit([out.value], 1)

            def col_body(c: ir.Value) -> None:
                self.col = c
                self.scopes[2], self.column = _Scope(), _Scope()
                base = self.b.mul(self.b.add(self.b.mul(self.row, self.inner_extent), c), ir.Constant(I64, dim))
                self._store(k, out, base, dim)
                self.scopes[2], self.column = _Scope(), _Scope()

            self.loop(ir.Constant(I64, 0), self.inner_extent, "ocol", col_body)
            return
        base = self.b.mul(self.row, ir.Constant(I64, dim)) if out.type.index else ir.Constant(I64, 0)
        self._store(k, out, base, dim)

    def _store(self, k: int, out, base: ir.Value, dim: int) -> None:
        if self.is_long(out.value):
            self.pre_emit_for_long(out.value)

            def body(c: ir.Value) -> None:
                ptr = self.b.gep(self.out_pointers[k], [self.b.add(base, c)])
                self.b.store(self.to_storage(self.emit_at(out.value, c), out.type.dtype), ptr)

            self.loop(ir.Constant(I64, 0), ir.Constant(I64, dim), "store_c", body)
            return
        vals = self.broadcast(self.emit(out.value), dim)
        for c, v in enumerate(vals):
            ptr = self.b.gep(self.out_pointers[k], [self.b.add(base, ir.Constant(I64, c))])
            self.b.store(self.to_storage(v, out.type.dtype), ptr)

    def to_storage(self, v: ir.Value, dt: DType) -> ir.Value:
        if dt is DType.F16:
            return self.b.fptrunc(v, ops.F16)
        if dt is DType.BF16:
            return ops.round_bf16(self.b, v)
        if dt is DType.BOOL:
            return self.b.zext(v, I8)
        return v

    # --- values -----------------------------------------------------------------------------------

    def broadcast(self, vals: Vec, dim: int) -> Vec:
        return vals * dim if len(vals) == 1 and dim != 1 else vals

    def emit(self, node: Node) -> Vec:
        level = _level(node, self.inner)
        for scope in self.scopes[:level + 1]:
            if node in scope.values:
                return scope.values[node]
        if node.op is Op.REDUCE:
            raise AssertionError("reductions are finalized before use")
        scope = self.scopes[level]
        if level == 2 and self.outer not in node.deps and not build.contains_reduction(node):
            scope = self.column  # the same for every row of a register block
            if node in scope.values:
                return scope.values[node]
        vals = self._compute(node)
        scope.values[node] = vals
        return vals

    def _compute(self, node: Node) -> Vec:
        op, b = node.op, self.b
        if op is Op.PARAM:
            return self.load_param(node)
        if op is Op.CONST:
            return [self.constant(node)]
        if op is Op.INDEX:
            return [self.row if node.arg == self.outer else self.col]
        if op is Op.DIMSIZE:
            return [ir.Constant(I64, node.arg.evaluate(self.bindings))]  # type: ignore[union-attr]
        if op in COMPONENT_REDUCE_OPS and self.is_long(node.src[0]):
            return [self.long_component_reduce(op, node.src[0])]
        if op is Op.ELEMENT and self.is_long(node.src[0]):
            self.pre_emit_for_long(node.src[0])
            return [self.emit_at(node.src[0], ir.Constant(I64, node.arg.evaluate(self.bindings)))]  # type: ignore
        if op is Op.SLICE and self.is_long(node.src[0]):
            self.pre_emit_for_long(node.src[0])
            start = node.arg[0].evaluate(self.bindings)  # type: ignore[index]
            return [self.emit_at(node.src[0], ir.Constant(I64, start + c)) for c in range(self.dim(node))]
        if self.is_long(node):
            raise AssertionError("long vectors are only read through emit_at")
        if self.is_wide_sum(node):
            self.wide_sum(node, [_Row(self.row, self.scopes[1], self.scopes[2])])
            return self.scopes[2].values[node]
        if op is Op.VSUM and (factors := _factors(node.src[0])):
            dim = self.dim(node.src[0])
            sums = _Chains(b, self.math, dim)
            for x, y in zip(*(self.broadcast(self.emit(f), dim) for f in factors)):
                sums.add_product(x, y)
            return [sums.total()]
        src = [self.emit(s) for s in node.src]
        if op is Op.CAST:
            return [ops.cast(b, self.math, v, node.src[0].dtype, node.arg) for v in src[0]]  # type: ignore[arg-type]
        if op is Op.DIV and self.math.approx and node.dtype.is_float \
                and _level(node.src[1], self.inner) < _level(node, self.inner):
            # under a tolerance, dividing by a value computed outside this loop multiplies by its
            # reciprocal (one division per row instead of one per pair; <= 1 ulp more error)
            src = [src[0], [b.fdiv(ops.const(v.type, 1), v) for v in src[1]]]
            op = Op.MUL
        divisor = node.src[1] if op is Op.DIV else None
        if divisor is not None and divisor.op is Op.CONST and node.dtype.is_float and compute_type(node.dtype) == F32 \
                and abs(float(divisor.arg)) in ops.EXACT_DIVISORS_F32:  # type: ignore[arg-type]
            return [ops.divide_by_constant(b, self.math, x, float(divisor.arg)) for x in src[0]]  # type: ignore
        if op in (Op.EXP, Op.EXP2) and signs.nonpositive(node.src[0]):  # no upper clamp
            return [ops.poly_exp(b, self.math, v, base2=op is Op.EXP2, nonpositive=True) for v in src[0]]
        if op in ELEMENTWISE_OPS:
            width = max(len(s) for s in src)
            lanes = [self.broadcast(s, width) for s in src]
            return [ops.elementwise(b, self.math, op, [lane[c] for lane in lanes]) for c in range(width)]
        if op in COMPONENT_REDUCE_OPS:
            return [self.component_reduce(op, src[0])]
        if op is Op.ELEMENT:
            return [src[0][node.arg.evaluate(self.bindings)]]  # type: ignore[union-attr]
        if op is Op.SLICE:
            start, stop = (d.evaluate(self.bindings) for d in node.arg)  # type: ignore[union-attr]
            return src[0][start:stop]
        if op is Op.CONCAT:
            return [v for s in src for v in s]
        raise UnsupportedKernel(f"the llvm backend cannot compile {op}")

    def constant(self, node: Node) -> ir.Value:
        ty = compute_type(node.dtype)
        value = node.arg
        if node.dtype.is_float:
            value = float(np.asarray(value, dtype=np.float64).astype(node.dtype.numpy).astype(np.float64))
        return ops.const(ty, value)  # type: ignore[arg-type]

    def _param_row(self, p) -> ir.Value:
        index = p.type.index
        pos = {"i": self.row if self.outer == "i" else self.col, "j": self.row if self.outer == "j" else self.col}
        if not index:
            return ir.Constant(I64, 0)
        if len(index) == 1:
            return pos[index[0]]
        return self.b.add(self.b.mul(pos["i"], self.m), pos["j"])

    def load_param_at(self, node: Node, c: ir.Value) -> ir.Value:
        """Component c (an i64 value) of a long vector parameter (always stored row-major)."""
        p = self.kernel.param(node.arg)  # type: ignore[arg-type]
        off = self.b.add(self.b.mul(self._param_row(p), ir.Constant(I64, self.dim(node))), c)
        return self.from_storage(self.b.load(self.b.gep(self.pointers[p.name], [off])), p.type.dtype)

    # --- long vectors: computed one component at a time inside a loop, never materialized -------

    def is_long(self, node: Node) -> bool:
        return self.dim(node) > MAX_UNROLLED_DIM

    def pre_emit_for_long(self, node: Node) -> None:
        """Emit the short values a long vector's components read, before its component loop."""
        stack, seen = [node], set()
        while stack:
            n = stack.pop()
            if n in seen:
                continue
            seen.add(n)
            if n.op is Op.REDUCE and self.is_long(n):
                continue  # read per component from its state
            if self.is_long(n):
                stack.extend(n.src)
            else:
                self.emit(n)

    def emit_at(self, node: Node, c: ir.Value) -> ir.Value:
        """Component c of `node` (a long vector, or a short value broadcast or indexed)."""
        if not self.is_long(node):
            vals = self.emit(node)
            if len(vals) == 1:
                return vals[0]
            raise UnsupportedKernel("a short vector combined with a long one")
        op, b = node.op, self.b
        if op is Op.PARAM:
            return self.load_param_at(node, c)
        if op is Op.REDUCE:
            return self.long_states[node].value_at(self, c)
        if op is Op.SLICE:
            start = node.arg[0].evaluate(self.bindings)  # type: ignore[index]
            return self.emit_at(node.src[0], b.add(c, ir.Constant(I64, start)))
        if op is Op.CONCAT:
            result, offset = None, 0
            for part in node.src:
                d = self.dim(part)
                local = b.sub(c, ir.Constant(I64, offset))
                local = b.select(b.icmp_signed("<", local, ir.Constant(I64, 0)), ir.Constant(I64, 0), local)
                local = b.select(b.icmp_signed(">=", local, ir.Constant(I64, d)), ir.Constant(I64, d - 1), local)
                value = self.emit_at(part, local) if self.is_long(part) else self._short_at(part, local)
                result = value if result is None else b.select(b.icmp_signed("<", c, ir.Constant(I64, offset)),
                                                               result, value)
                offset += d
            return result  # type: ignore[return-value]
        if op is Op.CAST:
            return ops.cast(b, self.math, self.emit_at(node.src[0], c), node.src[0].dtype, node.arg)  # type: ignore
        if op in ELEMENTWISE_OPS:
            return ops.elementwise(b, self.math, op, [self.emit_at(s, c) for s in node.src])
        raise UnsupportedKernel(f"{op} of a vector longer than {MAX_UNROLLED_DIM}")

    def _short_at(self, node: Node, c: ir.Value) -> ir.Value:
        """Component c of a short vector, chosen with selects (for concat with long parts)."""
        vals = self.emit(node)
        out = vals[0]
        for k, v in enumerate(vals[1:], start=1):
            out = self.b.select(self.b.icmp_signed("==", c, ir.Constant(I64, k)), v, out)
        return out

    def long_component_reduce(self, op: Op, src: Node) -> ir.Value:
        """A component reduction (sum, max, argmin, ...) of a long vector: one loop over c."""
        self.pre_emit_for_long(src)
        b, n = self.b, self.dim(src)
        ty = compute_type(src.dtype)
        if op is Op.VLOGSUMEXP:
            m = self.long_component_reduce(Op.VMAX, src)
            total = self.alloca(ty, ops.const(ty, 0))
            self.loop(ir.Constant(I64, 0), ir.Constant(I64, n), "lse_c",
                      lambda c: b.store(b.fadd(b.load(total), _scale(self, self.emit_at(src, c), m),
                                               flags=("reassoc",)), total))
            return b.fadd(m, self.math.intrinsic(b, "log", b.load(total)))
        if op is Op.VSUM:
            acc_t = ty if isinstance(ty, ir.IntType) or ty == F64 else F64
            acc = self.alloca(acc_t, ops.const(acc_t, 0))

            def body(c: ir.Value) -> None:
                v = self.emit_at(src, c)
                if isinstance(acc_t, ir.IntType):
                    b.store(b.add(b.load(acc), v), acc)
                else:
                    b.store(b.fadd(b.load(acc), b.fpext(v, F64) if v.type == F32 else v, flags=("reassoc",)), acc)

            self.loop(ir.Constant(I64, 0), ir.Constant(I64, n), "vsum_c", body)
            total = b.load(acc)
            return b.fptrunc(total, ty) if ty == F32 else total
        largest = op in (Op.VMAX, Op.VARGMAX)
        best = self.alloca(ty, _extreme_init(ty, src.dtype, largest))
        idx = self.alloca(I64, ir.Constant(I64, -1))

        def body(c: ir.Value) -> None:
            v = self.emit_at(src, c)
            if op in (Op.VMAX, Op.VMIN):
                b.store(ops.select_max(b, b.load(best), v, largest), best)
                return
            cur, at = b.load(best), b.load(idx)
            take = b.or_(b.icmp_signed("<", at, ir.Constant(I64, 0)), _better(b, v, cur, largest))
            b.store(b.select(take, v, cur), best)
            b.store(b.select(take, c, at), idx)

        self.loop(ir.Constant(I64, 0), ir.Constant(I64, n), "vext_c", body)
        return b.load(best) if op in (Op.VMAX, Op.VMIN) else b.load(idx)

    def load_param(self, node: Node, components: range | None = None) -> Vec:
        """The parameter's value at the current row and column (only `components`, if given)."""
        p = self.kernel.param(node.arg)  # type: ignore[arg-type]
        dim = self.dim(node)
        row = self._param_row(p)
        if p.name in self.spec.soa:
            offset = self._soa_offset(row, dim)
        else:
            base = self.b.mul(row, ir.Constant(I64, dim))
            offset = lambda c: self.b.add(base, ir.Constant(I64, c))  # noqa: E731
        return [self.from_storage(self.b.load(self.b.gep(self.pointers[p.name], [offset(c)])), p.type.dtype)
                for c in (components if components is not None else range(dim))]

    def soa_component_at(self, node: Node, k: ir.Value, c: ir.Value) -> ir.Value:
        """Component c (a value) at column k (in the current block) of a blocked structure-of-arrays
        parameter."""
        p = self.kernel.param(node.arg)  # type: ignore[arg-type]
        base = self._soa_offset(k, self.dim(node), in_block=True)(0)
        offset = self.b.add(base, self.b.mul(c, ir.Constant(I64, SOA_STRIDE)))
        return self.from_storage(self.b.load(self.b.gep(self.pointers[p.name], [offset])), p.type.dtype)

    def _soa_offset(self, k: ir.Value, dim: int, in_block: bool = False):
        """Component c at column k of a blocked structure-of-arrays parameter (see RowFunction)."""
        b, B, shift = self.b, SOA_BLOCK, ir.Constant(I64, SOA_BLOCK.bit_length() - 1)
        # column k of block k // B starts at (k // B) * dim * SOA_STRIDE + k % B, that is
        # k + (k // B) * (dim * SOA_STRIDE - B)
        skip = ir.Constant(I64, dim * SOA_STRIDE - B)
        if self.in_block or in_block:  # k - block_start < B: the loop vectorizer sees unit stride in k
            base = b.add(b.mul(b.ashr(self.block_start, shift), skip), k)
        else:
            base = b.add(b.mul(b.ashr(k, shift), skip), k)
        return lambda c: b.add(base, ir.Constant(I64, c * SOA_STRIDE))

    # --- wide vectors per pair: one component at a time ------------------------------------------

    def is_wide_sum(self, node: Node) -> bool:
        return node.op is Op.VSUM and _level(node, self.inner) == 2 and self.dim(node.src[0]) >= WIDE_DIM \
            and not build.contains_reduction(node)

    def wide_sum(self, node: Node, rows: list[_Row]) -> None:
        """The component sum `node` (sqdist, dot at D = 64) of every row of a register block,
        into each row's pair scope, computed component-major and the rows in lockstep: component
        c of y is loaded once and used by every row right away, and each value lives for a few
        instructions; computed whole, the D components of y stay live across the block's rows
        and spill (LLVM's scheduler keeps the order it is given)."""
        src, dim = node.src[0], self.dim(node.src[0])
        factors = _factors(src)
        sums = [_Chains(self.b, self.math, dim, max(1, SUM_CHAINS // len(rows))) for _ in rows]
        for c in range(dim):
            for row, chains in zip(rows, sums):
                self.enter(row)
                if factors:
                    chains.add_product(*(self.component(f, c) for f in factors))
                else:
                    chains.add(self.component(src, c))
        for row, chains in zip(rows, sums):
            row.pair.values[node] = [chains.total()]

    def component(self, node: Node, c: int) -> ir.Value:
        """Component c of a vector computed per pair, computed from component c of its operands
        only (see wide_sum)."""
        if _level(node, self.inner) < 2 or build.contains_reduction(node):
            vals = self.emit(node)
            return vals[c] if len(vals) > 1 else vals[0]
        key = (node, c)
        scope = self.scopes[2] if self.outer in node.deps else self.column
        if key in scope.values:
            return scope.values[key][0]  # type: ignore[index]
        op = node.op
        if node.dim is None or self.dim(node) == 1:
            value = self.emit(node)[0]
        elif op is Op.PARAM:
            value = self.load_param(node, range(c, c + 1))[0]
        elif op is Op.CAST:
            value = ops.cast(self.b, self.math, self.component(node.src[0], c),  # type: ignore
                             node.src[0].dtype, node.arg)
        elif op in ELEMENTWISE_OPS and op is not Op.DIV:
            value = ops.elementwise(self.b, self.math, op, [self.component(s, c) for s in node.src])
        elif op is Op.SLICE:
            value = self.component(node.src[0], node.arg[0].evaluate(self.bindings) + c)  # type: ignore[index]
        elif op is Op.CONCAT:
            for part in node.src:
                if c < self.dim(part):
                    value = self.component(part, c)
                    break
                c -= self.dim(part)
        else:
            value = self.emit(node)[c]
        scope.values[key] = [value]  # type: ignore[index]
        return value

    def from_storage(self, raw: ir.Value, dt: DType) -> ir.Value:
        if dt is DType.F16:
            return self.b.fpext(raw, F32)
        if dt is DType.BF16:
            return ops.bf16_to_f32(self.b, raw)
        if dt is DType.BOOL:
            return self.b.icmp_unsigned("!=", raw, ir.Constant(I8, 0))
        return raw

    def component_reduce(self, op: Op, vals: Vec) -> ir.Value:
        b = self.b
        if op is Op.VSUM:
            sums = _Chains(b, self.math, len(vals))
            for v in vals:
                sums.add(v)
            return sums.total()
        if op in (Op.VMAX, Op.VMIN):
            best = vals[0]
            for v in vals[1:]:
                best = ops.select_max(b, best, v, largest=op is Op.VMAX)
            return best
        if op in (Op.VARGMAX, Op.VARGMIN):
            best, idx = vals[0], ir.Constant(I64, 0)
            for c, v in enumerate(vals[1:], start=1):
                take = _better(b, v, best, largest=op is Op.VARGMAX)
                best, idx = b.select(take, v, best), b.select(take, ir.Constant(I64, c), idx)
            return idx
        m = vals[0]
        for v in vals[1:]:
            m = ops.select_max(b, m, v, largest=True)
        total = ops.const(m.type, 0)
        for v in vals:
            total = b.fadd(total, _scale(self, v, m))
        return b.fadd(m, self.math.intrinsic(b, "log", total))


class _Chains:
    """A component sum in `chains` interleaved partial sums, added pairwise at the end (for
    sums of 2 * chains terms or more; `count` if known, else assumed long): a single chain of D
    dependent adds would make each pair wait D add latencies. The rows of a register block are
    independent chains already, so each of them needs fewer (and more would spill)."""

    def __init__(self, b: ir.IRBuilder, math: ops.Math, count: int | None = None, chains: int = SUM_CHAINS) -> None:
        self.b, self.math = b, math
        self.width = chains if count is None or count >= 2 * chains else 1
        self.partial: list[ir.Value] = []
        self.seen = 0

    def _add(self, x: ir.Value, y: ir.Value) -> ir.Value:
        return self.b.add(x, y) if isinstance(x.type, ir.IntType) else self.b.fadd(x, y, flags=self.math.contract)

    def add(self, v: ir.Value) -> None:
        k = self.seen % self.width
        if len(self.partial) <= k:
            self.partial.append(v)
        else:
            self.partial[k] = self._add(self.partial[k], v)
        self.seen += 1

    def add_product(self, x: ir.Value, y: ir.Value) -> None:
        """Add x * y (floats): one fused multiply-add where the host has FMA (`llvm.fmuladd`)."""
        k = self.seen % self.width
        if len(self.partial) <= k:
            self.add(self.b.fmul(x, y, flags=self.math.product))
            return
        self.partial[k] = self.math.intrinsic(self.b, "fmuladd", x, y, self.partial[k], flags=self.math.contract)
        self.seen += 1

    def total(self) -> ir.Value:
        partial = self.partial
        while len(partial) > 1:
            partial = [self._add(partial[k], partial[k + 1]) if k + 1 < len(partial) else partial[k]
                       for k in range(0, len(partial), 2)]
        return partial[0]


def _factors(node: Node) -> tuple[Node, Node] | None:
    """The factors of a float product (a * b, square(a)) whose components are summed (dot, sqdist,
    sum(a * b)): such a sum has no specified order, and its products may be added with one
    rounding each (fused multiply-add) instead of two, as BLAS and the CUDA backend do."""
    if not node.dtype.is_float or node.dim is None:
        return None
    if node.op is Op.MUL:
        return node.src[0], node.src[1]
    return (node.src[0], node.src[0]) if node.op is Op.SQUARE else None


def _better(b: ir.IRBuilder, v: ir.Value, best: ir.Value, largest: bool) -> ir.Value:
    """Whether v replaces best in a first-wins scan: the first NaN wins, then strict improvement."""
    if isinstance(v.type, ir.IntType):
        return b.icmp_signed(">" if largest else "<", v, best)
    strict = b.fcmp_ordered(">" if largest else "<", v, best)
    return b.and_(b.not_(ops.is_nan(b, best)), b.or_(strict, ops.is_nan(b, v)))


def _sorts_before(b: ir.IRBuilder, v: ir.Value, x: ir.Value, largest: bool) -> ir.Value:
    """kmin/kmax order: real values first (strictly better), NaN after every real value (lane by
    lane for vectors)."""
    if isinstance(getattr(v.type, "element", v.type), ir.IntType):
        return b.icmp_signed(">" if largest else "<", v, x)
    strict = b.fcmp_ordered(">" if largest else "<", v, x)
    return b.and_(b.not_(ops.is_nan(b, v)), b.or_(strict, ops.is_nan(b, x)))


def _scale(fb: _FunctionBuilder, s: ir.Value, m: ir.Value) -> ir.Value:
    """exp(s - m) with the rules of monoids.scale_by_max: 0 when m is -inf, 1 when s == m."""
    b = fb.b
    one, zero = ops.const(s.type, 1), ops.const(s.type, 0)
    e = ops.poly_exp(b, fb.math, b.fsub(s, m))
    shifted = b.select(b.fcmp_ordered("==", s, m), one, e)
    return b.select(b.fcmp_ordered("==", m, ops.const(s.type, float("-inf"))), zero, shifted)


class _State:
    """The state of one reduction in allocas (promoted to registers by LLVM)."""

    def __init__(self, node: Node, slots: dict[str, list[ir.Value]]) -> None:
        self.node, self.slots = node, slots
        self.red: Reduction = node.arg  # type: ignore[assignment]

    @staticmethod
    def create(fb: _FunctionBuilder, node: Node) -> "_State":
        red: Reduction = node.arg  # type: ignore[assignment]
        kind, dim = red.kind, fb.dim(node)
        src_t = compute_type(node.src[0].dtype)
        is_int = isinstance(src_t, ir.IntType)
        acc_t = I64 if is_int else F64
        slot = fb.alloca
        if kind in (ReduceKind.SUM, ReduceKind.MEAN):
            slots = {"acc": [slot(acc_t, ops.const(acc_t, 0)) for _ in range(dim)]}
            if src_t == F32:
                slots["partial"] = [slot(F32, ops.const(F32, 0)) for _ in range(dim)]
        elif kind in (ReduceKind.MAX, ReduceKind.MIN):
            slots = {"acc": [slot(src_t, _extreme_init(src_t, node.src[0].dtype, kind is ReduceKind.MAX))
                             for _ in range(dim)]}
        elif kind in (ReduceKind.ARGMAX, ReduceKind.ARGMIN):
            slots = {"best": [slot(src_t, _extreme_init(src_t, node.src[0].dtype, kind is ReduceKind.ARGMAX))],
                     "idx": [slot(I64, ir.Constant(I64, -1))]}
        elif kind in (ReduceKind.LOGSUMEXP, ReduceKind.SOFTMAX):
            ninf = ops.const(src_t, float("-inf"))
            mdim = dim if kind is ReduceKind.LOGSUMEXP else 1
            slots = {"m": [slot(src_t, ninf) for _ in range(mdim)], "t": [slot(src_t, ops.const(src_t, 0))
                                                                          for _ in range(dim)]}
            if kind is ReduceKind.SOFTMAX:
                slots["den"] = [slot(src_t, ops.const(src_t, 0))]
        else:
            largest = kind in (ReduceKind.KMAX, ReduceKind.ARGKMAX)
            init = _extreme_init(src_t, node.src[0].dtype, largest)
            slots = {"vals": [slot(src_t, init) for _ in range(dim)],
                     "idx": [slot(I64, ir.Constant(I64, -1)) for _ in range(dim)]}
        return _State(node, slots)

    def load(self, fb: _FunctionBuilder, name: str) -> Vec:
        return [fb.b.load(s) for s in self.slots[name]]

    def save(self, fb: _FunctionBuilder, name: str, vals: Vec) -> None:
        for s, v in zip(self.slots[name], vals):
            fb.b.store(v, s)

    def accumulate_products(self, fb: _FunctionBuilder, xs: Vec, ys: Vec) -> None:
        """sum/mean of x * y (floats): each product added with `llvm.fmuladd`, one rounding."""
        b, name = fb.b, "partial" if "partial" in self.slots else "acc"
        sums = self.load(fb, name)
        if sums[0].type != xs[0].type:  # f32 terms of an f64 total: the product is rounded first
            self.accumulate(fb, [[b.fmul(x, y, flags=fb.math.product) for x, y in zip(xs, ys)]], ir.Constant(I64, 0))
            return
        flags = ("reassoc",) + fb.math.contract
        self.save(fb, name, [fb.math.intrinsic(b, "fmuladd", x, y, a, flags=flags) for x, y, a in zip(xs, ys, sums)])

    def accumulate(self, fb: _FunctionBuilder, args: list[Vec], k: ir.Value) -> None:
        b, kind = fb.b, self.red.kind
        dim = len(self.slots.get("acc", self.slots.get("t", self.slots.get("vals", [None]))))
        if kind in (ReduceKind.SUM, ReduceKind.MEAN):
            vals = fb.broadcast(args[0], dim)
            if "partial" in self.slots:
                partial = self.load(fb, "partial")
                self.save(fb, "partial", [b.fadd(a, v, flags=("reassoc",) + fb.math.contract)
                                          for a, v in zip(partial, vals)])
                return
            acc = self.load(fb, "acc")
            if isinstance(acc[0].type, ir.IntType):
                new = [b.add(a, b.sext(v, I64) if v.type != I64 else v) for a, v in zip(acc, vals)]
            else:
                new = [b.fadd(a, b.fpext(v, F64) if v.type == F32 else v, flags=("reassoc",))
                       for a, v in zip(acc, vals)]
            self.save(fb, "acc", new)
        elif kind in (ReduceKind.MAX, ReduceKind.MIN):
            vals = fb.broadcast(args[0], dim)
            acc = self.load(fb, "acc")
            self.save(fb, "acc", [fb.math.extreme(b, a, v, kind is ReduceKind.MAX) for a, v in zip(acc, vals)])
        elif kind in (ReduceKind.ARGMAX, ReduceKind.ARGMIN):
            (v,), (best,), (idx,) = args[0], self.load(fb, "best"), self.load(fb, "idx")
            take = b.or_(b.icmp_signed("<", idx, ir.Constant(I64, 0)),
                         _better(b, v, best, largest=kind is ReduceKind.ARGMAX))
            self.save(fb, "best", [b.select(take, v, best)])
            self.save(fb, "idx", [b.select(take, k, idx)])
        elif kind is ReduceKind.LOGSUMEXP:
            self._lse(fb, args)
        elif kind is ReduceKind.SOFTMAX:
            self._softmax(fb, args)
        else:
            self._k_best(fb, args[0][0], k)

    def _lse(self, fb: _FunctionBuilder, args: list[Vec]) -> None:
        b = fb.b
        s = args[0][0]
        ms, ts = self.load(fb, "m"), self.load(fb, "t")
        weights = fb.broadcast(args[1], len(ts)) if len(args) == 2 else [None] * len(ts)
        new_m, new_t = [], []
        for m, t, w in zip(ms, ts, weights):
            if w is None:
                nm = ops.select_max(b, m, s, largest=True)
                new_m.append(nm)
                new_t.append(b.fadd(b.fmul(t, _scale(fb, m, nm)), _scale(fb, s, nm)))
                continue
            zero = b.fcmp_ordered("==", w, ops.const(w.type, 0))
            nm = b.select(zero, m, ops.select_max(b, m, s, largest=True))
            moved = b.fadd(b.fmul(t, _scale(fb, m, nm)), b.fmul(w, _scale(fb, s, nm)))
            dead = b.select(b.fcmp_ordered("<", s, ops.const(s.type, float("inf"))), t,
                            ops.const(s.type, float("nan")))
            new_m.append(nm)
            new_t.append(b.select(zero, b.fadd(t, b.fsub(dead, t)), moved))
        self.save(fb, "m", new_m)
        self.save(fb, "t", new_t)

    def _softmax(self, fb: _FunctionBuilder, args: list[Vec]) -> None:
        b = fb.b
        s = args[0][0]
        (m,), (den,) = self.load(fb, "m"), self.load(fb, "den")
        nm = ops.select_max(b, m, s, largest=True)
        sm, ss = _scale(fb, m, nm), _scale(fb, s, nm)
        num = self.load(fb, "t")
        v = fb.broadcast(args[1], len(num))
        self.save(fb, "t", [b.fadd(b.fmul(a, sm), b.fmul(x, ss)) for a, x in zip(num, v)])
        self.save(fb, "den", [b.fadd(b.fmul(den, sm), ss)])
        self.save(fb, "m", [nm])

    def _k_best(self, fb: _FunctionBuilder, v: ir.Value, k: ir.Value) -> None:
        """Insert (v, k) into the sorted K slots; k grows, so equal values keep index order.
        Most candidates do not beat the last slot: one comparison with it guards the insertion."""
        b = fb.b
        largest = self.red.kind in (ReduceKind.KMAX, ReduceKind.ARGKMAX)
        last_v, last_i = b.load(self.slots["vals"][-1]), b.load(self.slots["idx"][-1])
        enters = b.or_(b.icmp_signed("<", last_i, ir.Constant(I64, 0)), _sorts_before(b, v, last_v, largest))
        with b.if_then(enters, likely=False):
            self._insert(fb, v, k, largest)

    def _insert(self, fb: _FunctionBuilder, v: ir.Value, k: ir.Value, largest: bool) -> None:
        b = fb.b
        vals, idx = self.load(fb, "vals"), self.load(fb, "idx")
        before = [b.or_(b.icmp_signed("<", i, ir.Constant(I64, 0)), _sorts_before(b, v, x, largest))
                  for x, i in zip(vals, idx)]
        new_vals, new_idx = [], []
        for p in range(len(vals)):
            shifted_v = vals[p - 1] if p else v
            shifted_i = idx[p - 1] if p else k
            prev = before[p - 1] if p else ir.Constant(I1, 0)
            new_vals.append(b.select(before[p], b.select(prev, shifted_v, v), vals[p]))
            new_idx.append(b.select(before[p], b.select(prev, shifted_i, k), idx[p]))
        self.save(fb, "vals", new_vals)
        self.save(fb, "idx", new_idx)

    def fields(self, fb: _FunctionBuilder) -> list[Vec]:
        """The state in the layout of kernelc.ir.monoids (MEAN's count is added by the runtime)."""
        names = {ReduceKind.SUM: ["acc"], ReduceKind.MEAN: ["acc"], ReduceKind.MAX: ["acc"],
                 ReduceKind.MIN: ["acc"], ReduceKind.ARGMAX: ["best", "idx"], ReduceKind.ARGMIN: ["best", "idx"],
                 ReduceKind.LOGSUMEXP: ["m", "t"], ReduceKind.SOFTMAX: ["m", "t", "den"]}
        return [self.load(fb, n) for n in names.get(self.red.kind, ["vals", "idx"])]

    def end_block(self, fb: _FunctionBuilder, start: ir.Value, end: ir.Value) -> None:
        """Fold the f32 block sums into the f64 totals."""
        if "partial" not in self.slots:
            return
        b = fb.b
        partial, acc = self.load(fb, "partial"), self.load(fb, "acc")
        self.save(fb, "acc", [b.fadd(a, b.fpext(p, F64)) for a, p in zip(acc, partial)])
        self.save(fb, "partial", [ops.const(F32, 0)] * len(partial))

    def finalize(self, fb: _FunctionBuilder) -> Vec:
        b, kind = fb.b, self.red.kind
        out_t = compute_type(self.node.dtype)
        if kind in (ReduceKind.SUM, ReduceKind.MEAN):
            acc = self.load(fb, "acc")
            if kind is ReduceKind.MEAN:
                count = b.sitofp(fb.inner_extent, F64)
                acc = [b.fdiv(a, count) for a in acc]
            if isinstance(out_t, ir.IntType):
                return acc
            return [b.fptrunc(a, out_t) if out_t != F64 else a for a in acc]
        if kind in (ReduceKind.MAX, ReduceKind.MIN):
            return self.load(fb, "acc")
        if kind in (ReduceKind.ARGMAX, ReduceKind.ARGMIN):
            return self.load(fb, "idx")
        if kind is ReduceKind.LOGSUMEXP:
            ms, ts = self.load(fb, "m"), self.load(fb, "t")
            return [b.fadd(m, fb.math.intrinsic(b, "log", t)) for m, t in zip(ms, ts)]
        if kind is ReduceKind.SOFTMAX:
            (den,), num = self.load(fb, "den"), self.load(fb, "t")
            zero = ops.const(den.type, 0)
            empty = b.fcmp_ordered("==", den, zero)
            return [b.select(empty, zero, b.fdiv(x, den)) for x in num]
        if kind in (ReduceKind.KMIN, ReduceKind.KMAX):
            return self.load(fb, "vals")
        return self.load(fb, "idx")


class _LongState:
    """A reduction over i or j whose state holds more than MAX_UNROLLED_DIM numbers (a long
    vector's sum, mean, max, min, softmax numerator, per-component logsumexp, or K > 256 kept
    values): the state lives in scratch arrays passed by the runtime (8-byte elements, 2 arrays
    per reduction), updated one component at a time."""

    def __init__(self, fb: _FunctionBuilder, node: Node, slot: int) -> None:
        self.node, self.kind = node, node.arg.kind  # type: ignore[union-attr]
        self.dim = fb.dim(node)
        value_t = compute_type(node.src[0].dtype)
        self.value_t = value_t
        self.acc_t = value_t if self.kind not in (ReduceKind.SUM, ReduceKind.MEAN) else (
            I64 if isinstance(value_t, ir.IntType) else F64)
        index = len(fb.kernel.params) + len(fb.kernel.outputs) + len(fb.spec.row_major_copies) + 2 * slot
        raw = fb.b.load(fb.b.gep(fb.ptrs_arg, [ir.Constant(I64, index)]))
        raw2 = fb.b.load(fb.b.gep(fb.ptrs_arg, [ir.Constant(I64, index + 1)]))
        self.base = fb.b.bitcast(raw, self.acc_t.as_pointer())
        second_t = I64 if self.kind in (ReduceKind.KMIN, ReduceKind.KMAX, ReduceKind.ARGKMIN, ReduceKind.ARGKMAX) \
            else value_t
        self.base2 = fb.b.bitcast(raw2, second_t.as_pointer())
        largest = self.kind in (ReduceKind.MAX, ReduceKind.KMAX, ReduceKind.ARGKMAX)
        if self.kind in (ReduceKind.MAX, ReduceKind.MIN, ReduceKind.KMIN, ReduceKind.KMAX, ReduceKind.ARGKMIN,
                         ReduceKind.ARGKMAX):
            init = _extreme_init(value_t, node.src[0].dtype, largest)
        elif self.kind is ReduceKind.LOGSUMEXP:
            init = ops.const(value_t, float("-inf"))
        else:
            init = ops.const(self.acc_t, 0)
        init2 = ir.Constant(I64, -1) if second_t == I64 else ops.const(value_t, 0)

        def reset(c: ir.Value) -> None:
            fb.b.store(init, fb.b.gep(self.base, [c]))
            fb.b.store(init2, fb.b.gep(self.base2, [c]))

        fb.loop(ir.Constant(I64, 0), ir.Constant(I64, self.dim), "lstate_init", reset)
        if self.kind is ReduceKind.SOFTMAX:
            self.m = fb.alloca(value_t, ops.const(value_t, float("-inf")))
            self.den = fb.alloca(value_t, ops.const(value_t, 0))

    def accumulate(self, fb: _FunctionBuilder, node: Node, k: ir.Value) -> None:
        kind = self.kind
        if kind is ReduceKind.SOFTMAX:
            self._softmax(fb, node, k)
        elif kind is ReduceKind.LOGSUMEXP:
            self._weighted_lse(fb, node)
        elif kind in (ReduceKind.KMIN, ReduceKind.KMAX, ReduceKind.ARGKMIN, ReduceKind.ARGKMAX):
            self._k_best(fb, fb.emit(node.src[0])[0], k)
        else:
            self.accumulate_long(fb, node.src[0])

    def _softmax(self, fb: _FunctionBuilder, node: Node, k: ir.Value) -> None:
        b = fb.b
        s = fb.emit(node.src[0])[0]
        fb.pre_emit_for_long(node.src[1])
        m = b.load(self.m)
        nm = ops.select_max(b, m, s, largest=True)
        sm, ss = _scale(fb, m, nm), _scale(fb, s, nm)

        def body(c: ir.Value) -> None:
            ptr = b.gep(self.base, [c])
            b.store(b.fadd(b.fmul(b.load(ptr), sm), b.fmul(fb.emit_at(node.src[1], c), ss)), ptr)

        fb.loop(ir.Constant(I64, 0), ir.Constant(I64, self.dim), "lsoftmax", body)
        b.store(b.fadd(b.fmul(b.load(self.den), sm), ss), self.den)
        b.store(nm, self.m)

    def _weighted_lse(self, fb: _FunctionBuilder, node: Node) -> None:
        """Per component c: the weighted update of _State._lse, m in base, t in base2."""
        b = fb.b
        s = fb.emit(node.src[0])[0]
        fb.pre_emit_for_long(node.src[1])

        def body(c: ir.Value) -> None:
            mp, tp = b.gep(self.base, [c]), b.gep(self.base2, [c])
            m, t, w = b.load(mp), b.load(tp), fb.emit_at(node.src[1], c)
            zero = b.fcmp_ordered("==", w, ops.const(w.type, 0))
            nm = b.select(zero, m, ops.select_max(b, m, s, largest=True))
            moved = b.fadd(b.fmul(t, _scale(fb, m, nm)), b.fmul(w, _scale(fb, s, nm)))
            dead = b.select(b.fcmp_ordered("<", s, ops.const(s.type, float("inf"))), t, ops.const(s.type, float("nan")))
            b.store(nm, mp)
            b.store(b.select(zero, b.fadd(t, b.fsub(dead, t)), moved), tp)

        fb.loop(ir.Constant(I64, 0), ir.Constant(I64, self.dim), "llse", body)

    def _k_best(self, fb: _FunctionBuilder, v: ir.Value, k: ir.Value) -> None:
        """Insertion into K sorted slots, from the last slot down (reads slot p-1 before writing it)."""
        b = fb.b
        largest = self.kind in (ReduceKind.KMAX, ReduceKind.ARGKMAX)

        def before(p: ir.Value) -> ir.Value:
            return b.or_(b.icmp_signed("<", b.load(b.gep(self.base2, [p])), ir.Constant(I64, 0)),
                         _sorts_before(b, v, b.load(b.gep(self.base, [p])), largest))

        def body(q: ir.Value) -> None:
            p = b.sub(ir.Constant(I64, self.dim - 1), q)
            prev = b.sub(p, ir.Constant(I64, 1))
            has_prev = b.icmp_signed(">", p, ir.Constant(I64, 0))
            safe_prev = b.select(has_prev, prev, ir.Constant(I64, 0))
            here, there = before(p), b.and_(has_prev, before(safe_prev))
            val_ptr, idx_ptr = b.gep(self.base, [p]), b.gep(self.base2, [p])
            shifted_v = b.select(there, b.load(b.gep(self.base, [safe_prev])), v)
            shifted_i = b.select(there, b.load(b.gep(self.base2, [safe_prev])), k)
            b.store(b.select(here, shifted_v, b.load(val_ptr)), val_ptr)
            b.store(b.select(here, shifted_i, b.load(idx_ptr)), idx_ptr)

        fb.loop(ir.Constant(I64, 0), ir.Constant(I64, self.dim), "lkbest", body)

    def accumulate_long(self, fb: _FunctionBuilder, arg: Node) -> None:
        b = fb.b
        fb.pre_emit_for_long(arg)

        def body(c: ir.Value) -> None:
            ptr = b.gep(self.base, [c])
            v, acc = fb.emit_at(arg, c), b.load(ptr)
            if self.kind in (ReduceKind.MAX, ReduceKind.MIN):
                b.store(ops.select_max(b, acc, v, self.kind is ReduceKind.MAX), ptr)
            elif isinstance(self.acc_t, ir.IntType):
                b.store(b.add(acc, b.sext(v, I64) if v.type != I64 else v), ptr)
            else:
                b.store(b.fadd(acc, b.fpext(v, F64) if v.type == F32 else v), ptr)

        fb.loop(ir.Constant(I64, 0), ir.Constant(I64, self.dim), "lstate_acc", body)

    def end_block(self, fb: _FunctionBuilder, start: ir.Value, end: ir.Value) -> None:
        pass

    def value_at(self, fb: _FunctionBuilder, c: ir.Value) -> ir.Value:
        b = fb.b
        kind = self.kind
        if kind is ReduceKind.SOFTMAX:
            den = b.load(self.den)
            zero = ops.const(den.type, 0)
            return b.select(b.fcmp_ordered("==", den, zero), zero, b.fdiv(b.load(b.gep(self.base, [c])), den))
        if kind is ReduceKind.LOGSUMEXP:
            t = b.load(b.gep(self.base2, [c]))
            return b.fadd(b.load(b.gep(self.base, [c])), fb.math.intrinsic(b, "log", t))
        if kind in (ReduceKind.ARGKMIN, ReduceKind.ARGKMAX):
            return b.load(b.gep(self.base2, [c]))
        if kind in (ReduceKind.KMIN, ReduceKind.KMAX):
            return b.load(b.gep(self.base, [c]))
        acc = b.load(b.gep(self.base, [c]))
        if self.kind is ReduceKind.MEAN:
            acc = b.fdiv(acc, b.sitofp(fb.inner_extent, F64))
        out_t = compute_type(self.node.dtype)
        return b.fptrunc(acc, out_t) if acc.type == F64 and out_t == F32 else acc


def _extreme_init(ty: ir.Type, dt: DType, lowest: bool) -> ir.Constant:
    if dt.is_bool:
        return ir.Constant(I1, 0 if lowest else 1)
    if isinstance(ty, ir.IntType):
        info = np.iinfo(dt.numpy)
        return ir.Constant(ty, int(info.min if lowest else info.max))
    return ops.const(ty, float("-inf") if lowest else float("inf"))


def _single_reduced_index(kernel: Kernel, spec: RowFunction) -> str | None:
    """For outputs with no index: the index their reductions run over (one pass only)."""
    reds = {n.arg.index for k in spec.outputs for n in walk([kernel.outputs[k].value]) if n.op is Op.REDUCE}
    if len(reds) > 1:
        raise UnsupportedKernel("reductions over both i and j in one unindexed output")
    return reds.pop() if reds else None


def _row_major_values(kernel: Kernel, outputs: list[int], inner: str, bindings: dict[str, int],
                      weighted_sums: bool) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The parameters of `inner` used as the value of a buffered softmax over `inner` with
    E >= ROW_MAJOR_MIN_DIM components or (with `weighted_sums`) of a weighted sum (weighted.py),
    stored as computed (f32, f64): their end of block reads E components of one column at once,
    which the row-major layout keeps together. As (those with no other use, those also read
    elsewhere)."""
    roots = [kernel.outputs[k].value for k in outputs]
    values, elsewhere = set(), {n.arg for n in roots if n.op is Op.PARAM}
    weighted_terms = weighted.value_params(roots, inner, bindings) if weighted_sums else {}
    for node in walk(roots):
        for position, src in enumerate(node.src):
            if src.op is not Op.PARAM:
                continue
            dim = src.dim.evaluate(bindings) if src.dim is not None else 1
            p = kernel.param(src.arg)  # type: ignore[arg-type]
            value = (node.op is Op.REDUCE and node.arg.kind is ReduceKind.SOFTMAX  # type: ignore[union-attr]
                     and node.arg.index == inner and position == 1 and buffered(node, dim)  # type: ignore[union-attr]
                     and dim >= ROW_MAJOR_MIN_DIM) or weighted_terms.get(id(node)) is src
            value = value and p.type.index == (inner,) and p.type.dtype in (DType.F32, DType.F64)
            (values if value else elsewhere).add(src.arg)
    return (tuple(p.name for p in kernel.params if p.name in values - elsewhere),
            tuple(p.name for p in kernel.params if p.name in values & elsewhere))


def row_functions(kernel: Kernel, tag: str = "", bindings: dict[str, int] | None = None,
                  weighted_sums: bool = False) -> list[RowFunction]:
    """The row functions of `kernel`; `tag` makes their symbols unique in the process's JIT;
    `weighted_sums` (knob): weighted sums of vectors take weighted.WeightedSum (their values
    passed row-major)."""
    groups: dict[str | None, list[int]] = {}
    for k, out in enumerate(kernel.outputs):
        outer = out.type.index[0] if out.type.index else None
        groups.setdefault(outer, []).append(k)
    specs = []
    for outer, ks in groups.items():
        inner = other_index(outer) if outer else None
        row_major, shared = _row_major_values(kernel, ks, inner, bindings, weighted_sums) \
            if inner is not None and bindings else ((), ())
        soa = tuple(p.name for p in kernel.params
                    if inner is not None and p.type.index == (inner,) and p.type.dim is not None
                    and p.type.dim.evaluate(bindings or {}) <= MAX_UNROLLED_DIM and p.name not in row_major)
        reds = [n for k in ks for n in walk([kernel.outputs[k].value]) if n.op is Op.REDUCE]
        scratch = tuple(r.dim.evaluate(bindings) for r in reds for _ in range(2)
                        if bindings is not None and r.dim.evaluate(bindings) > MAX_UNROLLED_DIM)
        specs.append(RowFunction(f"kc_rows_{outer or 'none'}{tag}", outer, tuple(ks), soa, scratch=scratch,
                                 row_major=row_major, row_major_copies=tuple(n for n in shared if n in soa)))
    return specs


def check_supported(kernel: Kernel, bindings: dict[str, int]) -> None:
    """Raise UnsupportedKernel for what this code generator cannot do yet (before any codegen)."""
    roots = [o.value for o in kernel.outputs]
    for node in walk(roots):
        long_operand = any(s.dim.evaluate(bindings) > MAX_UNROLLED_DIM for s in node.src)
        if node.op is Op.REDUCE and long_operand and node.arg.kind not in _LONG_REDUCTIONS \
                and not (node.arg.kind in (ReduceKind.SOFTMAX, ReduceKind.LOGSUMEXP)  # type: ignore[union-attr]
                         and node.src[0].dim.evaluate(bindings) <= MAX_UNROLLED_DIM):
            raise UnsupportedKernel(f"{node.arg} of vectors longer than {MAX_UNROLLED_DIM}")
    for spec in row_functions(kernel, bindings=bindings):
        inner = other_index(spec.outer) if spec.outer else _single_reduced_index(kernel, spec)
        for k in spec.outputs:
            for node in walk([kernel.outputs[k].value]):
                if node.op is Op.REDUCE and node.arg.index != inner:  # type: ignore[union-attr]
                    raise AssertionError("split_passes leaves one pass per row function")


def generate(kernel: Kernel, bindings: dict[str, int], tag: str = "", approx: bool = False, rows: int = 1,
             interleave: int = 0, partial: bool = False, vector_bits: int = 0,
             pipeline: bool = False, weighted_sums: bool = False) -> tuple[str, list[RowFunction]]:
    """The LLVM IR text of `kernel` specialized to `bindings`, and its row functions
    (`approx`: approximate f32 exp for a kernel under a tolerance; `rows`: rows per register
    block, where `blockable`; `interleave`: vectors side by side in the pair loop, 0: LLVM's
    choice; `vector_bits`: the vector width the module is compiled for, 0: the host's widest;
    `pipeline`: pair loops with a division or square root in two skewed stages, where they apply;
    `weighted_sums`: sums of a scalar times a vector parameter as weighted.WeightedSum);
    with `partial`, only the partial function `<name>_partial` of the (splittable) single row
    function instead."""
    from kernelc.backends.llvm.jit import vector_widths

    vector_bits = vector_bits or vector_widths()[0]
    check_supported(kernel, bindings)
    module = ir.Module(name=kernel.name)
    math = ops.Math(module, approx)
    specs = row_functions(kernel, tag, bindings, weighted_sums)
    for spec in specs:
        if not partial:
            _FunctionBuilder(module, math, kernel, bindings, spec, rows=rows, interleave=interleave,
                             vector_bits=vector_bits, pipeline=pipeline).build()
        elif splittable(kernel, spec, bindings):
            _FunctionBuilder(module, math, kernel, bindings, spec, partial=True, rows=rows,
                             interleave=interleave, vector_bits=vector_bits, pipeline=pipeline).build_partial()
    math.finish()
    return str(module), specs


def soa_blocks(array: np.ndarray) -> np.ndarray:
    """A parameter (M, D) in the blocked structure-of-arrays layout: (ceil(M / SOA_BLOCK), D,
    SOA_STRIDE), the first SOA_BLOCK of each row the block's columns, zero-padded."""
    m, d = array.shape
    blocks = -(-m // SOA_BLOCK)
    out = np.zeros((blocks, d, SOA_STRIDE), array.dtype)
    full = m // SOA_BLOCK
    out[:full, :, :SOA_BLOCK] = array[:full * SOA_BLOCK].reshape(full, SOA_BLOCK, d).transpose(0, 2, 1)
    if full < blocks:
        out[full, :, :m - full * SOA_BLOCK] = array[full * SOA_BLOCK:].T
    return out


def partial_reductions(kernel: Kernel, spec: RowFunction) -> list[Node]:
    return [n for n in walk([kernel.outputs[k].value for k in spec.outputs]) if n.op is Op.REDUCE]


def splittable(kernel: Kernel, spec: RowFunction, bindings: dict[str, int]) -> bool:
    """Whether the inner index of this row function can be split over threads: one row function
    with rows (outer index) and reductions whose states are numbers (not bool)."""
    reds = partial_reductions(kernel, spec)
    return (len(row_functions(kernel, bindings=bindings)) == 1 and spec.outer is not None and bool(reds)
            and all(not r.src[0].dtype.is_bool and r.dim.evaluate(bindings) <= MAX_UNROLLED_DIM for r in reds))


def blockable(kernel: Kernel, spec: RowFunction, bindings: dict[str, int]) -> bool:
    """Whether several rows of this function can share one pass over the inner index: rows and
    reductions whose states stay in registers (no long vectors in scratch arrays)."""
    reds = partial_reductions(kernel, spec)
    return spec.outer is not None and bool(reds) and all(r.dim.evaluate(bindings) <= MAX_UNROLLED_DIM
                                                         and r.src[0].dim.evaluate(bindings) <= MAX_UNROLLED_DIM
                                                         for r in reds)
