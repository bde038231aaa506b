"""What the hand-scheduled pattern paths (amx.py, nearest.py) match in a kernel's IR, shared."""

from __future__ import annotations

from kernelc.ir.dtypes import DType
from kernelc.ir.nodes import Node
from kernelc.ir.ops import Op


F32_ONLY = frozenset({DType.F32})
# f16 and bf16 values are computed in f32 (LANGUAGE.md §5): a path that converts its inputs to f32
# (exactly) and rounds its f32 outputs to the output's type computes what the row functions do
F32_AND_NARROW = frozenset({DType.F32, DType.F16, DType.BF16})


def widened(node: Node) -> Node:
    """`node` without a conversion to f32 of an f16 or bf16 value, which changes nothing: narrow
    values are computed and held in f32 (the promotion casts of mixed f32 and narrow operands)."""
    if node.op is Op.CAST and node.dtype is DType.F32 and node.src[0].dtype.is_narrow_float:
        return node.src[0]
    return node


def param_of(node: Node, params: dict, index: tuple[str, ...], dtypes: frozenset = F32_ONLY) -> Node | None:
    """The parameter of one of `dtypes`, indexed by exactly `index`, that `node` reads (as it is,
    or widened to f32 where `dtypes` has narrow types), or None."""
    if any(dt.is_narrow_float for dt in dtypes):
        node = widened(node)
    if node.op is Op.PARAM and node.dtype in dtypes and params[node.arg].type.index == index:
        return node
    return None


def row_and_column(a: Node, b: Node, params: dict, dtypes: frozenset = F32_ONLY) -> tuple[Node, Node] | None:
    """The parameters that the operands of a pair term (dot, sqdist) read, in either order, as
    (the vector parameter over i, the one over j, of the same length, both of `dtypes`), or None."""
    if param_of(b, params, ("i",), dtypes) and param_of(a, params, ("j",), dtypes):
        a, b = b, a
    a, b = param_of(a, params, ("i",), dtypes), param_of(b, params, ("j",), dtypes)  # type: ignore[assignment]
    if a is None or b is None or a.dim is None or a.dim != b.dim:
        return None
    return a, b
