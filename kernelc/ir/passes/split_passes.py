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


def value_type(node: Node) -> TensorType:
    """The type of an array holding `node`'s values for every index it depends on."""
    return TensorType(node.dtype, tuple(sorted(node.deps)), None if node.is_scalar else node.dim)


def detach(kernel: Kernel, nodes: list[Node], prefix: str) -> tuple[Kernel, tuple[str, ...]]:
    """`kernel` with `nodes` replaced by new parameters (named prefix0, prefix1, ...) that
    receive their values, computed elsewhere."""
    names = tuple(f"{prefix}{k}" for k in range(len(nodes)))
    params = tuple(Param(name, value_type(r)) for name, r in zip(names, nodes))
    mapping = {r: build.param(p.name, p.type) for r, p in zip(nodes, params)}
    roots = substitute([o.value for o in kernel.outputs], mapping)
    rest = Kernel(kernel.name, kernel.params + params, tuple(Output(v, o.type) for v, o in zip(roots, kernel.outputs)),
                  kernel.symbols, kernel.checks)
    return verify(rest), names


def two_stages(kernel: Kernel, nodes: list[Node], prefix: str) -> list[Stage]:
    """[a kernel computing `nodes` as its outputs, `kernel` reading them as parameters named
    prefix0, prefix1, ...], or [kernel] when there is nothing to move."""
    if not nodes:
        return [Stage(kernel)]
    first = Kernel(f"{kernel.name}{prefix}", kernel.params, tuple(Output(r, value_type(r)) for r in nodes),
                   kernel.symbols, kernel.checks)
    second, names = detach(kernel, nodes, prefix)
    return [Stage(verify(first)), Stage(second, names)]


def split_passes(kernel: Kernel) -> list[Stage]:
    stages = two_stages(kernel, _needs_early(kernel), "__pass")
    assert not _needs_early(stages[-1].kernel), "the early reductions' arguments hold no reductions"
    return stages
