"""Running a kernel with NumPy in bounded tiles: reductions first (one pass per reduced index,
all reductions over that index together), then the outputs, row blocks spread over threads.

Temporary memory is bounded by the tile size (about `pair_budget` pairs times the widest vector
per live value), whatever N and M are: the N x M matrix never exists unless it is an output.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kernelc.backends.interface import Call, Schedule
from kernelc.backends.numpy.tiles import TileContext, TilePlan, operands, walk_operands
from kernelc.backends.threads import map_jobs, thread_count
from kernelc.ir.monoids import MONOIDS, State
from kernelc.ir.nodes import Kernel, Node, other_index, reductions
from kernelc.ir.ops import Op, ReduceKind
from kernelc.ir.reference import compute_dtype

DEFAULT_PAIR_BUDGET = 1 << 17  # pairs per tile: 1 MiB per live float64 value of dimension 1


@dataclass(frozen=True)
class _ReductionGroup:
    """All reductions over one index, evaluated in a single pass over it."""

    index: str  # the reduced index
    nodes: tuple[Node, ...]
    outer_plan: TilePlan  # values that vary only with the outer index: once per row block
    inner_plan: TilePlan  # the reductions' operands, per tile

    @property
    def outer(self) -> str:
        return other_index(self.index)


def _sum_matmul(node: Node) -> tuple[Node, Node] | None:
    """sum[j](p * v) with p a pair scalar and v a j-value is a matrix product (p @ v)."""
    red = node.arg
    if red.kind is not ReduceKind.SUM or node.src[0].op is not Op.MUL or node.dtype.is_int:  # type: ignore
        return None
    a, b = node.src[0].src
    for p, v in ((a, b), (b, a)):
        if p.dim.is_const and p.dim.const == 1 and p.deps == {"i", "j"} and v.deps == {red.index}:  # type: ignore
            return p, v
    return None


def _reduction_operands(node: Node) -> tuple[Node, ...]:
    mm = _sum_matmul(node)
    return mm if mm else node.src


class NumpyExecutable:
    def __init__(self, kernel: Kernel, schedule: Schedule) -> None:
        self.kernel = kernel
        self.schedule = schedule
        roots = [o.value for o in kernel.outputs]
        self.groups = [self._group(index, [r for r in reductions(roots) if r.arg.index == index])  # type: ignore
                       for index in ("j", "i")]
        self.groups = [g for g in self.groups if g.nodes]
        all_reductions = frozenset(n for g in self.groups for n in g.nodes)
        self.output_plans = [TilePlan.build([o.value], all_reductions) for o in kernel.outputs]
        self.threads = int(schedule.get("threads") or thread_count())

    def _group(self, index: str, nodes: list[Node]) -> _ReductionGroup:
        """Split the reductions' operand graph: what varies only with the outer index is computed
        once per row block (hoisted), the rest per tile."""
        ops = [s for n in nodes for s in _reduction_operands(n)]
        graph = walk_operands(ops)
        hoisted = {n for n in graph if index not in n.deps}
        roots = {s for u in graph if u not in hoisted for s in operands(u) if s in hoisted}
        roots |= {o for o in ops if o in hoisted}
        outer_roots = sorted(roots, key=graph.index)
        return _ReductionGroup(index, tuple(nodes), TilePlan.build(outer_roots),
                               TilePlan.build(ops, frozenset(outer_roots)))

    # --- tiling -----------------------------------------------------------------------------------

    def _tiles(self, call: Call, outer_extent: int, inner_extent: int, width: int) -> tuple[int, int]:
        budget = max(1, int(self.schedule.get("pair_budget") or DEFAULT_PAIR_BUDGET) // max(1, width))
        inner = int(self.schedule.get("tile_inner") or min(max(inner_extent, 1), max(1, budget // 16), 2048))
        outer = int(self.schedule.get("tile_outer") or max(1, budget // max(inner, 1)))
        return max(1, outer), max(1, inner)

    def _width(self, call: Call, nodes: list[Node]) -> int:
        """The widest vector among pair values: it scales the memory of one tile."""
        b = call.sizes.bindings
        return max([n.dim.evaluate(b) for n in walk_operands(nodes) if len(n.deps) == 2] + [1])

    def run(self, call: Call) -> None:
        reduced: dict[Node, np.ndarray] = {}
        for group in self.groups:
            reduced.update(self._reduce(group, call))
        for plan, out, spec in zip(self.output_plans, call.outputs, self.kernel.outputs):
            self._write_output(plan, out, spec.type.index, call, reduced)

    def _extent(self, call: Call, index: str) -> int:
        return call.sizes.n if index == "i" else call.sizes.m

    def _map_blocks(self, fn, blocks: list[tuple[int, int]]) -> list:
        return map_jobs(self.threads, fn, blocks)

    @staticmethod
    def _blocks(extent: int, size: int) -> list[tuple[int, int]]:
        return [(s, min(s + size, extent)) for s in range(0, extent, size)]

    # --- reductions -------------------------------------------------------------------------------

    def _reduce(self, group: _ReductionGroup, call: Call) -> dict[Node, np.ndarray]:
        bindings = call.sizes.bindings
        outer_dep = any(group.outer in n.deps for n in group.nodes)
        outer_extent = self._extent(call, group.outer) if outer_dep else 1
        inner_extent = self._extent(call, group.index)
        evaluated = [s for n in group.nodes for s in _reduction_operands(n)]
        t_outer, t_inner = self._tiles(call, outer_extent, inner_extent, self._width(call, evaluated))
        results = {n: np.empty((outer_extent, n.dim.evaluate(bindings)), compute_dtype(n.dtype)) for n in group.nodes}

        def run_block(block: tuple[int, int]) -> None:
            ranges = {group.outer: block, group.index: (0, inner_extent)}
            ctx = TileContext(call.inputs, bindings, ranges, {})
            outer_values = group.outer_plan.run(ctx)
            states = {n: self._identity(n, block[1] - block[0], bindings) for n in group.nodes}
            for lo, hi in self._blocks(inner_extent, t_inner):
                ranges = {group.outer: block, group.index: (lo, hi)}
                values = group.inner_plan.run(TileContext(call.inputs, bindings, ranges, outer_values))
                idx = np.arange(lo, hi, dtype=np.int64)
                for n in group.nodes:
                    states[n] = self._accumulate(n, states[n], values, idx, (block[1] - block[0], hi - lo), group)
            for n in group.nodes:
                results[n][block[0]:block[1]] = MONOIDS[n.arg.kind].finalize(states[n])  # type: ignore

        self._map_blocks(run_block, self._blocks(outer_extent, t_outer))
        return results

    def _identity(self, node: Node, rows: int, bindings: dict[str, int]) -> State:
        src_dtype = compute_dtype(node.src[0].dtype)
        dim = node.dim.evaluate(bindings)
        return MONOIDS[node.arg.kind].identity(rows, dim, src_dtype)  # type: ignore

    def _accumulate(self, node: Node, state: State, values: dict[Node, np.ndarray], idx: np.ndarray,
                    shape: tuple[int, int], group: _ReductionGroup) -> State:
        monoid = MONOIDS[node.arg.kind]  # type: ignore
        mm = _sum_matmul(node)
        if mm is not None:
            p, v = values[mm[0]], values[mm[1]]
            p2 = p[:, :, 0] if group.index == "j" else p[:, :, 0].T
            v2 = v[0] if group.index == "j" else v[:, 0]
            p2 = np.broadcast_to(p2, shape)
            with np.errstate(all="ignore"):
                return monoid.combine(state, (p2 @ np.broadcast_to(v2, (shape[1], v2.shape[-1])),))
        arrays = []
        for s in node.src:
            a = values[s]
            if group.index == "i":
                a = a.swapaxes(0, 1)
            arrays.append(np.broadcast_to(a, shape + a.shape[2:]))
        return monoid.accumulate(state, tuple(arrays), idx)

    # --- outputs ----------------------------------------------------------------------------------

    def _write_output(self, plan: TilePlan, out: np.ndarray, index: tuple[str, ...], call: Call,
                      reduced: dict[Node, np.ndarray]) -> None:
        bindings = call.sizes.bindings
        root = plan.roots[0]
        dim = out.shape[len(index):]
        n, m = call.sizes.n, call.sizes.m
        rows = n if index and index[0] == "i" else (m if index else 1)
        cols = m if len(index) == 2 else 1
        t_rows, t_cols = self._tiles(call, rows, cols, self._width(call, [root]))
        view = out.reshape(rows, cols, *dim) if index else out.reshape(1, 1, *dim)

        def fixed_for(ranges: dict[str, tuple[int, int]]) -> dict[Node, np.ndarray]:
            fixed = {}
            for node, arr in reduced.items():
                if not node.deps:
                    fixed[node] = arr[0:1][:, None, :]
                    continue
                (dep,) = node.deps  # a reduction's result varies with the other index at most
                lo, hi = ranges[dep]
                fixed[node] = arr[lo:hi][:, None, :] if dep == "i" else arr[lo:hi][None, :, :]
            return fixed

        def run_block(block: tuple[int, int]) -> None:
            for lo, hi in self._blocks(cols, t_cols):
                ranges = {"i": (0, 1), "j": (0, 1)}
                if index:
                    ranges[index[0]] = block
                if len(index) == 2:
                    ranges["j"] = (lo, hi)
                value = plan.run(TileContext(call.inputs, bindings, ranges, fixed_for(ranges)))[root]
                tile_shape = (block[1] - block[0], hi - lo, int(np.prod(dim)) if dim else 1)
                if index == ("j",):
                    value = value.swapaxes(0, 1)
                value = np.broadcast_to(value, tile_shape)
                with np.errstate(over="ignore", invalid="ignore"):  # rounding to the output dtype may overflow
                    view[block[0]:block[1], lo:hi] = value.reshape(tile_shape[:2] + dim).astype(out.dtype)

        self._map_blocks(run_block, self._blocks(rows, t_rows))
