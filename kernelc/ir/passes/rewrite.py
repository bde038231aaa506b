"""Bottom-up graph rewriting, the engine of the IR passes (as tinygrad's graph_rewrite).

A rule looks at one node whose operands are already rewritten and returns a replacement or
None. Replacements are rewritten again until no rule applies, so rules can be small and local.
"""

from __future__ import annotations

from typing import Callable

from kernelc.ir import build
from kernelc.ir.nodes import Kernel, Node, Output, walk
from kernelc.ir.ops import LEAF_OPS
from kernelc.ir.verify import verify

Rule = Callable[[Node], "Node | None"]
_MAX_STEPS = 64  # rewrites of one node; a rule set that cycles is a bug


def rebuild(node: Node, src: tuple[Node, ...]) -> Node:
    return node if src == node.src else build.make(node.op, *src, arg=node.arg)


def rewrite_nodes(roots: list[Node], rule: Rule) -> list[Node]:
    settled: dict[Node, Node] = {}

    def settle(node: Node) -> Node:
        """`node` with its operands settled and then rules applied until none does."""
        if node in settled:
            return settled[node]
        current = node if node.op in LEAF_OPS else rebuild(node, tuple(settle(s) for s in node.src))
        for _ in range(_MAX_STEPS):
            new = rule(current)
            if new is None:
                break
            assert (new.dtype, new.dim) == (current.dtype, current.dim), f"a rule changed the type of {current}"
            current = settle(new)  # only nodes a rule just built recurse: original operands are settled
        else:
            raise AssertionError(f"rewrite rules do not terminate on {node}")
        settled[node] = settled[current] = current
        return current

    for node in walk(roots):  # operands first, so settling an original node never recurses deeply
        settle(node)
    return [settled[r] for r in roots]


def rewrite(kernel: Kernel, rule: Rule) -> Kernel:
    """`kernel` with `rule` applied everywhere; parameters, output types and checks unchanged."""
    values = rewrite_nodes([o.value for o in kernel.outputs], rule)
    outputs = tuple(Output(v, o.type) for v, o in zip(values, kernel.outputs))
    return verify(Kernel(kernel.name, kernel.params, outputs, kernel.symbols, kernel.checks))
