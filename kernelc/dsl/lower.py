"""Syntax tree to typed IR: name resolution, dtype promotion, dimension and index checking.

Every rule of LANGUAGE.md §3-6 that can be decided before a call is checked here and reported
as a `KernelTypeError` at the offending place; the rest (sizes of dimension symbols) becomes a
`DimCheck` that the runtime evaluates at each call.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field

from kernelc.dsl import ast
from kernelc.dsl.builtins import (
    ALL_FUNCTION_NAMES,
    BINARY_FUNCTIONS,
    REDUCTIONS,
    RESERVED_NAMES,
    SPECIAL_FUNCTIONS,
    UNARY_FUNCTIONS,
)
from kernelc.dsl.values import Val, apply, coerce, common_dtype, make, to_dtype, weak_literal
from kernelc.errors import KernelTypeError, SourcePos
from kernelc.ir import build
from kernelc.ir.dims import ONE, Dim
from kernelc.ir.dtypes import DType, float_of
from kernelc.ir.nodes import INDICES, DimCheck, Kernel, Output, Param, Reduction, TensorType, walk
from kernelc.ir.ops import COMPARE_OPS, FLOAT_UNARY_OPS, Op, ReduceKind
from kernelc.ir.verify import verify

_BINARY_OPS = {"+": Op.ADD, "-": Op.SUB, "*": Op.MUL, "/": Op.DIV, "**": Op.POW, "and": Op.AND, "or": Op.OR,
               "<": Op.LT, "<=": Op.LE, ">": Op.GT, ">=": Op.GE, "==": Op.EQ, "!=": Op.NE}
_CONSTANTS = {"pi": 3.141592653589793, "inf": float("inf"), "nan": float("nan")}


def lower_module(module: ast.Module) -> list[Kernel]:
    seen: dict[str, ast.KernelDef] = {}
    kernels = []
    for kdef in module.kernels:
        if kdef.name in seen:
            raise KernelTypeError(f"a kernel named '{kdef.name}' is already defined on line {seen[kdef.name].pos.line}",
                                  kdef.pos, hint="give each kernel its own name")
        seen[kdef.name] = kdef
        kernels.append(_KernelLowerer(kdef).lower())
    return kernels


@dataclass
class _KernelLowerer:
    kdef: ast.KernelDef
    params: dict[str, Param] = field(default_factory=dict)
    env: dict[str, Val] = field(default_factory=dict)
    symbols: list[str] = field(default_factory=list)  # in order of first appearance
    param_symbols: set[str] = field(default_factory=set)
    checks: list[DimCheck] = field(default_factory=list)
    used_symbols: set[str] = field(default_factory=set)  # symbols the body uses: call keywords

    # --- declarations ---------------------------------------------------------------------------

    def lower(self) -> Kernel:
        for p in self.kdef.params:
            self._declare_param(p)
        out_decls = [self._type(t) for t in self.kdef.outputs]
        for t in out_decls:
            self._note_symbols(t.dim)
        self._collect_k_symbols()
        returned = self._statements()
        outputs = self._outputs(returned, out_decls)
        self._check_index_sizes(outputs)
        kernel = Kernel(self.kdef.name, tuple(self.params.values()), outputs, tuple(self.symbols), tuple(self.checks))
        return verify(kernel)

    def _check_index_sizes(self, outputs: tuple[Output, ...]) -> None:
        """N and M come from the arrays: an index that no parameter carries has no size."""
        carried = {ix for p in self.params.values() for ix in p.type.index}
        used = {ix for o in outputs for ix in o.type.index}
        for node in walk([o.value for o in outputs]):
            used |= node.deps
            if node.op is Op.REDUCE:
                used.add(node.arg.index)  # type: ignore[union-attr]
        for ix in sorted(used - carried):
            size = "N" if ix == "i" else "M"
            raise KernelTypeError(f"the kernel uses index {ix}, but no parameter is indexed by {ix}, so {size} is unknown",
                                  self.kdef.pos, hint=f"add a parameter indexed by {ix}, e.g. x: f32[{ix}]")

    def _declare_param(self, p: ast.ParamDecl) -> None:
        if p.name in self.params:
            raise KernelTypeError(f"two parameters are named '{p.name}'", p.pos, hint="rename one of them")
        self._check_bindable(p.name, p.pos, "a parameter")
        type_ = self._type(p.type)
        self.params[p.name] = Param(p.name, type_)
        self.env[p.name] = Val(build.param(p.name, type_), p.pos)
        if type_.dim is not None:
            self.param_symbols |= type_.dim.symbols
            self._note_symbols(type_.dim)
        clash = self.param_symbols & set(self.params)
        if clash:
            name = sorted(clash)[0]
            raise KernelTypeError(f"'{name}' is both a parameter and a dimension symbol", p.pos,
                                  hint="dimension symbols and parameters need different names")

    def _check_bindable(self, name: str, pos: SourcePos, what: str) -> None:
        if name in RESERVED_NAMES:
            raise KernelTypeError(f"'{name}' is reserved and cannot name {what}", pos,
                                  hint="i and j are the index names; backend is a keyword of calls")
        if name in ALL_FUNCTION_NAMES:
            raise KernelTypeError(f"'{name}' is a built-in function and cannot name {what}", pos,
                                  hint=f"choose another name, e.g. {name}_")

    def _type(self, decl: ast.TypeDecl) -> TensorType:
        dtype = DType.from_name(decl.dtype)
        index: list[str] = []
        dims: list[ast.DimDecl] = []
        for d in decl.dims:
            if d.value in INDICES:
                if dims:
                    raise KernelTypeError("the indices i and j come before the vector dimension", d.pos,
                                          hint="write e.g. f32[i, D]")
                if d.value in index:
                    raise KernelTypeError(f"index '{d.value}' appears twice", d.pos)
                if index and d.value == "i":
                    raise KernelTypeError("write the indices in the order [i, j]", d.pos,
                                          hint="an (M, N) matrix must be passed transposed, as (N, M)")
                index.append(str(d.value))
            else:
                dims.append(d)
        if len(dims) > 1:
            raise KernelTypeError("a type has at most one vector dimension", dims[1].pos,
                                  hint="use [i, D] for a vector per i, or [i, j, D] for a vector per pair")
        dim = None
        if dims:
            value = dims[0].value
            if isinstance(value, int) and value < 1:
                raise KernelTypeError("a vector dimension must be at least 1", dims[0].pos)
            if isinstance(value, str) and value in self.params:
                raise KernelTypeError(f"'{value}' is both a parameter and a dimension symbol", dims[0].pos,
                                      hint="dimension symbols and parameters need different names")
            dim = Dim.of(value)
        return TensorType(dtype, tuple(index), dim)

    def _note_symbols(self, dim: Dim | None) -> None:
        for sym in sorted(dim.symbols) if dim is not None else ():
            if sym not in self.symbols:
                self.symbols.append(sym)

    def _collect_k_symbols(self) -> None:
        """Symbols named as K of a k-reduction are given by keyword at the call (K=10)."""
        for stmt in self.kdef.body:
            for expr in stmt.values if isinstance(stmt, ast.Return) else (stmt.value,):
                for node in _walk_expr(expr):
                    if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name) \
                            and node.value.id in REDUCTIONS and len(node.items) == 2:
                        k = node.items[1]
                        if isinstance(k, ast.Name) and k.id not in self.env and k.id not in INDICES:
                            self._note_symbols(Dim.of(k.id))

    # --- statements -----------------------------------------------------------------------------

    def _statements(self) -> ast.Return:
        body = self.kdef.body
        for k, stmt in enumerate(body):
            if isinstance(stmt, ast.Return):
                if k != len(body) - 1:
                    raise KernelTypeError("statements after return are never run", body[k + 1].pos,
                                          hint="return must be the last statement of a kernel")
                return stmt
            if stmt.name in self.env:
                what = "a parameter" if stmt.name in self.params else "already bound"
                raise KernelTypeError(f"'{stmt.name}' is {what}; names are bound once", stmt.pos,
                                      hint=f"choose a new name, e.g. {stmt.name}2")
            if stmt.name in self.symbols:
                raise KernelTypeError(f"'{stmt.name}' is a dimension symbol and cannot be rebound", stmt.pos)
            self._check_bindable(stmt.name, stmt.pos, "a value")
            self.env[stmt.name] = self._expr(stmt.value)
        raise KernelTypeError(f"kernel '{self.kdef.name}' has no return statement", self.kdef.end,
                              hint="end the kernel with return <value>")

    def _outputs(self, ret: ast.Return, decls: list[TensorType]) -> tuple[Output, ...]:
        if len(ret.values) != len(decls):
            raise KernelTypeError(
                f"return gives {len(ret.values)} value(s) but the kernel declares {len(decls)} output(s)",
                ret.pos, hint="return one value per declared output, in order")
        bound: dict[str, Dim] = {}
        outputs = []
        vals = [self._expr(expr) for expr in ret.values]
        for val, expr, decl in zip(vals, ret.values, decls):
            self._check_output_index(val, decl, expr)
            dim = self._output_dim(val, decl, bound, expr)
            node = self._output_dtype(val, decl, expr)
            outputs.append(Output(node, TensorType(decl.dtype, decl.index, dim)))
        # Symbols only fixed by an output's value are not call keywords.
        self.symbols = [s for s in self.symbols if s not in bound]
        return tuple(outputs)

    def _check_output_index(self, val: Val, decl: TensorType, expr: ast.Expr) -> None:
        extra = sorted(val.node.deps - set(decl.index))
        if not extra:
            return
        idx = extra[0]
        target = f"indexed by {', '.join(decl.index)}" if decl.index else "a single value"
        raise KernelTypeError(f"this value depends on {idx} but the output is {target}", expr.pos,
                              hint=f"reduce over {idx}, e.g. sum[{idx}](...), or declare the output "
                                   f"as {decl.dtype}[{', '.join(sorted(set(decl.index) | {idx}))}]")

    def _output_dim(self, val: Val, decl: TensorType, bound: dict[str, Dim], expr: ast.Expr) -> Dim | None:
        got = val.node.dim
        if decl.dim is None:
            if got != ONE:
                raise KernelTypeError(f"this value is a vector of dimension {got} but the output holds one number",
                                      expr.pos, hint=f"declare the output as {decl.dtype}[{', '.join(decl.index + (str(got),))}]"
                                                     " or reduce the components, e.g. sum(...)")
            return None
        want = decl.dim
        free = [s for s in want.symbols if s not in self.param_symbols and s not in self.used_symbols]
        if want.terms and len(want.terms) == 1 and want.const == 0 and free:
            sym = want.terms[0][0]
            if sym in bound and bound[sym] != got:
                raise KernelTypeError(f"output dimension {sym} is {bound[sym]} for an earlier output but {got} here",
                                      expr.pos)
            bound[sym] = got
            return got
        if want != got:
            raise KernelTypeError(f"this value has dimension {got} but the output is declared with {want}", expr.pos,
                                  hint="dimension symbols are compared by name: use the same symbol in both places")
        return want

    def _output_dtype(self, val: Val, decl: TensorType, expr: ast.Expr) -> build.Node:
        if val.dtype == decl.dtype:
            return val.node
        if val.weak and (decl.dtype.is_float or not val.dtype.is_float):
            return to_dtype(Val(val.node, expr.pos, True), decl.dtype)
        raise KernelTypeError(f"this value is {val.dtype} but the output is declared {decl.dtype}", expr.pos,
                              hint=f"convert explicitly with {decl.dtype}(...), or declare the output as {val.dtype}")

    # --- expressions ----------------------------------------------------------------------------

    def _expr(self, e: ast.Expr) -> Val:
        match e:
            case ast.Number():
                return weak_literal(int(e.text) if e.is_int else float(e.text), e.pos)
            case ast.Constant(name="true" | "false"):
                return Val(build.const(e.name == "true", DType.BOOL), e.pos)
            case ast.Constant():
                return weak_literal(_CONSTANTS[e.name], e.pos)
            case ast.Name():
                return self._name(e)
            case ast.DTypeName():
                raise KernelTypeError(f"'{e.name}' is a dtype, not a value", e.pos,
                                      hint=f"to convert a value, call it: {e.name}(x)")
            case ast.Unary():
                return self._unary(e)
            case ast.Binary():
                return self._binary(e)
            case ast.Call():
                return self._call(e)
            case ast.Subscript():
                return self._subscript(e)
        raise KernelTypeError("this is not a value", getattr(e, "pos", None))  # e.g. a bare slice

    def _name(self, e: ast.Name) -> Val:
        if e.id in self.env:
            return Val(self.env[e.id].node, e.pos, self.env[e.id].weak)
        if e.id in INDICES:
            return Val(build.index(e.id), e.pos)
        if e.id in self.symbols:
            self.used_symbols.add(e.id)
            return Val(build.dimsize(Dim.of(e.id)), e.pos)
        if e.id in ALL_FUNCTION_NAMES:
            kind = "a reduction" if e.id in REDUCTIONS and e.id not in SPECIAL_FUNCTIONS else "a function"
            raise KernelTypeError(f"'{e.id}' is {kind}, not a value", e.pos, hint=f"call it: {e.id}(...)")
        candidates = list(self.env) + list(self.symbols) + list(ALL_FUNCTION_NAMES) + list(INDICES)
        close = difflib.get_close_matches(e.id, candidates, n=1)
        hint = f"did you mean '{close[0]}'?" if close else "bind it first (name = ...) or declare it as a parameter"
        raise KernelTypeError(f"unknown name '{e.id}'", e.pos, hint=hint)

    def _unary(self, e: ast.Unary) -> Val:
        v = self._expr(e.operand)
        if e.op == "+":
            self._require_numeric(v, "unary +")
            return Val(v.node, e.pos, v.weak)
        if e.op == "not":
            return apply(Op.NOT, [v], e.pos, weak=False)
        return self._elementwise(Op.NEG, [v], e.pos)

    def _binary(self, e: ast.Binary) -> Val:
        op = _BINARY_OPS[e.op]
        vals = [self._expr(e.left), self._expr(e.right)]
        if op in (Op.AND, Op.OR):
            return apply(op, vals, e.pos, weak=False)
        if op is Op.POW:
            self._check_int_power(vals)
        return self._elementwise(op, vals, e.pos)

    def _check_int_power(self, vals: list[Val]) -> None:
        base, exp = vals
        if not base.dtype.is_float and exp.is_const and not exp.dtype.is_float and exp.node.arg < 0:  # type: ignore
            raise KernelTypeError("an integer to a negative power is not an integer", exp.pos,
                                  hint="make the base a float, e.g. 2.0 ** -1 or f64(n) ** -1")

    def _require_numeric(self, v: Val, what: str) -> None:
        if v.dtype.is_bool:
            raise KernelTypeError(f"{what} is not defined on bool values", v.pos, hint="cast first, e.g. i64(b)")

    def _elementwise(self, op: Op, vals: list[Val], pos: SourcePos) -> Val:
        """Promote operands by the weak-type rules, then apply the op's own dtype rule."""
        dtype, weak = common_dtype(vals)
        if op in COMPARE_OPS:
            return apply(op, coerce(vals, dtype), pos, weak=weak)
        if dtype.is_bool and op is not Op.WHERE:
            dtype = DType.I64
        if op in (Op.DIV, Op.ATAN2) or op in FLOAT_UNARY_OPS:
            dtype = float_of(dtype)
        return apply(op, coerce(vals, dtype), pos, weak=weak)

    def _call(self, e: ast.Call) -> Val:
        func = e.func
        if isinstance(func, ast.DTypeName):
            return self._cast(e, DType.from_name(func.name))
        if isinstance(func, ast.Subscript) and isinstance(func.value, ast.Name) and func.value.id in REDUCTIONS:
            return self._reduction(e, func)
        if not isinstance(func, ast.Name):
            raise KernelTypeError("only built-in functions can be called", func.pos,
                                  hint="functions are called by name, e.g. exp(x)")
        name, n = func.id, len(e.args)
        if name in self.env or name in self.params:
            raise KernelTypeError(f"'{name}' is a value, not a function", func.pos)
        if name in REDUCTIONS and name not in SPECIAL_FUNCTIONS:
            raise KernelTypeError(f"the reduction '{name}' needs an index", func.pos,
                                  hint=f"write {name}[j](...) or {name}[i](...)" +
                                  (f", with K: {name}[j, K](...)" if REDUCTIONS[name].takes_k else ""))
        if name in BINARY_FUNCTIONS and n == 2:
            vals = [self._expr(a) for a in e.args]
            if name == "pow":
                self._check_int_power(vals)
            return self._elementwise(BINARY_FUNCTIONS[name], vals, e.pos)
        if name in UNARY_FUNCTIONS:
            self._arity(e, name, (1,))
            return self._elementwise(UNARY_FUNCTIONS[name], [self._expr(e.args[0])], e.pos)
        if name in SPECIAL_FUNCTIONS:
            self._arity(e, name, SPECIAL_FUNCTIONS[name])
            return getattr(self, f"_fn_{name}")(e, [self._expr(a) for a in e.args])
        if name in BINARY_FUNCTIONS:
            self._arity(e, name, (2,))
        close = difflib.get_close_matches(name, list(ALL_FUNCTION_NAMES), n=1)
        raise KernelTypeError(f"unknown function '{name}'", func.pos,
                              hint=f"did you mean '{close[0]}'?" if close else "see LANGUAGE.md §5 for the functions")

    def _arity(self, e: ast.Call, name: str, counts: tuple[int, ...]) -> None:
        n = len(e.args)
        if counts and n not in counts:
            want = " or ".join(str(c) for c in counts)
            raise KernelTypeError(f"{name}(...) takes {want} argument(s), got {n}", e.pos)
        if not counts and n == 0:
            raise KernelTypeError(f"{name}(...) needs at least one argument", e.pos)

    def _cast(self, e: ast.Call, dtype: DType) -> Val:
        self._arity(e, str(dtype), (1,))
        v = self._expr(e.args[0])
        if v.weak and v.is_const and not (dtype.is_int and v.dtype.is_float):
            return Val(to_dtype(v, dtype), e.pos)
        if dtype.is_bool:
            zero = Val(build.const(0, v.dtype), e.pos)
            return apply(Op.NE, [v, zero], e.pos, weak=False)
        return Val(v.node if v.dtype == dtype else make(Op.CAST, [v], e.pos, arg=dtype), e.pos)

    # --- special functions ----------------------------------------------------------------------

    def _strong(self, v: Val) -> Val:
        return Val(v.node, v.pos, False)

    def _component(self, op: Op, v: Val, pos: SourcePos) -> Val:
        return Val(make(op, [self._strong(v)], pos), pos)

    def _fn_where(self, e: ast.Call, args: list[Val]) -> Val:
        cond, a, b = args
        dtype, weak = common_dtype([a, b])
        a, b = coerce([a, b], dtype)
        return Val(make(Op.WHERE, [cond, a, b], e.pos), e.pos, weak)

    def _fn_clamp(self, e: ast.Call, args: list[Val]) -> Val:
        x, lo, hi = args
        dtype, weak = common_dtype(args)
        dtype = DType.I64 if dtype.is_bool else dtype
        x, lo, hi = coerce(args, dtype)
        low = apply(Op.MAX, [x, lo], e.pos, weak)
        return apply(Op.MIN, [low, hi], e.pos, weak)

    def _fn_dot(self, e: ast.Call, args: list[Val]) -> Val:
        return self._component(Op.VSUM, self._elementwise(Op.MUL, args, e.pos), e.pos)

    def _fn_sqnorm(self, e: ast.Call, args: list[Val]) -> Val:
        return self._component(Op.VSUM, self._elementwise(Op.SQUARE, args, e.pos), e.pos)

    def _fn_norm(self, e: ast.Call, args: list[Val]) -> Val:
        return self._elementwise(Op.SQRT, [self._fn_sqnorm(e, args)], e.pos)

    def _fn_sqdist(self, e: ast.Call, args: list[Val]) -> Val:
        diff = self._elementwise(Op.SUB, args, e.pos)
        return self._component(Op.VSUM, self._elementwise(Op.SQUARE, [diff], e.pos), e.pos)

    def _fn_sum(self, e: ast.Call, args: list[Val]) -> Val:
        (v,) = args
        if v.dtype.is_bool or v.dtype is DType.I32:  # as NumPy: integer sums are i64
            v = Val(to_dtype(self._strong(v), DType.I64), v.pos)
        return self._component(Op.VSUM, v, e.pos)

    def _fn_mean(self, e: ast.Call, args: list[Val]) -> Val:
        (v,) = args
        out = float_of(v.dtype)
        acc = DType.F32 if out.is_narrow_float else out  # narrow floats: sum and divide in f32
        total = self._component(Op.VSUM, Val(to_dtype(self._strong(v), acc), v.pos), e.pos)
        count = Val(build.const(1, acc), e.pos) if v.node.dim == ONE else Val(
            make(Op.CAST, [Val(build.dimsize(v.node.dim), e.pos)], e.pos, arg=acc), e.pos)
        mean = Val(make(Op.DIV, [total, count], e.pos), e.pos)
        return Val(to_dtype(mean, out), e.pos)

    def _fn_max(self, e: ast.Call, args: list[Val]) -> Val:
        return self._component(Op.VMAX, args[0], e.pos)

    def _fn_min(self, e: ast.Call, args: list[Val]) -> Val:
        return self._component(Op.VMIN, args[0], e.pos)

    def _fn_argmax(self, e: ast.Call, args: list[Val]) -> Val:
        return self._component(Op.VARGMAX, args[0], e.pos)

    def _fn_argmin(self, e: ast.Call, args: list[Val]) -> Val:
        return self._component(Op.VARGMIN, args[0], e.pos)

    def _fn_logsumexp(self, e: ast.Call, args: list[Val]) -> Val:
        (v,) = args
        return self._component(Op.VLOGSUMEXP, Val(to_dtype(self._strong(v), float_of(v.dtype)), v.pos), e.pos)

    def _fn_normalize(self, e: ast.Call, args: list[Val]) -> Val:
        (v,) = args
        v = Val(to_dtype(self._strong(v), float_of(v.dtype)), v.pos)
        return Val(make(Op.DIV, [v, self._fn_norm(e, [v])], e.pos), e.pos)

    def _fn_softmax(self, e: ast.Call, args: list[Val]) -> Val:
        (v,) = args
        v = Val(to_dtype(self._strong(v), float_of(v.dtype)), v.pos)
        shifted = Val(make(Op.SUB, [v, self._component(Op.VMAX, v, e.pos)], e.pos), e.pos)
        ex = Val(make(Op.EXP, [shifted], e.pos), e.pos)
        return Val(make(Op.DIV, [ex, self._component(Op.VSUM, ex, e.pos)], e.pos), e.pos)

    def _fn_concat(self, e: ast.Call, args: list[Val]) -> Val:
        dtype, weak = common_dtype(args)
        return Val(make(Op.CONCAT, coerce(args, dtype), e.pos), e.pos, weak and len(args) == 1)

    # --- subscripts and reductions --------------------------------------------------------------

    def _subscript(self, e: ast.Subscript) -> Val:
        if isinstance(e.value, ast.Name) and e.value.id in REDUCTIONS and e.value.id not in self.env:
            raise KernelTypeError(f"{e.value.id}[...] needs an argument", e.pos,
                                  hint=f"write {e.value.id}[j](expression)")
        v = self._strong(self._expr(e.value))
        if len(e.items) != 1:
            raise KernelTypeError("a value takes one subscript: a[k] or a[k0:k1]", e.items[1].pos)
        item, dim = e.items[0], v.node.dim
        if isinstance(item, ast.SliceItem):
            start = self._static_index(item.start, dim) if item.start is not None else Dim(0)
            stop = self._static_index(item.stop, dim) if item.stop is not None else dim
            self._bound(Dim(0), start, f"the slice start {start} is negative", item.pos)
            self._bound(start + 1, stop, f"the slice {start}:{stop} is empty", item.pos)
            self._bound(stop, dim, f"the slice end {stop} is past the dimension {dim}", item.pos)
            return Val(make(Op.SLICE, [v], e.pos, arg=(start, stop)), e.pos)
        k = self._static_index(item, dim)
        self._bound(Dim(0), k, f"the component index {k} is negative", item.pos)
        self._bound(k + 1, dim, f"the component index {k} is out of range for dimension {dim}", item.pos)
        return Val(make(Op.ELEMENT, [v], e.pos, arg=k), e.pos)

    def _bound(self, low: Dim, high: Dim, message: str, pos: SourcePos) -> None:
        """Require low <= high: now if both are known, else at each call."""
        diff = high - low
        if diff.is_const:
            if diff.const < 0:
                raise KernelTypeError(message, pos)
            return
        self.checks.append(DimCheck(low, high, f"line {pos.line}, column {pos.column}: {message}"))

    def _static_index(self, e: ast.Expr, dim: Dim) -> Dim:
        """A component index: an integer expression of literals and dimension symbols; a negative
        literal counts from the end, as in Python."""
        value = self._static_dim(e)
        if value is None:
            raise KernelTypeError("a component index must be known before the call", e.pos,
                                  hint="use an integer literal or a dimension symbol, e.g. a[0] or a[D - 1]")
        if value.is_const and value.const < 0:
            return dim + value
        return value

    def _static_dim(self, e: ast.Expr) -> Dim | None:
        match e:
            case ast.Number() if e.is_int:
                return Dim(int(e.text))
            case ast.Name() if e.id in self.symbols and e.id not in self.env:
                self.used_symbols.add(e.id)
                return Dim.of(e.id)
            case ast.Unary(op="-"):
                inner = self._static_dim(e.operand)
                return -inner if inner is not None else None
            case ast.Binary(op="+" | "-"):
                a, b = self._static_dim(e.left), self._static_dim(e.right)
                if a is None or b is None:
                    return None
                return a + b if e.op == "+" else a - b
        return None

    def _reduction(self, e: ast.Call, head: ast.Subscript) -> Val:
        name = head.value.id  # type: ignore[union-attr]
        kind = REDUCTIONS[name]
        index, k = self._reduction_head(head, kind)
        if not e.args:
            raise KernelTypeError(f"{name}[{index}](...) needs an argument", e.pos)
        vals = [self._expr(a) for a in e.args]
        args = self._reduction_operands(kind, vals, e)
        # Reducing weak literals (sum[j](1)) keeps the result weak, so it adapts like a literal.
        weak = all(v.weak for v in vals) and not kind.gives_index
        return Val(make(Op.REDUCE, args, e.pos, arg=Reduction(kind, index, k)), e.pos, weak)

    def _reduction_head(self, head: ast.Subscript, kind: ReduceKind) -> tuple[str, Dim | None]:
        items = head.items
        first = items[0]
        if not isinstance(first, ast.Name) or first.id not in INDICES:
            raise KernelTypeError(f"a reduction runs over i or j, not {_describe(first)}", first.pos,
                                  hint=f"write {kind}[j](...) to reduce over j")
        if kind.takes_k:
            if len(items) != 2:
                raise KernelTypeError(f"{kind} needs K, the number of values to keep", head.pos,
                                      hint=f"write {kind}[{first.id}, K](...) with K a number or a symbol")
            return first.id, self._k(items[1])
        if len(items) != 1:
            raise KernelTypeError(f"{kind}[{first.id}] takes no K", items[1].pos,
                                  hint="only kmin, kmax, argkmin and argkmax take K")
        return first.id, None

    def _k(self, item: ast.Expr | ast.SliceItem) -> Dim:
        if isinstance(item, ast.Number) and item.is_int:
            if int(item.text) < 1:
                raise KernelTypeError("K must be at least 1", item.pos)
            return Dim(int(item.text))
        if isinstance(item, ast.Name) and item.id in self.symbols:
            self.used_symbols.add(item.id)
            return Dim.of(item.id)
        raise KernelTypeError("K must be an integer literal or a dimension symbol", item.pos,
                              hint="e.g. kmin[j, 5](d) or kmin[j, K](d) called with K=5")

    def _reduction_operands(self, kind: ReduceKind, args: list[Val], e: ast.Call) -> list[Val]:
        if kind in (ReduceKind.LOGSUMEXP, ReduceKind.SOFTMAX):
            dtype = float_of(common_dtype(args)[0])
            return coerce(args, dtype)
        args = [Val(to_dtype(a, a.dtype), a.pos) for a in args]  # a weak literal takes its default dtype
        if len(args) != 1:
            raise KernelTypeError(f"{kind}[...] takes one argument, got {len(args)}", e.pos)
        a = args[0]
        if kind is ReduceKind.SUM and (a.dtype.is_bool or a.dtype is DType.I32):
            return [Val(to_dtype(a, DType.I64), a.pos)]
        if kind is ReduceKind.MEAN:
            return [Val(to_dtype(a, float_of(a.dtype)), a.pos)]
        return [a]


def _describe(e: object) -> str:
    if isinstance(e, ast.Name):
        return f"'{e.id}'"
    if isinstance(e, ast.Number):
        return e.text
    return "this"


def _walk_expr(e: object):
    stack = [e]
    while stack:
        node = stack.pop()
        yield node
        for child in getattr(node, "__dict__", {}).values():
            if isinstance(child, tuple):
                stack.extend(c for c in child if hasattr(c, "pos"))
            elif hasattr(child, "pos") and not isinstance(child, SourcePos):
                stack.append(child)
