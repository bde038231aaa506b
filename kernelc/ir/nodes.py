"""The formula IR: an SSA DAG of immutable, structurally compared nodes, and the kernel around it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator, Union

from kernelc.ir.dims import ONE, Dim
from kernelc.ir.dtypes import DType
from kernelc.ir.ops import Op, ReduceKind

Index = str  # "i" or "j"
INDICES: tuple[Index, Index] = ("i", "j")


def other_index(index: Index) -> Index:
    return "j" if index == "i" else "i"


@dataclass(frozen=True)
class Reduction:
    """The arg of an `Op.REDUCE` node: which reduction, over which index, and K for the k-ones."""

    kind: ReduceKind
    index: Index
    k: Dim | None = None

    def __str__(self) -> str:
        k = f", {self.k}" if self.k is not None else ""
        return f"{self.kind}[{self.index}{k}]"


Arg = Union[None, str, bool, int, float, Dim, DType, tuple[Dim, Dim], Reduction]


@dataclass(frozen=True, eq=False)
class Node:
    """One SSA value. `deps` is the set of indices it varies with; `dim` its vector dimension.

    Nodes are built with `kernelc.ir.build.make` (which infers dtype, dim and deps), compared
    structurally and hashed once, so equal formulas are equal nodes and a printed kernel is a key.
    """

    op: Op
    dtype: DType
    dim: Dim
    deps: frozenset[Index]
    src: tuple["Node", ...] = ()
    arg: Arg = None
    _hash: int = field(init=False, repr=False, compare=False, default=0)

    def __post_init__(self) -> None:
        key = (self.op, self.dtype, self.dim, self.deps, self.src, _arg_key(self.arg))
        object.__setattr__(self, "_hash", hash(key))

    def __hash__(self) -> int:
        return self._hash

    def __eq__(self, other: object) -> bool:
        if self is other:
            return True
        if not isinstance(other, Node) or self._hash != other._hash:
            return False
        return (self.op, self.dtype, self.dim, self.deps, _arg_key(self.arg), self.src) == (
            other.op, other.dtype, other.dim, other.deps, _arg_key(other.arg), other.src)

    def __repr__(self) -> str:
        return f"Node({self.op}, {self.dtype}<{self.dim}>{{{','.join(sorted(self.deps))}}}, n_src={len(self.src)})"

    @property
    def is_scalar(self) -> bool:
        return self.dim == ONE


def _arg_key(arg: Arg) -> object:
    # 0.0 == -0.0 and 1 == True == 1.0 in Python; constants must stay apart, NaN must equal NaN.
    if isinstance(arg, float):
        return ("f", arg.hex())
    if isinstance(arg, bool):
        return ("b", arg)
    if isinstance(arg, int):
        return ("i", arg)
    return arg


@dataclass(frozen=True)
class TensorType:
    """A parameter's or output's declared type: dtype, indices (in order) and vector dimension.

    `dim` is None for `f32[i]` (an element per i, shape (N,)) and a Dim for `f32[i, D]` (N, D).
    """

    dtype: DType
    index: tuple[Index, ...] = ()
    dim: Dim | None = None

    @property
    def value_dim(self) -> Dim:
        return self.dim if self.dim is not None else ONE

    def __str__(self) -> str:
        parts = list(self.index) + ([str(self.dim)] if self.dim is not None else [])
        return f"{self.dtype}[{', '.join(parts)}]" if parts else str(self.dtype)


@dataclass(frozen=True)
class Param:
    name: str
    type: TensorType


@dataclass(frozen=True)
class Output:
    value: Node
    type: TensorType


@dataclass(frozen=True)
class DimCheck:
    """A condition on dimension symbols that the runtime checks at each call: `lo <= value < hi`
    style bounds that the type checker could not decide before the symbols are bound."""

    low: Dim  # must hold: low <= high
    high: Dim
    message: str

    def holds(self, bindings: dict[str, int]) -> bool:
        return self.low.evaluate(bindings) <= self.high.evaluate(bindings)


@dataclass(frozen=True)
class Kernel:
    """A typed kernel: its parameters, its outputs (each a DAG root) and what calls must satisfy."""

    name: str
    params: tuple[Param, ...]
    outputs: tuple[Output, ...]
    symbols: tuple[str, ...]  # every dimension symbol, in order of first appearance
    checks: tuple[DimCheck, ...] = ()

    def __hash__(self) -> int:  # hashed once: kernels key the caches every call consults
        cached = self.__dict__.get("_hash")
        if cached is None:
            cached = hash((self.name, self.params, self.outputs, self.symbols, self.checks))
            object.__setattr__(self, "_hash", cached)
        return cached

    @property
    def param_symbols(self) -> frozenset[str]:
        """Symbols that some parameter's shape fixes; the others must be given by keyword."""
        return frozenset(s for p in self.params if p.type.dim is not None for s in p.type.dim.symbols)

    def param(self, name: str) -> Param:
        return next(p for p in self.params if p.name == name)

    def __str__(self) -> str:
        from kernelc.ir.printer import print_kernel

        return print_kernel(self)


def walk(roots: "tuple[Node, ...] | list[Node]") -> Iterator[Node]:
    """Every node reachable from `roots`, each once, operands before users (a topological order)."""
    seen: set[Node] = set()
    stack: list[tuple[Node, bool]] = [(r, False) for r in reversed(list(roots))]
    while stack:
        node, expanded = stack.pop()
        if node in seen:
            continue
        if expanded:
            seen.add(node)
            yield node
            continue
        stack.append((node, True))
        stack.extend((s, False) for s in reversed(node.src) if s not in seen)


def reductions(roots: "tuple[Node, ...] | list[Node]") -> list[Node]:
    return [n for n in walk(roots) if n.op is Op.REDUCE]
