"""Records for code generators of C-family languages (C, CUDA C++, OpenCL, ...), part of the
plugin API (`from kernelc.plugins import clike`): a generator turns IR nodes into `Stmt`
records (each names the template macro that renders it) held in nested `Scope`s — per thread,
per row, per pair — and refers to values through `Var`, which is either a variable or an inline
array load. The example C plugin and the CUDA backend both build on them; their templates say
how each record kind reads in their language."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from kernelc.ir.build import contains_reduction
from kernelc.ir.nodes import Node
from kernelc.ir.ops import Op


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


class Generator:
    """The shared part of a C-family code generator: fresh names, declarations (vectors longer
    than `stack_limit` components go to a per-thread scratch buffer), the loop level of each
    node's value, one computation per node and scope, and `let` statements. A subclass says how
    a node is computed (`compute`) and how functions and reductions are laid out."""

    stack_limit = 256

    def __init__(self, kernel: Any, dims: dict[str, int]) -> None:
        self.kernel, self.dims = kernel, dims
        self.params = {p.name: k for k, p in enumerate(kernel.params)}
        self.counter = 0
        self.scratch = 0  # bytes of scratch per thread in the current function
        self.inner = "j"  # the index of the current function's inner loop

    def size(self, dim: Any) -> int:
        return dim.evaluate(self.dims)

    def fresh(self) -> str:
        self.counter += 1
        return f"t{self.counter}"

    def output_groups(self) -> dict[str | None, list[int]]:
        """Output numbers by the index their rows run over (None: unindexed outputs)."""
        groups: dict[str | None, list[int]] = {}
        for k, out in enumerate(self.kernel.outputs):
            groups.setdefault(out.type.index[0] if out.type.index else None, []).append(k)
        return groups

    def declare(self, scope: Scope, ctype: str, dim: int, array: bool = False) -> str:
        name = self.fresh()
        if dim <= self.stack_limit:
            scope.body.append(Stmt("decl", dict(name=name, ctype=ctype, dim=dim, array=array)))
        else:
            scope.body.append(Stmt("scratch", dict(name=name, ctype=ctype, offset=self.scratch)))
            self.scratch += 8 * dim
        return name

    def level(self, node: Node) -> int:
        """0: computed once per thread, 1: per row, 2: per pair."""
        if self.inner in node.deps and node.op is not Op.REDUCE:
            return 2
        return 1 if node.deps or contains_reduction(node) else 0

    def value(self, node: Node, scope: Scope) -> Var:
        """How `node` reads in `scope`, computed once in the outermost scope where it can be."""
        home = scope.at_level(self.level(node))
        if node not in home.vars:
            home.vars[node] = self.compute(node, home)
        return home.vars[node]

    def compute(self, node: Node, scope: Scope) -> Var:
        raise NotImplementedError

    def vector_part(self, node: Node, scope: Scope, ctype: str, src: list[Var]) -> Var | None:
        """Component, static slice and concatenation, the same in every C-family language (None
        for any other op)."""
        dim = self.size(node.dim)
        if node.op is Op.ELEMENT:
            return self.let(scope, ctype, "", [Var.text(src[0].at(str(self.size(node.arg))))], 1)
        if node.op is Op.SLICE:
            start = self.size(node.arg[0])
            return self.let(scope, ctype, "", [Var.text(src[0].at(f"k + {start}" if dim > 1 else str(start)))], dim)
        if node.op is Op.CONCAT:
            name = self.declare(scope, ctype, dim)
            parts, start = [], 0
            for s in src:
                parts.append((s, start))
                start += s.dim
            scope.body.append(Stmt("concat", dict(target=name, parts=parts)))
            return Var(name, dim)
        return None

    def let(self, scope: Scope, ctype: str, fn: str, args: list[Var], dim: int) -> Var:
        """`fn(args...)` per component k of a new variable."""
        name = self.fresh() if dim == 1 else self.declare(scope, ctype, dim)
        scope.body.append(Stmt("let", dict(target=name, ctype=ctype, fn=fn, args=args, dim=dim)))
        return Var(name, dim)
