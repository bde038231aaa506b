"""Kernels over Dask arrays: the same kernels on data that does not fit one machine.

Calling a kernel with a Dask array among its arguments builds a Dask graph instead of running:
for every (row block, inner block) pair a task computes the reductions' partial states with the
local default backend on the worker (ir/passes/partial.py: a derived kernel whose outputs carry
the states, so every backend can); the states of a row block are merged along the inner index in
a tree with each reduction's monoid combine (the earlier block on the left, so ties, NaN and
top-K come out as in one pass); one task per row block finalizes them and runs the epilogue.
The results are Dask arrays chunked like the rows. Kernels without reductions map over blocks.

Tasks carry the kernel's *source text* (and name, tolerance, optimize flag, backend): each worker
compiles it once (from kernelc's disk cache when present), never unpickling native code.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from kernelc.backends import runtime
from kernelc.errors import KernelArgumentError, UnsupportedKernelError
from kernelc.ir import build, nodes
from kernelc.ir.dtypes import DType
from kernelc.ir.ops import Op
from kernelc.ir.passes import partial
from kernelc.ir.passes.split_passes import split_passes, substitute
from kernelc.ir.verify import verify


def is_dask_array(value: Any) -> bool:
    return type(value).__module__.startswith("dask.") and hasattr(value, "__dask_graph__") and hasattr(value, "chunks")


def any_dask(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> bool:
    return any(is_dask_array(a) for a in (*args, *kwargs.values()))


@dataclass(frozen=True)
class Spec:
    """What a task needs to rebuild its kernel on a worker: text, never pickled code."""

    source: str
    name: str
    tolerance: float | None
    optimize: bool
    backend: str | None
    outputs: tuple[int, ...]  # the output group this task computes


@dataclass
class _Group:
    kernel: Any  # api.Kernel of the group's outputs
    plan: partial.Plan | None
    partial: Any  # api.Kernel computing the states (None for a map)
    finish: Any  # api.Kernel of the epilogue


OFFSET = "__offset_"  # + index name: where a block starts, for kernels that read `i` or `j`


def _global_indices(kernel: nodes.Kernel) -> nodes.Kernel:
    """`kernel` with `i` and `j` read as block-start parameters plus the block's own index, so
    that a kernel run on a block sees the whole array's indices (masks like `j <= i`)."""
    found = sorted({n.arg for n in nodes.walk([o.value for o in kernel.outputs]) if n.op is Op.INDEX})
    if not found:
        return kernel
    params = tuple(nodes.Param(OFFSET + ix, nodes.TensorType(DType.I64, (), None)) for ix in found)
    mapping = {build.index(ix): build.make(Op.ADD, build.index(ix), build.param(p.name, p.type))
               for ix, p in zip(found, params)}
    roots = substitute([o.value for o in kernel.outputs], mapping)
    outputs = tuple(nodes.Output(v, o.type) for v, o in zip(roots, kernel.outputs))
    return verify(nodes.Kernel(kernel.name, kernel.params + params, outputs, kernel.symbols, kernel.checks))


def _per_row(kernel: nodes.Kernel, outer: str) -> nodes.Kernel:
    """`kernel` (reading nothing of the inner index) with only its parameters indexed by the rows
    or by nothing: a row block's task gets those; they also fix the block's row count."""
    keep = tuple(p for p in kernel.params if p.type.index in ((), (outer,)) and not p.name.startswith(OFFSET)
                 or p.name == OFFSET + outer)
    return verify(nodes.Kernel(kernel.name, keep, kernel.outputs, kernel.symbols, kernel.checks))


@functools.lru_cache(maxsize=64)
def _group(spec: Spec) -> _Group:
    """The kernels of one output group, compiled lazily in this process (memoized per spec)."""
    from kernelc import api

    whole = api.kernel(spec.source, spec.name, tolerance=spec.tolerance, optimize=spec.optimize)
    ir = whole.ir
    sub = _global_indices(nodes.Kernel(ir.name, ir.params, tuple(ir.outputs[k] for k in spec.outputs), ir.symbols,
                                       ir.checks))

    def wrap(k: nodes.Kernel) -> Any:
        return api.Kernel(k, spec.source, spec.tolerance, optimize=spec.optimize)

    outer = sub.outputs[0].type.index[0]
    if not any(n.op is Op.REDUCE for n in nodes.walk([o.value for o in sub.outputs])):
        return _Group(wrap(_per_row(sub, outer)), None, None, None)
    plan = partial.plan(sub)
    return _Group(wrap(sub), plan, wrap(plan.partial), wrap(_per_row(plan.finish, outer)))


def _call(kernel: Any, arrays: dict[str, np.ndarray], dims: dict[str, int], backend: str | None) -> tuple:
    names = {p.name for p in kernel.ir.params}
    out = kernel(**{k: v for k, v in arrays.items() if k in names}, **dims, backend=backend or "auto")
    return out if isinstance(out, tuple) else (out,)


# --- the tasks (module-level functions: what Dask ships to workers) -----------------------------

def partial_states(spec: Spec, arrays: dict[str, np.ndarray], offset: int, count: int,
                   dims: dict[str, int]) -> list[Any]:
    group = _group(spec)
    outs = _call(group.partial, arrays, dims, spec.backend)
    plan = group.plan
    return [partial.block_state(r, [outs[k] for k in parts], offset, count)
            for r, parts in zip(plan.reductions, plan.parts)]


def merged_states(spec: Spec, first: list[Any], second: list[Any]) -> list[Any]:
    plan = _group(spec).plan
    return [partial.combine(r, a, b) for r, a, b in zip(plan.reductions, first, second)]


def finished(spec: Spec, states: list[Any], arrays: dict[str, np.ndarray], dims: dict[str, int]) -> tuple:
    group = _group(spec)
    plan = group.plan
    values = {name: partial.finalize(r, s) for name, r, s in zip(plan.names, plan.reductions, states)}
    return _call(group.finish, arrays | values, dims, spec.backend)


def mapped(spec: Spec, arrays: dict[str, np.ndarray], dims: dict[str, int]) -> tuple:
    return _call(_group(spec).kernel, arrays, dims, spec.backend)


# --- building the graph --------------------------------------------------------------------------

def _validated(kernel: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> tuple[dict[str, Any], runtime.Bound]:
    """Every argument checked as in a local call (dtype, shape, sizes), without computing any
    Dask array: they are checked through zero-memory stand-ins of their shape."""
    values = runtime.match_parameters(kernel.ir, args, kwargs)
    arrays: dict[str, Any] = {}
    standins: dict[str, Any] = {}
    for p in kernel.ir.params:
        raw = values[p.name]
        if is_dask_array(raw):
            if any(np.isnan(c) for chunks in raw.chunks for c in chunks):
                raise KernelArgumentError(p.name, "this Dask array has unknown chunk sizes",
                                          hint="call x.compute_chunk_sizes() first")
            want = runtime.as_array(p, np.empty((0,) * raw.ndim, raw.dtype)).dtype
            raw = raw if raw.dtype == want else raw.astype(want)
            standins[p.name] = np.broadcast_to(np.zeros((), raw.dtype), raw.shape)
        else:
            raw = runtime.as_array(p, raw)
            standins[p.name] = raw
        arrays[p.name] = raw
    symbols = {k: v for k, v in kwargs.items() if k in kernel.ir.symbols and k not in values}
    return arrays, runtime.bind(kernel.ir, (), standins | symbols)


def _chunks_of(arrays: dict[str, Any], kernel: nodes.Kernel, index: str, size: int) -> tuple[int, ...]:
    """The blocks of `index`: those of the first Dask argument indexed by it, else one block."""
    for p in kernel.params:
        if index in p.type.index and is_dask_array(arrays[p.name]):
            return tuple(int(c) for c in arrays[p.name].chunks[p.type.index.index(index)])
    return (size,)


def _blocks(array: Any, index: tuple[str, ...], chunks: dict[str, tuple[int, ...]]) -> Any:
    """`array` as a Dask array chunked by `chunks` along its indexed axes (one chunk along the
    vector axis), as an ndarray of Delayed blocks."""
    import dask.array as da

    arr = array if is_dask_array(array) else da.from_array(array, chunks=-1)
    wanted = tuple(chunks[ix] for ix in index) + tuple((n,) for n in arr.shape[len(index):])
    return arr.rechunk(wanted).to_delayed()


def call(kernel: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any], backend: str | None = None) -> Any:
    """`kernel(*args, **kwargs)` as Dask arrays (one per output, a tuple for several)."""
    import dask
    import dask.array as da

    ir = kernel.ir
    if len(split_passes(ir)) > 1:
        raise UnsupportedKernelError(f"kernel '{ir.name}' needs several passes over an index; on Dask, run its "
                                     "passes as separate kernels")
    arrays, bound = _validated(kernel, args, kwargs)
    dims = dict(bound.sizes.dims)
    sizes = {"i": bound.sizes.n, "j": bound.sizes.m}
    chunks = {ix: _chunks_of(arrays, ir, ix, sizes[ix]) for ix in ("i", "j")}
    blocks = {p.name: _blocks(arrays[p.name], p.type.index, chunks) for p in ir.params if p.type.index}
    scalars = {p.name: arrays[p.name] for p in ir.params if not p.type.index}

    def block(name: str, at: dict[str, int]) -> Any:
        index = ir.param(name).type.index
        grid = blocks[name]
        return grid[tuple(at[ix] for ix in index) + (0,) * (grid.ndim - len(index))]

    groups: dict[str | None, list[int]] = {}
    for k, out in enumerate(ir.outputs):
        groups.setdefault(out.type.index[0] if out.type.index else None, []).append(k)
    results: list[Any] = [None] * len(ir.outputs)
    for outer, ks in groups.items():
        if outer is None or any(len(ir.outputs[k].type.index) > 1 for k in ks):
            raise UnsupportedKernelError("on Dask, every output is indexed by one index (i or j) alone")
        spec = Spec(kernel.source, ir.name, kernel.tolerance, kernel.optimize, backend, tuple(ks))
        reds = [n for n in nodes.walk([ir.outputs[k].value for k in ks]) if n.op is Op.REDUCE]
        inner = reds[0].arg.index if reds else ("j" if outer == "i" else "i")
        per_block = []
        starts = {ix: np.concatenate([[0], np.cumsum(chunks[ix])]).astype(np.int64) for ix in ("i", "j")}
        for b in range(len(chunks[outer])):
            own = {p.name: block(p.name, {outer: b}) for p in ir.params if p.type.index == (outer,)}
            own[OFFSET + outer] = starts[outer][b]
            if not reds:
                per_block.append(dask.delayed(mapped, pure=True)(spec, own | scalars, dims))
                continue
            states, offset = [], 0
            for c, count in enumerate(chunks[inner]):
                inputs = {p.name: block(p.name, {outer: b, inner: c}) for p in ir.params if p.type.index} | scalars
                inputs |= {OFFSET + outer: starts[outer][b], OFFSET + inner: starts[inner][c]}
                states.append(dask.delayed(partial_states, pure=True)(spec, inputs, offset, count, dims))
                offset += count
            while len(states) > 1:  # a tree of merges, each of two neighbours in order
                states = [dask.delayed(merged_states, pure=True)(spec, states[q], states[q + 1])
                          if q + 1 < len(states) else states[q] for q in range(0, len(states), 2)]
            per_block.append(dask.delayed(finished, pure=True)(spec, states[0], own | scalars, dims))
        for n, k in enumerate(ks):
            out = ir.outputs[k]
            tail = () if out.type.dim is None else (out.type.dim.evaluate(dims),)
            parts = [da.from_delayed(d[n], (rows,) + tail, dtype=out.type.dtype.numpy)
                     for d, rows in zip(per_block, chunks[outer])]
            results[k] = da.concatenate(parts, axis=0) if len(parts) > 1 else parts[0]
    return results[0] if len(results) == 1 else tuple(results)
