"""split-passes: turn a kernel that needs several passes over an index into a sequence of
single-pass kernels connected by temporary arrays.

A backend that runs one pass per row (reductions over the *other* index only) cannot compute,
say, `x - mean[i](x)` for an output indexed by i: the mean needs all of i first. This pass
moves every such reduction into a first kernel whose outputs are those reductions, and
replaces them in the second kernel by parameters that read the first kernel's outputs.
"""

from __future__ import annotations

from dataclasses import dataclass

from kernelc.ir import build
from kernelc.ir.nodes import Kernel, Node, Output, Param, TensorType, walk
from kernelc.ir.ops import LEAF_OPS, Op
from kernelc.ir.verify import verify


@dataclass(frozen=True)
class Stage:
    """One single-pass kernel; `temporaries`: its parameters fed by the previous stage's outputs."""

    kernel: Kernel
    temporaries: tuple[str, ...] = ()


def substitute(roots: list[Node], mapping: dict[Node, Node]) -> list[Node]:
    """`roots` with every node in `mapping` replaced, the rest rebuilt over the new operands."""
    done: dict[Node, Node] = dict(mapping)
    for node in walk(roots):
        if node in done:
            continue
        if node.op in LEAF_OPS:
            done[node] = node
            continue
        src = tuple(done[s] for s in node.src)
        done[node] = node if src == node.src else build.make(node.op, *src, arg=node.arg)
    return [done[r] for r in roots]


def _needs_early(kernel: Kernel) -> list[Node]:
    """Reductions over the index an output's rows run over (or over the second index of an
    unindexed output): they must be finished before that output's pass."""
    early: list[Node] = []
    for out in kernel.outputs:
        reds = [n for n in walk([out.value]) if n.op is Op.REDUCE]
        rows = out.type.index[0] if out.type.index else None
        if rows is None and reds:
            rows = "j" if reds[0].arg.index == "i" else "i"  # type: ignore[union-attr]
        early += [r for r in reds if r.arg.index == rows and r not in early]  # type: ignore[union-attr]
    return early


def split_passes(kernel: Kernel) -> list[Stage]:
    early = _needs_early(kernel)
    if not early:
        return [Stage(kernel)]
    temps = {r: f"__pass{k}" for k, r in enumerate(early)}
    types = [TensorType(r.dtype, tuple(sorted(r.deps)), None if r.is_scalar else r.dim) for r in early]
    first = Kernel(f"{kernel.name}__pass", kernel.params, tuple(Output(r, t) for r, t in zip(early, types)),
                   kernel.symbols, kernel.checks)
    params = [Param(temps[r], t) for r, t in zip(early, types)]
    mapping = {r: build.param(temps[r], t) for r, t in zip(early, types)}
    roots = substitute([o.value for o in kernel.outputs], mapping)
    second = Kernel(kernel.name, kernel.params + tuple(params),
                    tuple(Output(v, o.type) for v, o in zip(roots, kernel.outputs)), kernel.symbols, kernel.checks)
    assert not _needs_early(second), "the early reductions' arguments hold no reductions"
    return [Stage(verify(first)), Stage(verify(second), tuple(temps.values()))]
