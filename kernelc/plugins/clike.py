"""Records for code generators of C-family languages (C, CUDA C++, OpenCL, ...), part of the
plugin API (`from kernelc.plugins import clike`): a generator turns IR nodes into `Stmt`
records (each names the template macro that renders it) held in nested `Scope`s — per thread,
per row, per pair — and refers to values through `Var`, which is either a variable or an inline
array load. The example C plugin and the CUDA backend both build on them; their templates say
how each record kind reads in their language."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from kernelc.ir.nodes import Node


@dataclass
class Var:
    """How generated code reads a value: a variable (`name`, or `name[k]` for a vector) or an
    inline load `load` with the element offset `base + k` filled in."""

    name: str
    dim: int
    load: str | None = None  # e.g. "kc_load(P2[{}])"
    base: str = "0"
    array: bool = False  # a C array even when dim is 1 (reduction states)

    @staticmethod
    def text(code: str) -> "Var":
        """A scalar that reads as this code."""
        return Var("", 1, code.replace("{", "{{").replace("}", "}}"))

    def at(self, k: str = "k") -> str:
        """The code of component `k` (a C expression)."""
        if self.load is not None:
            return self.load.format(f"{self.base} + {k}" if self.dim > 1 else self.base)
        if self.dim > 1:
            return f"{self.name}[{k}]"
        return f"{self.name}[0]" if self.array else self.name


@dataclass
class Stmt:
    """One generated statement: `kind` is the template macro that renders it, `fields` its data."""

    kind: str
    fields: dict[str, Any]

    def __getattr__(self, name: str) -> Any:  # so that templates read s.target, s.args, ...
        try:
            return self.fields[name]
        except KeyError:
            raise AttributeError(name) from None


@dataclass
class Scope:
    """A block of generated code at one loop level (0: once per thread, 1: per row, 2: per
    pair), with the values already computed in it."""

    level: int
    parent: "Scope | None"
    body: list[Stmt] = field(default_factory=list)
    vars: dict[Node, Var] = field(default_factory=dict)

    def at_level(self, level: int) -> "Scope":
        """The enclosing scope of `level`, where a value of that level is computed once."""
        scope: Scope | None = self
        while scope is not None and scope.level != level:
            scope = scope.parent
        assert scope is not None, "a value is needed where its operands do not exist"
        return scope
