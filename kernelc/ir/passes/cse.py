"""cse: one node object per distinct value, across all outputs of a kernel.

Nodes are hash-consed by structure (ir/nodes.py), so equal subexpressions are already equal
nodes and every backend computes each once per scope; together with simplify's canonical order
of commutative operands (`x * y` and `y * x` become one node) that is common-subexpression
elimination by construction. This pass makes the sharing explicit (identical objects, so that
identity-keyed caches of later stages hit) and reports how many duplicates it merged.
"""

from __future__ import annotations

from kernelc.ir import build
from kernelc.ir.nodes import Kernel, Node, Output, walk
from kernelc.ir.ops import LEAF_OPS
from kernelc.ir.verify import verify


def run(kernel: Kernel) -> Kernel:
    return merge(kernel)[0]


def merge(kernel: Kernel) -> tuple[Kernel, int]:
    """(the kernel with one object per value, how many duplicate objects were merged)."""
    table: dict[Node, Node] = {}
    merged = 0
    seen_ids: set[int] = set()

    def intern(node: Node) -> Node:
        nonlocal merged
        if id(node) in seen_ids:
            return table[node]
        seen_ids.add(id(node))
        if node in table:
            merged += table[node] is not node
            return table[node]
        src = tuple(intern(s) for s in node.src)
        same_objects = all(a is b for a, b in zip(src, node.src))
        table[node] = node if node.op in LEAF_OPS or same_objects else build.make(node.op, *src, arg=node.arg)
        return table[node]

    for root in walk([o.value for o in kernel.outputs]):
        intern(root)
    outputs = tuple(Output(intern(o.value), o.type) for o in kernel.outputs)
    return verify(Kernel(kernel.name, kernel.params, outputs, kernel.symbols, kernel.checks)), merged
