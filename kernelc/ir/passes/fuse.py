"""fuse: what is computed together.

Backends fuse by construction what LANGUAGE.md §6 promises: all reductions of a row group over
the same index share one pass over it (and their common subexpressions, which are shared
nodes), logsumexp and softmax run online with rescaling, and epilogues run once per row after
the reductions. `groups` reports that plan (for `kernelc explain`).

The rewrite here is the expansion of a squared distance for long vectors,
    sqdist(a, b) = sum((a - b)^2)  ->  max(sum(a^2) + sum(b^2) - 2 dot(a, b), 0)
with a varying with i and b with j: the two norms are computed once per row and once per
column (hoisted), leaving one multiply-add per component and pair instead of three operations.
It loses relative accuracy when |a - b| is small against |a| and |b| (cancellation), so it is
offered only under a `tolerance=`, as a variant whose measured error decides.
"""

from __future__ import annotations

from kernelc.ir import build
from kernelc.ir.nodes import Kernel, Node, walk
from kernelc.ir.ops import Op
from kernelc.ir.passes.rewrite import rewrite


def pair_sqdist(node: Node) -> tuple[Node, Node] | None:
    """(a, b) when node is sum((a - b)^2) of a value of one index and a value of the other."""
    if node.op is not Op.VSUM or node.src[0].op is not Op.SQUARE or node.src[0].src[0].op is not Op.SUB:
        return None
    a, b = node.src[0].src[0].src
    if not node.dtype.is_float or len(a.deps) != 1 or len(b.deps) != 1 or a.deps == b.deps:
        return None
    return a, b


def expand_sqdist(node: Node) -> Node | None:
    pair = pair_sqdist(node)
    if pair is None:
        return None
    a, b = pair
    norms = build.make(Op.ADD, build.make(Op.VSUM, build.make(Op.SQUARE, a)),
                       build.make(Op.VSUM, build.make(Op.SQUARE, b)))
    cross = build.make(Op.MUL, build.const(2.0, node.dtype), build.make(Op.VSUM, build.make(Op.MUL, a, b)))
    return build.make(Op.MAX, build.make(Op.SUB, norms, cross), build.const(0.0, node.dtype))


def run(kernel: Kernel) -> Kernel:
    return rewrite(kernel, expand_sqdist)


def has_pair_sqdist(kernel: Kernel) -> bool:
    return any(pair_sqdist(n) for n in walk([o.value for o in kernel.outputs]))


def groups(kernel: Kernel) -> list[str]:
    """One line per row group: its outputs and the reductions sharing its pass."""
    lines = []
    by_rows: dict[str, list[int]] = {}
    for k, out in enumerate(kernel.outputs):
        by_rows.setdefault(out.type.index[0] if out.type.index else "-", []).append(k)
    for rows, outs in by_rows.items():
        reds = [n for n in walk([kernel.outputs[k].value for k in outs]) if n.op is Op.REDUCE]
        names = ", ".join(str(r.arg) for r in reds) or "no reductions"
        lines.append(f"rows over {rows}: outputs {outs}; one pass computes {names}")
    return lines
