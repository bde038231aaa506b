"""hoist: compute every value as rarely as its indices allow.

Values of parameters only are computed once per call and values of the row index once per row,
outside the inner loop: backends place each node at the level its `deps` give (see the LLVM
codegen's `_level`), so that needs no rewriting. What a row loop cannot hoist is a value of the
*inner* index alone (`y / ell`, `log(b)`, `exp(-w)` in a loop over i rows and j pairs): it is
the same for every row but computed once per pair. This pass moves the largest such
subexpressions into a first stage, a map over the inner index that stores them in temporary
arrays (once per inner index per call), and makes the main stage read them.

Values are stored in their own dtype, so a backend that computes that dtype exactly in it (f32
in f32, f64 in f64, integers) gets bit-identical results; f16/bf16 values, computed in f32,
are not hoisted.
"""

from __future__ import annotations

import functools

from kernelc.ir.build import contains_reduction
from kernelc.ir.nodes import Index, Kernel, Node, Output, other_index, walk
from kernelc.ir.ops import LEAF_OPS, Op
from kernelc.ir.passes.split_passes import Stage, two_stages

_FREE = frozenset({Op.ELEMENT, Op.SLICE, Op.CONCAT})  # moving data, not computing


@functools.lru_cache(maxsize=512)
def candidates(kernel: Kernel) -> tuple[Node, ...]:
    """The maximal inner-index-only subexpressions that some per-pair value uses (memoized:
    backends ask at every call whether hoisting pays)."""
    groups: dict[Index | None, list[Output]] = {}
    for out in kernel.outputs:
        groups.setdefault(out.type.index[0] if out.type.index else None, []).append(out)
    found: list[Node] = []
    for rows, outs in groups.items():
        if rows is None:
            continue  # a single row: nothing is computed twice
        inner = other_index(rows)
        for node in walk([o.value for o in outs]):
            if len(node.deps) < 2 and not (node.op is Op.REDUCE and node.arg.index == inner):  # type: ignore[union-attr]
                continue  # per pair means: depends on both indices, or feeds a reduction over inner
            for s in node.src:
                if s.deps == {inner} and _worth_storing(s) and s not in found:
                    found.append(s)
    return tuple(found)


def _worth_storing(node: Node) -> bool:
    if node.op in LEAF_OPS or node.op in _FREE or contains_reduction(node):
        return False
    return not node.dtype.is_narrow_float and not any(s.dtype.is_narrow_float for s in walk([node]))


def run(kernel: Kernel) -> list[Stage]:
    """[the map stage computing the hoisted values, the kernel reading them], or [kernel]."""
    return two_stages(kernel, list(candidates(kernel)), "__hoist")


def stored_bytes(kernel: Kernel, sizes_of: dict[str, int], bindings: dict[str, int]) -> int:
    """Bytes of the temporaries `run` would allocate for index sizes {"i": N, "j": M}."""
    total = 0
    for node in candidates(kernel):
        (index,) = tuple(node.deps)
        total += sizes_of[index] * node.dim.evaluate(bindings) * node.dtype.numpy.itemsize
    return total
