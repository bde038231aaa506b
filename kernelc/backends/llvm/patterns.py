"""What the hand-scheduled pattern paths (amx.py, nearest.py) match in a kernel's IR, shared."""

from __future__ import annotations

from kernelc.ir.dtypes import DType
from kernelc.ir.nodes import Node
from kernelc.ir.ops import Op


def is_f32_param(node: Node, params: dict, index: tuple[str, ...]) -> bool:
    """Whether `node` reads an f32 parameter indexed by exactly `index`."""
    return node.op is Op.PARAM and node.dtype is DType.F32 and params[node.arg].type.index == index


def row_and_column(a: Node, b: Node, params: dict) -> tuple[Node, Node] | None:
    """The operands of a pair term (dot, sqdist) in either order as (the f32 vector parameter
    over i, the one over j, of the same length), or None."""
    if is_f32_param(b, params, ("i",)) and is_f32_param(a, params, ("j",)):
        a, b = b, a
    if not (is_f32_param(a, params, ("i",)) and is_f32_param(b, params, ("j",))) or a.dim is None or a.dim != b.dim:
        return None
    return a, b
