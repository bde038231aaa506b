"""From one single-pass kernel to the records that templates/kernel.c.j2 renders as C.

Outputs are grouped by the index their rows run over (i, j, or none); each group becomes one
C function: a parallel loop over rows, inside it one loop over the other index that updates
every reduction's state, then the row's values and stores (and a second inner loop for
outputs indexed by both). Each IR node becomes one C variable in the outermost scope where
its operands exist: values of parameters only once per thread, of the row index once per row.
Every float is computed in double, so results follow the NumPy oracle to a few ulp.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kernelc.plugins import DType, Node, Op, ReduceKind, clike, walk

CTYPE = {DType.F16: "double", DType.BF16: "double", DType.F32: "double", DType.F64: "double",
         DType.I32: "int32_t", DType.I64: "int64_t", DType.BOOL: "_Bool"}
STORAGE = {DType.F16: "_Float16", DType.BF16: "uint16_t", DType.F32: "float", DType.F64: "double",
           DType.I32: "int32_t", DType.I64: "int64_t", DType.BOOL: "uint8_t"}
LOAD = {DType.BF16: "kc_load_bf16(P{}[{{}}])", DType.BOOL: "(P{}[{{}}] != 0)"}  # P<param>[<offset>]
LOWEST = {DType.I32: "INT32_MIN", DType.I64: "INT64_MIN", DType.BOOL: "0"}
HIGHEST = {DType.I32: "INT32_MAX", DType.I64: "INT64_MAX", DType.BOOL: "1"}
TYPED = {Op.ABS, Op.SIGN, Op.RELU, Op.FLOOR, Op.CEIL, Op.ROUND, Op.POW, Op.MIN, Op.MAX}  # kc_<op>_f / _i
STACK_LIMIT = 256  # longer vectors live in the per-thread scratch buffer, not on the stack


def lowest(dt: DType) -> str:
    return "(-INFINITY)" if dt.is_float else LOWEST[dt]


def highest(dt: DType) -> str:
    return "INFINITY" if dt.is_float else HIGHEST[dt]


Var, Stmt, Scope = clike.Var, clike.Stmt, clike.Scope  # the plugin API's records for C-family generators


@dataclass
class Function:
    name: str
    rows: str  # C expression of the row count
    outer: str  # loop variable of rows
    top: Scope
    row: Scope
    scratch: int  # bytes per thread


class Generator(clike.Generator):
    stack_limit = STACK_LIMIT

    # --- functions --------------------------------------------------------------------------------
    def functions(self) -> list[Function]:
        return [self.function(f"kc_group{g}", outer, ks) for g, (outer, ks) in enumerate(self.output_groups().items())]

    def function(self, name: str, outer: str | None, outs: list[int]) -> Function:
        self.scratch = 0
        reds = [n for n in walk([self.kernel.outputs[k].value for k in outs]) if n.op is Op.REDUCE]
        inner = reds[0].arg.index if reds else ("j" if outer == "i" else "i")
        self.inner = inner
        top = Scope(0, None)
        row = Scope(1, top)
        if reds:
            loop = Scope(2, row)
            states = [self.reduction_init(r, row) for r in reds]
            for r, state in zip(reds, states):
                self.reduction_update(r, state, loop)
            row.body.append(Stmt("loop", dict(var=inner, bound=_size_of(inner), body=loop.body)))
            for r, state in zip(reds, states):
                row.vars[r] = self.reduction_final(r, state, row)
        for k in outs:
            out = self.kernel.outputs[k]
            scope = row
            if inner in out.type.index:
                scope = Scope(2, row)
            self.store(k, self.value(out.value, scope), scope)
            if scope is not row:
                row.body.append(Stmt("loop", dict(var=inner, bound=_size_of(inner), body=scope.body)))
        rows = _size_of(outer) if outer else "1"
        return Function(name, rows, outer or "r_", top, row, self.scratch)

    def store(self, k: int, var: Var, scope: Scope) -> None:
        t = self.kernel.outputs[k].type
        dim = self.size(t.value_dim)
        scope.body.append(Stmt("store", dict(
            out=f"O{k}", offset=_offset(t.index, dim), dim=dim, value=var, dtype=t.dtype.value)))

    # --- values -------------------------------------------------------------------------------
    def compute(self, node: Node, scope: Scope) -> Var:
        dim, ctype, op = self.size(node.dim), CTYPE[node.dtype], node.op
        if op is Op.PARAM:
            t = self.kernel.param(node.arg).type
            load = LOAD.get(t.dtype, "(double)P{}[{{}}]" if t.dtype.is_float else "P{}[{{}}]")
            return Var("", dim, load.format(self.params[node.arg]), _offset(t.index, dim))
        if op is Op.CONST:
            return self.let(scope, ctype, "", [Var.text(_literal(node.arg, node.dtype))], 1)
        if op is Op.INDEX:
            return self.let(scope, ctype, "", [Var.text(f"(int64_t){node.arg}")], 1)
        if op is Op.DIMSIZE:
            return self.let(scope, ctype, "", [Var.text(f"INT64_C({self.size(node.arg)})")], 1)
        src = [self.value(s, scope) for s in node.src]
        if op is Op.CAST:
            return self.let(scope, ctype, _cast(node.src[0].dtype, node.arg), src, dim)
        if op in (Op.ELEMENT, Op.SLICE, Op.CONCAT):
            return self.vector_part(node, scope, ctype, src)
        if op in (Op.VSUM, Op.VMAX, Op.VMIN, Op.VARGMAX, Op.VARGMIN, Op.VLOGSUMEXP):
            name = self.fresh()
            scope.body.append(Stmt("component", dict(
                target=name, op=op.value, ctype=ctype, a=src[0], low=lowest(node.src[0].dtype),
                high=highest(node.src[0].dtype), suffix=_suffix(node.src[0].dtype))))
            return Var(name, 1)
        fn = f"kc_{op.value}" + (_suffix(node.src[0].dtype) if op in TYPED else "")
        return self.let(scope, ctype, fn, src, dim)

    # --- reductions ------------------------------------------------------------------------------
    def reduction_init(self, r: Node, row: Scope) -> dict[str, Any]:
        kind: ReduceKind = r.arg.kind
        src = r.src[0].dtype
        dim = self.size(r.dim)
        acc = ("double" if src.is_float else "int64_t") if kind in (ReduceKind.SUM, ReduceKind.MEAN) else CTYPE[src]
        if kind.takes_k:
            acc = "double" if src.is_float else "int64_t"
        largest = kind in (ReduceKind.MAX, ReduceKind.ARGMAX, ReduceKind.KMAX, ReduceKind.ARGKMAX)
        # a: the values (sums, extremes, K best, logsumexp maxima, softmax numerators); b: indices,
        # logsumexp sums or the softmax maximum; c: the softmax denominator
        state = dict(red=kind.value, dim=dim, acc=acc, suffix=_suffix(src),
                     init=lowest(src) if largest else highest(src), largest=int(largest),
                     a=self.declare(row, acc, dim, array=True), b=None, c=None)
        if kind in (ReduceKind.ARGMAX, ReduceKind.ARGMIN) or kind.takes_k:
            state["b"] = self.declare(row, "int64_t", dim, array=True)
        if kind is ReduceKind.LOGSUMEXP:
            state["b"] = self.declare(row, "double", dim, array=True)
        if kind is ReduceKind.SOFTMAX:
            state["b"] = self.declare(row, "double", 1, array=True)
            state["c"] = self.declare(row, "double", 1, array=True)
        row.body.append(Stmt("red_init", state))
        return state

    def reduction_update(self, r: Node, state: dict[str, Any], loop: Scope) -> None:
        args = [self.value(s, loop) for s in r.src]
        if len(args) == 1:
            args.append(Var.text("1.0"))  # the weight of an unweighted logsumexp
        loop.body.append(Stmt("red_update", dict(state, v=args[0], w=args[1], index=self.inner)))

    def reduction_final(self, r: Node, state: dict[str, Any], row: Scope) -> Var:
        kind, a, b, c = r.arg.kind, state["a"], state["b"], state["c"]
        dim, ctype = state["dim"], CTYPE[r.dtype]
        a, b = Var(a, dim, array=True), b and Var(b, dim, array=True)
        if kind is ReduceKind.MEAN:
            return self.let(row, ctype, "kc_div", [a, Var.text(f"(double){_size_of(self.inner)}")], dim)
        if kind.gives_index:
            return self.let(row, ctype, "", [b], dim)
        if kind is ReduceKind.LOGSUMEXP:
            return self.let(row, ctype, "kc_lse_final", [a, b], dim)
        if kind is ReduceKind.SOFTMAX:
            return self.let(row, ctype, "kc_softmax_final", [a, Var(c, 1, array=True)], dim)
        return self.let(row, ctype, "", [a], dim)


def _size_of(index: str) -> str:
    return "N" if index == "i" else "M"


def _offset(index: tuple[str, ...], dim: int) -> str:
    """Element offset of component 0 in a C-contiguous array indexed by `index` then the vector axis."""
    flat = "0"
    for ix in index:
        flat = ix if flat == "0" else f"({flat}) * {_size_of(ix)} + {ix}"
    return f"({flat}) * {dim}" if dim > 1 and flat != "0" else flat


def _suffix(dt: DType) -> str:
    return "_f" if dt.is_float else "_i"


def _cast(source: DType, target: DType) -> str:
    if target.is_bool:
        return "kc_to_bool"
    if target.is_float:
        return f"kc_to_{target.value}"
    return f"kc_sat_{target.value}" if source.is_float else f"({CTYPE[target]})"


def _literal(value: bool | int | float, dtype: DType) -> str:
    if dtype.is_bool:
        return str(int(bool(value)))
    if dtype.is_float:
        value = float(value)
        if value != value:
            return "NAN"
        if value in (float("inf"), float("-inf")):
            return "INFINITY" if value > 0 else "(-INFINITY)"
        return f"({value.hex()})"
    return "INT64_MIN" if value == -(1 << 63) else f"INT64_C({int(value)})"
