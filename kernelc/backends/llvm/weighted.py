"""Weighted sums of vectors, `sum[j](w * v)` and `mean[j](w * v)`: w a scalar per pair, v an
inner-indexed parameter of E components (a kernel sum with several right-hand sides, the
Nadaraya-Watson numerator, a Gaussian process mean with E outputs).

The pair loop vectorizes across the inner index; with a vector term it kept E vector
accumulators (spilled beyond about 24) and read v a component at a time from its
structure-of-arrays blocks: Gaussian sums at 4096 x 4096 ran at 0.06e9 pairs/s (10 GFLOP/s) with
E = 64 and 0.57e9 with E = 16. Here the pair loop only stores the block's weights w (scalars:
the loop vectorizes as a scalar sum's does), and the end of the block adds weights (rows x
block) times values (block x E, v passed row-major) as a small matrix product
(`blocks.block_products`, shared with softmax numerators; a v that the weights read too, as
mean shift's points in `sum[j](k(x, y) * y)`, is passed twice: in structure-of-arrays blocks for
the pair loop and row-major for the products). The block's sums are f32 (for f32
terms) and join the f64 totals per block, as a sum's blocks do (LANGUAGE.md §6); each product
is added with one fused multiply-add, as the row functions add a sum's products.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from llvmlite import ir

from kernelc.backends.llvm import ops
from kernelc.backends.llvm.blocks import block_products
from kernelc.backends.llvm.ops import F64, I64, compute_type
from kernelc.ir.nodes import Kernel, Node, walk
from kernelc.ir.ops import Op, ReduceKind

if TYPE_CHECKING:
    from kernelc.backends.llvm.codegen import _FunctionBuilder

MIN_DIM = 8  # fewer components: the pair loop's E accumulators stay in registers


def terms(node: Node, inner: str, bindings: dict[str, int]) -> tuple[Node, Node] | None:
    """(w, v) when `node` is sum or mean over `inner` of w * v, w a float scalar per pair and v
    a float parameter indexed by `inner` alone with at least MIN_DIM components, of the same
    computed type (f32 or f64) as the term; else None."""
    if node.op is not Op.REDUCE or node.arg.kind not in (ReduceKind.SUM, ReduceKind.MEAN) \
            or node.arg.index != inner or len(node.src) != 1:  # type: ignore[union-attr]
        return None
    term = node.src[0]
    if term.op is not Op.MUL or not term.dtype.is_float:
        return None
    for w, v in (term.src, term.src[::-1]):
        if v.op is Op.PARAM and v.deps == frozenset({inner}) and v.dim is not None \
                and v.dim.evaluate(bindings) >= MIN_DIM and w.dim is not None and w.dim.evaluate(bindings) == 1 \
                and compute_type(w.dtype) == compute_type(v.dtype) == compute_type(term.dtype):
            return w, v
    return None


def value_params(roots: list[Node], inner: str, bindings: dict[str, int]) -> dict[int, Node]:
    """The terms w * v (by id) of the weighted sums among `roots` whose product nothing else
    reads, each with its v: only there may v be passed row-major."""
    parents: dict[int, list[Node]] = {}
    for node in walk(roots):
        for src in node.src:
            parents.setdefault(id(src), []).append(node)
    found = {}
    for node in walk(roots):
        pair = terms(node, inner, bindings)
        if pair is not None and all(terms(p, inner, bindings) is not None for p in parents[id(node.src[0])]):
            found[id(node.src[0])] = pair[1]
    return found


def applies(kernel: Kernel, bindings: dict[str, int]) -> bool:
    """Whether knob `weighted_sums` changes this kernel's code: some reduction is a weighted sum
    whose term nothing else reads (a v that the pair loop reads too is passed a second time,
    row-major: RowFunction.row_major_copies)."""
    roots = [o.value for o in kernel.outputs]
    return any(value_params(roots, index, bindings) for index in ("i", "j"))


class WeightedSum:
    """The state of one row's weighted sum: the block's weights, its sums, the f64 totals."""

    def __init__(self, fb: "_FunctionBuilder", node: Node, weight: Node, values: Node) -> None:
        from kernelc.backends.llvm.codegen import SUM_BLOCK

        self.node, self.weight, self.values = node, weight, values
        self.kind = node.arg.kind  # type: ignore[union-attr]
        self.ty = compute_type(node.src[0].dtype)
        self.dim = fb.dim(node)
        b = fb.b
        self.weights = ops.entry_alloca(b, fb.entry, self.ty, SUM_BLOCK, align=64)
        self.block_sums = ops.entry_alloca(b, fb.entry, self.ty, self.dim, align=64)
        self.totals = ops.entry_alloca(b, fb.entry, F64, self.dim, align=64)
        fb.loop(ir.Constant(I64, 0), ir.Constant(I64, self.dim), "weighted_init",
                lambda e: b.store(ops.const(F64, 0.0), b.gep(self.totals, [e])))

    def accumulate(self, fb: "_FunctionBuilder", k: ir.Value) -> None:
        """Store the pair's weight (the values are read at the end of the block)."""
        b = fb.b
        b.store(fb.emit(self.weight)[0], b.gep(self.weights, [b.sub(k, fb.block_start)]))

    @staticmethod
    def end_blocks(fb: "_FunctionBuilder", states: list["WeightedSum"], count: ir.Value) -> None:
        """The block's sums of a register block's rows in one matrix product (each column of v
        loaded once for all the rows), added to their totals."""
        b, first = fb.b, states[0]
        block_products(fb, [st.weights for st in states], [st.block_sums for st in states],
                       fb.row_major_pointers[first.values.arg], first.ty, first.dim, count)  # type: ignore[index]
        for st in states:
            def add(e: ir.Value, st: WeightedSum = st) -> None:
                total = b.gep(st.totals, [e])
                block = b.load(b.gep(st.block_sums, [e]))
                b.store(b.fadd(b.load(total), b.fpext(block, F64) if block.type != F64 else block), total)

            fb.loop(ir.Constant(I64, 0), ir.Constant(I64, first.dim), "weighted_add", add)

    def fields(self, fb: "_FunctionBuilder") -> list[list[ir.Value]]:
        """The state in the layout of kernelc.ir.monoids: a sum's totals (f64)."""
        return [[fb.b.load(fb.b.gep(self.totals, [ir.Constant(I64, e)])) for e in range(self.dim)]]

    def finalize(self, fb: "_FunctionBuilder") -> list[ir.Value]:
        b = fb.b
        out_t = compute_type(self.node.dtype)
        totals = self.fields(fb)[0]
        if self.kind is ReduceKind.MEAN:
            count = b.sitofp(fb.inner_extent, F64)
            totals = [b.fdiv(t, count) for t in totals]
        return [b.fptrunc(t, out_t) if out_t != F64 else t for t in totals]
