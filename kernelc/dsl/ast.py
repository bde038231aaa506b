"""The syntax tree of a kernelc source. Every node keeps its source position for error messages."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Union

from kernelc.errors import SourcePos


@dataclass(frozen=True)
class Number:
    text: str
    pos: SourcePos

    @property
    def is_int(self) -> bool:
        return not any(c in self.text for c in ".eE")


@dataclass(frozen=True)
class Name:
    id: str
    pos: SourcePos


@dataclass(frozen=True)
class Constant:
    """`true`, `false`, `inf`, `nan` or `pi`."""

    name: str
    pos: SourcePos


@dataclass(frozen=True)
class DTypeName:
    """A dtype name used as a value: only valid as the callee of a cast, `f32(x)`."""

    name: str
    pos: SourcePos


@dataclass(frozen=True)
class Unary:
    op: str  # "-", "+", "not"
    operand: "Expr"
    pos: SourcePos


@dataclass(frozen=True)
class Binary:
    op: str  # "+", "-", "*", "/", "**", "and", "or", "<", "<=", ">", ">=", "==", "!="
    left: "Expr"
    right: "Expr"
    pos: SourcePos


@dataclass(frozen=True)
class Call:
    func: "Expr"
    args: tuple["Expr", ...]
    pos: SourcePos


@dataclass(frozen=True)
class SliceItem:
    start: "Expr | None"
    stop: "Expr | None"
    pos: SourcePos


@dataclass(frozen=True)
class Subscript:
    value: "Expr"
    items: tuple["Expr | SliceItem", ...]
    pos: SourcePos


Expr = Union[Number, Name, Constant, DTypeName, Unary, Binary, Call, Subscript]


@dataclass(frozen=True)
class Assign:
    name: str
    value: Expr
    pos: SourcePos  # of the name


@dataclass(frozen=True)
class Return:
    values: tuple[Expr, ...]
    pos: SourcePos


Stmt = Union[Assign, Return]


@dataclass(frozen=True)
class DimDecl:
    """One entry in a type's brackets: an index (`i`, `j`), a symbol (`D`) or a fixed size (`3`)."""

    value: str | int
    pos: SourcePos


@dataclass(frozen=True)
class TypeDecl:
    dtype: str
    dims: tuple[DimDecl, ...]
    pos: SourcePos


@dataclass(frozen=True)
class ParamDecl:
    name: str
    type: TypeDecl
    pos: SourcePos


@dataclass(frozen=True)
class KernelDef:
    name: str
    params: tuple[ParamDecl, ...]
    outputs: tuple[TypeDecl, ...]
    body: tuple[Stmt, ...]
    pos: SourcePos  # of the name
    end: SourcePos  # of the closing brace


@dataclass(frozen=True)
class Module:
    kernels: tuple[KernelDef, ...] = field(default_factory=tuple)
