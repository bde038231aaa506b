"""Evaluating IR nodes on one tile of the (i, j) index space with NumPy.

Every value is an array of shape (ti or 1, tj or 1, dim): axis 0 runs over i, axis 1 over j,
and a value that does not depend on an index has extent 1 there, so NumPy broadcasting is
the index-dependence rule. Floats are held in float64 (see `kernelc.ir.reference`).

Two evaluation shortcuts keep the pair tiles small and the oracle usable at N = M = 1e5, and
both compute the same formula: `sqdist`-shaped nodes (vsum(square(a - b)) of an i-value and a
j-value) are summed one component at a time instead of building a (ti, tj, D) array, and
`dot`-shaped nodes (vsum(a * b)) become one float64 matrix product.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import numpy as np

from kernelc.ir import reference
from kernelc.ir.nodes import Node
from kernelc.ir.ops import COMPONENT_REDUCE_OPS, ELEMENTWISE_OPS, Op
from kernelc.ir.reference import compute_dtype, round_to

Range = tuple[int, int]


@dataclass(frozen=True)
class TileContext:
    """Where a tile lies and what it reads: parameter arrays, symbol values, fixed node values."""

    inputs: Mapping[str, np.ndarray]
    bindings: Mapping[str, int]
    ranges: Mapping[str, Range]  # "i" and "j" -> [start, stop)
    fixed: Mapping[Node, np.ndarray]  # values computed outside this tile (reductions, hoisted)


def _pair_split(a: Node, b: Node) -> tuple[Node, Node] | None:
    """(i-side, j-side) when one operand varies only with i and the other only with j."""
    if a.deps <= {"i"} and b.deps <= {"j"} and a.dim == b.dim and a.deps and b.deps:
        return a, b
    if b.deps <= {"i"} and a.deps <= {"j"} and a.dim == b.dim and a.deps and b.deps:
        return b, a
    return None


def shortcut(node: Node) -> tuple[str, Node, Node] | None:
    """Recognize vsum(square(a - b)) and vsum(a * b) over an i-value and a j-value."""
    if node.op is not Op.VSUM:
        return None
    inner = node.src[0]
    if inner.op is Op.SQUARE and inner.src[0].op is Op.SUB:
        split = _pair_split(*inner.src[0].src)
        if split is not None:
            return "sqdist", split[0], split[1]
    if inner.op is Op.MUL and not inner.dtype.is_int:
        split = _pair_split(*inner.src)
        if split is not None:
            return "dot", split[0], split[1]
    return None


def operands(node: Node) -> tuple[Node, ...]:
    """What evaluating `node` reads: its sources, or the ends of a shortcut."""
    cut = shortcut(node)
    return (cut[1], cut[2]) if cut else node.src


def walk_operands(roots: list[Node], stop: frozenset[Node] = frozenset()) -> list[Node]:
    """Every node evaluation reaches from `roots` through `operands`, operands first, not
    looking past the nodes in `stop`."""
    order: list[Node] = []
    seen: set[Node] = set()
    stack: list[tuple[Node, bool]] = [(r, False) for r in reversed(roots)]
    while stack:
        node, done = stack.pop()
        if node in seen:
            continue
        if done or node in stop:
            seen.add(node)
            order.append(node)
            continue
        stack.append((node, True))
        stack.extend((s, False) for s in reversed(operands(node)) if s not in seen)
    return order


@dataclass(frozen=True)
class TilePlan:
    """The order in which to evaluate `roots` on a tile, stopping at `leaves` (values given in
    `TileContext.fixed`), and after which step each value can be freed."""

    order: tuple[Node, ...]
    frees: tuple[tuple[Node, ...], ...]  # frees[k]: values dead after step k
    roots: tuple[Node, ...]

    @staticmethod
    def build(roots: list[Node], leaves: frozenset[Node] = frozenset()) -> "TilePlan":
        order = walk_operands(roots, stop=leaves)
        last_use: dict[Node, int] = {}
        for k, node in enumerate(order):
            if node not in leaves:
                for s in operands(node):
                    last_use[s] = k
        keep = set(roots)
        frees: list[list[Node]] = [[] for _ in order]
        for node, k in last_use.items():
            if node not in keep:
                frees[k].append(node)
        return TilePlan(tuple(order), tuple(tuple(f) for f in frees), tuple(roots))

    def run(self, ctx: TileContext) -> dict[Node, np.ndarray]:
        values: dict[Node, np.ndarray] = {}
        owned: set[Node] = set()  # values this run allocated, which it may overwrite once dead
        for node, dead in zip(self.order, self.frees):
            if node in ctx.fixed:
                values[node] = ctx.fixed[node]
            else:
                reusable = [values[d] for d in dead if d in owned and d in node.src]
                result = evaluate(node, values, ctx, reusable)
                values[node] = result
                if node.op in _FRESH_OPS and result.base is None and \
                        not any(result is values[s] for s in operands(node)):
                    owned.add(node)
            for d in dead:
                values.pop(d, None)
        return {r: values[r] for r in self.roots}


def _extent(ranges: Mapping[str, Range], index: str, deps: frozenset[str]) -> slice:
    start, stop = ranges[index]
    return slice(start, stop) if index in deps else slice(0, 1)


def read_param(node: Node, ctx: TileContext) -> np.ndarray:
    """A parameter's tile as (ti|1, tj|1, dim), converted to its compute dtype."""
    arr = ctx.inputs[node.arg]  # type: ignore[index]
    index = tuple(sorted(node.deps))
    d = node.dim.evaluate(ctx.bindings)
    if not index:
        tile = arr.reshape(1, 1, d)
    elif index == ("i",):
        s = _extent(ctx.ranges, "i", node.deps)
        tile = arr[s].reshape(-1, 1, d)
    elif index == ("j",):
        s = _extent(ctx.ranges, "j", node.deps)
        tile = arr[s].reshape(1, -1, d)
    else:
        si, sj = _extent(ctx.ranges, "i", node.deps), _extent(ctx.ranges, "j", node.deps)
        tile = arr[si, sj].reshape(si.stop - si.start, sj.stop - sj.start, d)
    return tile.astype(compute_dtype(node.dtype), copy=False)


# Ops whose result is a new array (not a view of an operand or of an input): safe to overwrite.
_FRESH_OPS = ELEMENTWISE_OPS | COMPONENT_REDUCE_OPS | {Op.VSUM}
# Elementwise ops that are plain ufuncs, so they can write into a dead operand's array.
_UFUNCS = {op: fn for op, fn in (reference.UNARY | reference.BINARY).items() if isinstance(fn, np.ufunc)}


def _in_place(node: Node, src: list[np.ndarray], reusable: list[np.ndarray]) -> np.ndarray | None:
    """Apply a ufunc op writing into a dead operand of the result's shape and dtype, if any:
    it saves an allocation and a pass over memory per op."""
    fn = _UFUNCS.get(node.op)
    if fn is None or not reusable:
        return None
    shape = np.broadcast_shapes(*(a.shape for a in src))
    want = compute_dtype(node.dtype)
    for buf in reusable:
        if buf.shape == shape and buf.dtype == want and buf.flags.writeable and buf.base is None:
            with np.errstate(all="ignore"):
                return fn(*src, out=buf)
    return None


def evaluate(node: Node, values: Mapping[Node, np.ndarray], ctx: TileContext,
             reusable: list[np.ndarray] = ()) -> np.ndarray:  # type: ignore[assignment]
    op = node.op
    if op is Op.PARAM:
        return read_param(node, ctx)
    if op is Op.CONST:
        value = np.full((1, 1, 1), node.arg, dtype=compute_dtype(node.dtype))
        return round_to(value, node.dtype) if node.dtype.is_float else value
    if op is Op.INDEX:
        start, stop = ctx.ranges[node.arg]  # type: ignore[index]
        idx = np.arange(start, stop, dtype=np.int64)
        return idx.reshape(-1, 1, 1) if node.arg == "i" else idx.reshape(1, -1, 1)
    if op is Op.DIMSIZE:
        return np.full((1, 1, 1), node.arg.evaluate(ctx.bindings), dtype=np.int64)  # type: ignore[union-attr]
    cut = shortcut(node)
    if cut is not None:
        return _shortcut(cut[0], values[cut[1]], values[cut[2]])
    src = [values[s] for s in node.src]
    done = _in_place(node, src, list(reusable))
    if done is not None:
        return done
    if op in ELEMENTWISE_OPS:
        return reference.evaluate_elementwise(op, src, node.arg)
    if op in COMPONENT_REDUCE_OPS:
        with np.errstate(all="ignore"):
            return reference.COMPONENT[op](src[0])
    if op is Op.ELEMENT:
        k = node.arg.evaluate(ctx.bindings)  # type: ignore[union-attr]
        return src[0][..., k:k + 1]
    if op is Op.SLICE:
        start, stop = (d.evaluate(ctx.bindings) for d in node.arg)  # type: ignore[union-attr]
        return src[0][..., start:stop]
    if op is Op.CONCAT:
        shape = np.broadcast_shapes(*(s.shape[:2] for s in src))
        return np.concatenate([np.broadcast_to(s, shape + s.shape[2:]) for s in src], axis=-1)
    raise NotImplementedError(f"the numpy backend cannot evaluate {op} in a tile")


def _shortcut(kind: str, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a: (ti, 1, D) over i, b: (1, tj, D) over j -> (ti, tj, 1)."""
    a2, b2 = a[:, 0, :], b[0, :, :]
    with np.errstate(all="ignore"):
        if kind == "dot":
            return (a2 @ b2.T)[:, :, None]
        # NumPy is slow at (ti, 1) - (1, tj) broadcasts; filling rows first and then subtracting
        # the column in place is about twice as fast, and computes the same differences.
        a_cols, b_cols = np.ascontiguousarray(a2.T)[:, :, None], np.ascontiguousarray(b2.T)[:, None, :]
        result = np.empty((a2.shape[0], b2.shape[0], 1), dtype=np.result_type(a2, b2))
        acc = result[:, :, 0]
        diff = np.empty_like(acc)
        for c in range(a2.shape[1]):
            out = acc if c == 0 else diff
            np.copyto(out, b_cols[c])
            np.subtract(out, a_cols[c], out=out)
            np.square(out, out=out)
            if c:
                acc += diff
        return result
