"""Values while type checking: an IR node plus the "weak" flag of literals (LANGUAGE.md §2).

A weak value (a literal, or an expression of literals and weak values) takes the dtype of the
strong value it meets; alone it is i64 or f64. Pure literal arithmetic is folded here, with the
same NumPy definitions the reference backend runs, so `2 * pi` is one constant.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kernelc.errors import KernelTypeError, SourcePos
from kernelc.ir import build, reference
from kernelc.ir.build import IRTypingError
from kernelc.ir.dtypes import DType, promote
from kernelc.ir.nodes import Arg, Node
from kernelc.ir.ops import Op


@dataclass(frozen=True)
class Val:
    node: Node
    pos: SourcePos
    weak: bool = False

    @property
    def dtype(self) -> DType:
        return self.node.dtype

    @property
    def is_const(self) -> bool:
        return self.node.op is Op.CONST


def weak_literal(value: int | float, pos: SourcePos) -> Val:
    dtype = DType.I64 if isinstance(value, int) and not isinstance(value, bool) else DType.F64
    if dtype is DType.I64 and not -(2**63) <= value < 2**63:
        raise KernelTypeError(f"the integer {value} does not fit in i64", pos, hint="write it as a float, e.g. 1e20")
    return Val(build.const(value, dtype), pos, weak=True)


def make(op: Op, vals: list[Val], pos: SourcePos, arg: Arg = None) -> Node:
    """build.make, with a failed typing rule reported at the culprit operand."""
    try:
        return build.make(op, *(v.node for v in vals), arg=arg)
    except IRTypingError as err:
        where = vals[err.operand].pos if err.operand is not None and err.operand < len(vals) else pos
        raise KernelTypeError(err.message, where, hint=err.hint) from None


def to_dtype(val: Val, dtype: DType) -> Node:
    """`val` as a node of `dtype`: a weak constant is re-typed (checking its range), else cast."""
    if val.dtype == dtype:
        return val.node
    if val.weak and val.is_const:
        value = val.node.arg
        if dtype.is_int:
            info = np.iinfo(dtype.numpy)
            if isinstance(value, float):
                raise KernelTypeError(f"the float {value} cannot be used as {dtype}", val.pos,
                                      hint=f"write an integer, or cast explicitly: {dtype}(...)")
            if not info.min <= value <= info.max:
                raise KernelTypeError(f"the integer {value} does not fit in {dtype}", val.pos,
                                      hint="use a wider dtype, e.g. i64(...)")
        return build.const(value, dtype)  # type: ignore[arg-type]
    return build.make(Op.CAST, val.node, arg=dtype)


def common_dtype(vals: list[Val]) -> tuple[DType, bool]:
    """The dtype operands meet at, and whether the result stays weak (all operands weak)."""
    strong = [v.dtype for v in vals if not v.weak]
    weak_float = any(v.weak and v.dtype.is_float for v in vals)
    if not strong:
        return (DType.F64 if weak_float else DType.I64), True
    dtype = strong[0]
    for dt in strong[1:]:
        dtype = promote(dtype, dt)
    if weak_float and not dtype.is_float:
        dtype = DType.F64
    elif any(v.weak for v in vals) and dtype.is_bool:
        dtype = DType.I64
    return dtype, False


def coerce(vals: list[Val], dtype: DType) -> list[Val]:
    return [Val(to_dtype(v, dtype), v.pos, v.weak) for v in vals]


def apply(op: Op, vals: list[Val], pos: SourcePos, weak: bool, arg: Arg = None) -> Val:
    """Build `op` over operands that already share a dtype; fold it when all are weak constants."""
    if weak and all(v.weak and v.is_const for v in vals) and op is not Op.CAST:
        return _fold(op, vals, pos, arg)
    return Val(make(op, vals, pos, arg), pos, weak)


def _fold(op: Op, vals: list[Val], pos: SourcePos, arg: Arg) -> Val:
    node = make(op, vals, pos, arg)  # type-check first
    arrays = [np.asarray(v.node.arg, dtype=reference.compute_dtype(v.dtype)) for v in vals]
    result = reference.evaluate_elementwise(op, arrays, arg)
    value = result.item()
    if node.dtype.is_bool:
        return Val(build.const(bool(value), DType.BOOL), pos, weak=False)
    return Val(build.const(value, node.dtype), pos, weak=True)
