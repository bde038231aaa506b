"""From one single-pass kernel and a schedule to the records that templates/kernel.cu.j2 renders.

Outputs are grouped by the index their rows run over (i, j, or none); each group becomes one
`__global__` function where a CUDA thread owns `rows` output rows (rows r*blockDim apart, so
that loads coalesce). The other index runs in tiles of `tile` elements: with `stage` the
tile's inputs indexed by it are copied once into shared memory by the whole block, and every
thread then reads them from there. Each IR node becomes one variable in the outermost scope
where its operands exist: per thread (parameters only), per row, per pair.

Float sums (sum, mean, logsumexp, softmax) of f16/bf16/f32 values accumulate each tile in float
and fold the tile into a double total with the reduction's combine: blocked summation, whose
error does not grow linearly with the length of the range (LANGUAGE.md §6).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kernelc.plugins import clike
from kernelc.plugins.clike import Stmt, Var
from kernelc.ir.dtypes import DType
from kernelc.ir.nodes import Kernel, Node, walk
from kernelc.ir.ops import Op, ReduceKind

CTYPE = {DType.F16: "float", DType.BF16: "float", DType.F32: "float", DType.F64: "double",
         DType.I32: "kc_i32", DType.I64: "kc_i64", DType.BOOL: "bool"}
STORAGE = {DType.F16: "__half", DType.BF16: "__nv_bfloat16", DType.F32: "float", DType.F64: "double",
           DType.I32: "kc_i32", DType.I64: "kc_i64", DType.BOOL: "unsigned char"}
STACK_LIMIT = 256  # longer vectors live in a per-thread scratch buffer in global memory
SHARED_BYTES = 32 * 1024  # staged tiles of all inputs together stay below this
FLOAT_SUMS = (ReduceKind.SUM, ReduceKind.MEAN, ReduceKind.LOGSUMEXP, ReduceKind.SOFTMAX)


@dataclass
class Scope(clike.Scope):
    staged: bool = False  # inner-indexed inputs are read from the shared-memory tile


@dataclass
class Row:
    """One of a thread's rows: what runs before the tile loop, in it, at each tile's end, after."""

    number: int
    before: list[Stmt]
    pairs: list[Stmt]
    tile_start: list[Stmt]
    tile_end: list[Stmt]
    after: list[Stmt]


@dataclass
class Staged:
    """An input indexed by the inner index, copied into the shared-memory tile: all such inputs
    of one storage type interleave in one record per element (`width` values, padded to 16
    bytes so that a thread reads a record with vector loads)."""

    param: int
    storage: str
    dim: int
    offset: int  # within its record

    @property
    def record(self) -> str:
        return f"SR_{_SHORT[self.storage]}"


@dataclass
class Function:
    name: str
    outer: str  # the index the rows run over ("r" for a single row)
    inner: str
    rows_size: str  # C expression of the number of rows
    inner_size: str
    top: list[Stmt]
    rows: list[Row]
    has_loop: bool
    mode: str  # "whole"; or with j split across blocks "partial" (states out) then "combine"
    state_bytes: int  # per row and split, in the partial/combine state buffer
    staged: list[Staged]
    records: dict[str, tuple[str, int]]  # shared-memory record name -> (storage, padded width)
    scratch: int  # bytes per thread


@dataclass(frozen=True)
class Layout:
    """The schedule's knobs that shape the generated code."""

    block: int = 128
    rows: int = 1
    tile: int = 64
    stage: bool = True
    split: int = 1  # > 1: the inner index is split across that many blocks, states combined after


class Generator(clike.Generator):
    stack_limit = STACK_LIMIT

    def __init__(self, kernel: Kernel, dims: dict[str, int], layout: Layout, prefix: str = "kc") -> None:
        super().__init__(kernel, dims)
        self.layout, self.prefix = layout, prefix
        self.names: dict[str, str] = {}  # index -> the C variable holding it in the current row
        self.staged: dict[int, Staged] = {}

    # --- functions --------------------------------------------------------------------------------
    def functions(self) -> list[Function]:
        functions = []
        for g, (outer, ks) in enumerate(self.output_groups().items()):
            name = f"{self.prefix}_group{g}"
            if self.layout.split > 1 and any(n.op is Op.REDUCE for n in walk([self.kernel.outputs[k].value for k in ks])):
                functions += [self.function(f"{name}_partial", outer, ks, "partial"),
                              self.function(f"{name}_combine", outer, ks, "combine")]
            else:
                functions.append(self.function(name, outer, ks, "whole"))
        return functions

    def function(self, name: str, outer: str | None, outs: list[int], mode: str) -> Function:
        self.scratch, self.staged, self.state_bytes = 0, {}, 0
        reds = [n for n in walk([self.kernel.outputs[k].value for k in outs]) if n.op is Op.REDUCE]
        self.inner = inner = reds[0].arg.index if reds else ("j" if outer == "i" else "i")
        top = Scope(0, None)
        rows = [self.row(r, outer, outs, reds, top, mode) for r in range(self.layout.rows if outer else 1)]
        rows_size = _size_of(outer) if outer else "1"
        staged = sorted(self.staged.values(), key=lambda s: s.param)
        records = {s.record: (s.storage, self.record_width(s.storage)) for s in staged}
        return Function(name, outer or "r", inner, rows_size, _size_of(inner), top.body, rows,
                        bool(reds) and mode != "combine", mode, self.state_bytes, staged, records, self.scratch)

    def row(self, number: int, outer: str | None, outs: list[int], reds: list[Node], top: Scope, mode: str) -> Row:
        self.names = {self.inner: self.inner}
        if outer:
            self.names[outer] = f"{outer}{number}"
        row = Scope(1, top)
        loop = Scope(2, row, staged=self.layout.stage)
        tile_start: list[Stmt] = []
        tile_end: list[Stmt] = []
        states = [self.reduction_init(r, row, tile_start) for r in reds]
        if mode != "combine":
            for r, state in zip(reds, states):
                self.reduction_update(r, state, loop, tile_end)
        self.state_bytes = 0  # every row's record has the same layout
        slots = [self.slots(state) for state in states]
        base = f"st{number}_"
        if mode == "combine":
            others = [dict(state, s=self.state(row, r.arg.kind, state["total"]["ctype"], state["dim"])) for r, state
                      in zip(reds, states)]
            for other in others:
                row.body.append(Stmt("red_init", other))
        before, row.body = row.body, []
        if mode == "partial":
            row.body += [Stmt("red_save", dict(slots=slot, base=base)) for slot in slots]
            return Row(number, before, loop.body, tile_start, tile_end, row.body)
        if mode == "combine":
            body = [Stmt("red_load", dict(slots=self.slots(other, slot), base=base)) for other, slot in zip(others, slots)]
            body += [Stmt("red_combine", dict(state, s=state["total"], t=other["s"])) for state, other in zip(states, others)]
            row.body.append(Stmt("splits", dict(body=body, base=base, row=f"row{number}_", bytes=self.state_bytes)))
        for r, state in zip(reds, states):
            row.vars[r] = self.reduction_final(r, state, row)
        for k in outs:
            out = self.kernel.outputs[k]
            scope = Scope(2, row) if self.inner in out.type.index else row
            self.store(k, self.value(out.value, scope), scope)
            if scope is not row:
                row.body.append(Stmt("loop", dict(var=self.inner, bound=_size_of(self.inner), body=scope.body)))
        return Row(number, before, loop.body, tile_start, tile_end, row.body)

    def store(self, k: int, var: Var, scope: Scope) -> None:
        t = self.kernel.outputs[k].type
        dim = self.size(t.value_dim)
        scope.body.append(Stmt("store", dict(
            out=f"O{k}", offset=self.offset(t.index, dim), dim=dim, value=var, dtype=t.dtype.value)))

    def offset(self, index: tuple[str, ...], dim: int) -> str:
        """Element offset of component 0 in a C-contiguous array indexed by `index`, then the vector axis."""
        flat = "0"
        for ix in index:
            name = self.names[ix]
            flat = name if flat == "0" else f"({flat}) * {_size_of(ix)} + {name}"
        return f"({flat}) * {dim}" if dim > 1 and flat != "0" else flat

    # --- values -------------------------------------------------------------------------------
    def compute(self, node: Node, scope: Scope) -> Var:
        dim, ctype, op = self.size(node.dim), CTYPE[node.dtype], node.op
        if op is Op.PARAM:
            return self.load(node, dim, scope)
        if op is Op.CONST:
            return self.let(scope, ctype, "", [Var.text(_literal(node.arg, node.dtype))], 1)
        if op is Op.INDEX:
            return self.let(scope, ctype, "", [Var.text(f"(kc_i64){self.names[node.arg]}")], 1)
        if op is Op.DIMSIZE:
            return self.let(scope, ctype, "", [Var.text(f"{self.size(node.arg)}LL")], 1)
        src = [self.value(s, scope) for s in node.src]
        if op is Op.CAST:
            return self.let(scope, ctype, f"kc_to_{node.arg.value}", src, dim)
        if op in (Op.ELEMENT, Op.SLICE, Op.CONCAT):
            return self.vector_part(node, scope, ctype, src)
        if op in (Op.VSUM, Op.VMAX, Op.VMIN, Op.VARGMAX, Op.VARGMIN, Op.VLOGSUMEXP):
            name = self.fresh()
            scope.body.append(Stmt("component", dict(target=name, op=op.value, ctype=ctype, a=src[0],
                                                     source=CTYPE[node.src[0].dtype])))
            return Var(name, 1)
        return self.let(scope, ctype, f"kc_{op.value}", src, dim)

    def load(self, node: Node, dim: int, scope: Scope) -> Var:
        number = self.params[node.arg]
        t = self.kernel.param(node.arg).type
        if scope.staged and t.index == (self.inner,) and self.stageable(number, dim):
            staged = self.staged[number]
            base = f"jj * W_{staged.record} + {staged.offset}" if staged.offset else f"jj * W_{staged.record}"
            return Var("", dim, f"kc_load({staged.record}[{{}}])", base)
        return Var("", dim, f"kc_load(P{number}[{{}}])", self.offset(t.index, dim))

    def record_width(self, storage: str, extra: int = 0) -> int:
        """The padded width of the shared-memory record of `storage` values (with `extra` more)."""
        width = sum(s.dim for s in self.staged.values() if s.storage == storage) + extra
        per_16_bytes = max(1, 16 // _STORAGE_BYTES[storage])
        return width if width <= 1 else -(-width // per_16_bytes) * per_16_bytes

    def stageable(self, number: int, dim: int) -> bool:
        """Whether input `number` joins the shared-memory tile (all records stay within
        SHARED_BYTES for the layout's tile)."""
        if number in self.staged:
            return True
        storage = STORAGE[self.kernel.params[number].type.dtype]
        storages = {s.storage for s in self.staged.values()} | {storage}
        record_bytes = sum(self.record_width(st, dim if st == storage else 0) * _STORAGE_BYTES[st] for st in storages)
        if record_bytes * self.layout.tile > SHARED_BYTES:
            return False
        offset = sum(s.dim for s in self.staged.values() if s.storage == storage)
        self.staged[number] = Staged(number, storage, dim, offset)
        return True

    # --- reductions ------------------------------------------------------------------------------
    def reduction_init(self, r: Node, row: Scope, tile_start: list[Stmt]) -> dict[str, Any]:
        kind: ReduceKind = r.arg.kind
        src = r.src[0].dtype
        dim = self.size(r.dim)
        value = CTYPE[src]
        if kind in (ReduceKind.SUM, ReduceKind.MEAN) and not src.is_float:
            value = "kc_i64"
        blocked = kind in FLOAT_SUMS and src.is_float and src is not DType.F64
        if kind is ReduceKind.SOFTMAX:
            blocked = blocked and r.src[1].dtype is not DType.F64
            value = CTYPE[r.src[1].dtype] if r.src[1].dtype is DType.F64 else value
        total = "double" if blocked else value
        # a: sums, extremes, K best values, logsumexp maxima, softmax numerators; b: indices,
        # logsumexp sums or the softmax maximum; c: the softmax denominator
        state = dict(red=kind.value, dim=dim, value=value, largest=int(kind in _LARGEST), blocked=blocked,
                     total=self.state(row, kind, total, dim), tile=None)
        row.body.append(Stmt("red_init", dict(state, s=state["total"])))
        if blocked:
            state["tile"] = self.state(row, kind, value, dim)
            tile_start.append(Stmt("red_init", dict(state, s=state["tile"])))
        return state

    def state(self, row: Scope, kind: ReduceKind, ctype: str, dim: int) -> dict[str, Any]:
        a = self.declare(row, ctype, dim, array=True)
        b = c = None
        if kind in (ReduceKind.ARGMAX, ReduceKind.ARGMIN) or kind.takes_k:
            b = self.declare(row, "kc_i64", dim, array=True)
        if kind is ReduceKind.LOGSUMEXP:
            b = self.declare(row, ctype, dim, array=True)
        if kind is ReduceKind.SOFTMAX:
            b = self.declare(row, ctype, 1, array=True)
            c = self.declare(row, ctype, 1, array=True)
        return dict(a=a, b=b, c=c, ctype=ctype)

    def slots(self, state: dict[str, Any], like: list[tuple[str, str, int, int]] | None = None
              ) -> list[tuple[str, str, int, int]]:
        """(variable, type, count, byte offset) of each part of a state in the state buffer's
        record of a row: 8 bytes per value. `like`: the offsets of another state of the same shape."""
        s = state.get("s") or state["total"]
        parts = [(s["a"], s["ctype"], state["dim"])]
        if s["b"]:
            index = state["red"] in ("argmax", "argmin", "kmin", "kmax", "argkmin", "argkmax")
            parts.append((s["b"], "kc_i64" if index else s["ctype"], 1 if state["red"] == "softmax" else state["dim"]))
        if s["c"]:
            parts.append((s["c"], s["ctype"], 1))
        if like is not None:
            return [(name, ctype, count, offset) for (name, ctype, count), (_, _, _, offset) in zip(parts, like)]
        found = []
        for name, ctype, count in parts:
            found.append((name, ctype, count, self.state_bytes))
            self.state_bytes += 8 * count
        return found

    def reduction_update(self, r: Node, state: dict[str, Any], loop: Scope, tile_end: list[Stmt]) -> None:
        args = [self.value(s, loop) for s in r.src]
        if len(args) == 1:
            args.append(Var.text(f"({state['value']})1"))  # the weight of an unweighted logsumexp
        target = state["tile"] or state["total"]
        loop.body.append(Stmt("red_update", dict(state, s=target, v=args[0], w=args[1],
                                                 index=self.names[self.inner])))
        if state["blocked"]:
            tile_end.append(Stmt("red_combine", dict(state, s=state["total"], t=state["tile"])))

    def reduction_final(self, r: Node, state: dict[str, Any], row: Scope) -> Var:
        kind, dim, ctype = r.arg.kind, state["dim"], CTYPE[r.dtype]
        s = state["total"]
        a, b = Var(s["a"], dim, array=True), s["b"] and Var(s["b"], dim, array=True)
        if kind is ReduceKind.MEAN:
            return self.let(row, ctype, "kc_mean", [a, Var.text(_size_of(self.inner))], dim)
        if kind.gives_index:
            return self.let(row, ctype, "", [b], dim)
        if kind is ReduceKind.LOGSUMEXP:
            return self.let(row, ctype, "kc_lse_final", [a, b], dim)
        if kind is ReduceKind.SOFTMAX:
            return self.let(row, ctype, "kc_softmax_final", [a, Var(s["c"], 1, array=True)], dim)
        return self.let(row, ctype, "", [a], dim)


_LARGEST = (ReduceKind.MAX, ReduceKind.ARGMAX, ReduceKind.KMAX, ReduceKind.ARGKMAX)
_SHORT = {"__half": "h", "__nv_bfloat16": "bh", "float": "f", "double": "d", "kc_i32": "i", "kc_i64": "l",
          "unsigned char": "b"}
_STORAGE_BYTES = {"__half": 2, "__nv_bfloat16": 2, "float": 4, "double": 8, "kc_i32": 4, "kc_i64": 8,
                  "unsigned char": 1}


def _size_of(index: str) -> str:
    return "N" if index == "i" else "M"


def _literal(value: bool | int | float, dtype: DType) -> str:
    if dtype.is_bool:
        return "true" if value else "false"
    if dtype.is_float:
        value = float(value)
        if value != value:
            return "KC_QNAN"
        if value in (float("inf"), float("-inf")):
            return "KC_INF" if value > 0 else "(-KC_INF)"
        return f"({value.hex()})"
    return "KC_I64_MIN" if value == -(1 << 63) else f"{int(value)}LL"
