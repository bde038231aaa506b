"""Building IR nodes: the typing rule of every op, in one place.

The front end resolves weak literals and promotions and inserts explicit casts, so the rules
here are strict: operands of an arithmetic op have one dtype. A rule that fails raises
`IRTypingError`, which the front end turns into a positioned `KernelTypeError` and the verifier
into an internal error.
"""

from __future__ import annotations

from kernelc.ir.dims import ONE, Dim
from kernelc.ir.dtypes import DType
from kernelc.ir.nodes import Arg, Index, Node, Reduction, TensorType
from kernelc.ir.ops import (
    ARITH_OPS,
    COMPARE_OPS,
    COMPONENT_REDUCE_OPS,
    FLOAT_BINARY_OPS,
    FLOAT_UNARY_OPS,
    LOGIC_OPS,
    NUMERIC_UNARY_OPS,
    Op,
    ReduceKind,
)


class IRTypingError(Exception):
    """A typing rule failed. `operand` is the index of the operand to blame, when there is one."""

    def __init__(self, message: str, hint: str | None = None, operand: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.operand = operand


Signature = tuple[DType, Dim, frozenset[Index]]


def param(name: str, type_: TensorType) -> Node:
    return Node(Op.PARAM, type_.dtype, type_.value_dim, frozenset(type_.index), (), name)


def const(value: bool | int | float, dtype: DType) -> Node:
    if dtype.is_bool:
        value = bool(value)
    elif dtype.is_int:
        value = int(value)
    else:
        value = float(value)
    return Node(Op.CONST, dtype, ONE, frozenset(), (), value)


def index(name: Index) -> Node:
    return Node(Op.INDEX, DType.I64, ONE, frozenset({name}), (), name)


def dimsize(dim: Dim) -> Node:
    return Node(Op.DIMSIZE, DType.I64, ONE, frozenset(), (), dim)


def make(op: Op, *src: Node, arg: Arg = None) -> Node:
    """A new node of `op` over `src`, its dtype, dimension and index dependence inferred."""
    dtype, dim, deps = infer(op, src, arg)
    return Node(op, dtype, dim, deps, tuple(src), arg)


def infer(op: Op, src: tuple[Node, ...], arg: Arg) -> Signature:
    if op is Op.REDUCE:
        assert isinstance(arg, Reduction)
        return _infer_reduce(src, arg)
    deps = frozenset().union(*(s.deps for s in src))
    if op in COMPONENT_REDUCE_OPS or op in (Op.ELEMENT, Op.SLICE, Op.CONCAT):
        return _infer_vector(op, src, arg, deps)
    _arity(op, src)
    dim = _broadcast_dims(src)
    if op is Op.CAST:
        assert isinstance(arg, DType)
        return arg, dim, deps
    if op is Op.WHERE:
        _want(src[0].dtype.is_bool, "the condition of where(...) must be bool", 0,
              "compare values to get a bool, e.g. where(x > 0, a, b)")
        _same_dtype(src[1:], first=1)
        return src[1].dtype, dim, deps
    if op is Op.NOT or op in LOGIC_OPS:
        for k, s in enumerate(src):
            _want(s.dtype.is_bool, f"'{op}' needs bool operands, not {s.dtype}", k, "compare first, e.g. x != 0")
        return DType.BOOL, dim, deps
    _same_dtype(src)
    dt = src[0].dtype
    if op in COMPARE_OPS:
        return DType.BOOL, dim, deps
    _want(not dt.is_bool, f"'{op}' is not defined on bool values", 0, "cast to a number first, e.g. i64(b)")
    if op in FLOAT_UNARY_OPS or op in FLOAT_BINARY_OPS:
        _want(dt.is_float, f"'{op}' needs a float operand, not {dt}", 0, "cast first, e.g. f64(n)")
    assert op in NUMERIC_UNARY_OPS or op in ARITH_OPS or op in FLOAT_UNARY_OPS or op in FLOAT_BINARY_OPS, op
    return dt, dim, deps


_ARITY = {Op.WHERE: 3, Op.CAST: 1, Op.NOT: 1}


def _arity(op: Op, src: tuple[Node, ...]) -> None:
    if op in _ARITY:
        want = _ARITY[op]
    elif op in NUMERIC_UNARY_OPS or op in FLOAT_UNARY_OPS:
        want = 1
    else:
        want = 2
    if len(src) != want:
        raise IRTypingError(f"'{op}' takes {want} operand(s), got {len(src)}")


def _want(cond: bool, message: str, operand: int | None = None, hint: str | None = None) -> None:
    if not cond:
        raise IRTypingError(message, hint, operand)


def _same_dtype(src: tuple[Node, ...], first: int = 0) -> None:
    for k, s in enumerate(src[1:], start=first + 1):
        _want(s.dtype == src[0].dtype, f"operands have different dtypes: {src[0].dtype} and {s.dtype}", k,
              "cast one of them explicitly")


def _broadcast_dims(src: tuple[Node, ...]) -> Dim:
    """Elementwise ops take scalars and vectors of one dimension; a scalar broadcasts."""
    dim = ONE
    for k, s in enumerate(src):
        if s.dim == ONE:
            continue
        if dim != ONE and s.dim != dim:
            raise IRTypingError(
                f"vector dimensions differ: {dim} and {s.dim}", operand=k,
                hint="elementwise operations need vectors of the same dimension (a scalar broadcasts); "
                     "use the same dimension symbol, or slice with a[k0:k1]")
        dim = s.dim
    return dim


def _infer_vector(op: Op, src: tuple[Node, ...], arg: Arg, deps: frozenset[Index]) -> Signature:
    if op is Op.CONCAT:
        _want(len(src) >= 1, "concat(...) needs at least one operand")
        _same_dtype(src)
        total = Dim(0)
        for s in src:
            total = total + s.dim
        return src[0].dtype, total, deps
    _want(len(src) == 1, f"'{op}' takes one operand")
    (a,) = src
    if op is Op.ELEMENT:
        return a.dtype, ONE, deps
    if op is Op.SLICE:
        assert isinstance(arg, tuple)
        start, stop = arg
        return a.dtype, stop - start, deps
    _want(not a.dtype.is_bool or op in (Op.VMAX, Op.VMIN, Op.VARGMAX, Op.VARGMIN),
          f"'{op}' is not defined on bool values", 0, "cast first, e.g. i64(b)")
    if op in (Op.VARGMAX, Op.VARGMIN):
        return DType.I64, ONE, deps
    if op is Op.VLOGSUMEXP:
        _want(a.dtype.is_float, "logsumexp needs a float operand", 0, "cast first, e.g. f64(n)")
    return a.dtype, ONE, deps


def _infer_reduce(src: tuple[Node, ...], red: Reduction) -> Signature:
    kind = red.kind
    for k, s in enumerate(src):
        _want(not contains_reduction(s), "a reduction's argument may not itself contain a reduction", k,
              "reductions do not nest: compute the inner reduction in its own kernel and pass it in, "
              "or use softmax[j](s, v) / logsumexp[j](s, w) which fuse the usual two-pass patterns")
    deps = frozenset().union(*(s.deps for s in src)) - {red.index}
    n_args = 2 if kind is ReduceKind.SOFTMAX else (len(src) if kind is ReduceKind.LOGSUMEXP else 1)
    _want(len(src) == n_args and len(src) in (1, 2),
          f"{kind}[{red.index}] takes {'one or two arguments' if kind is ReduceKind.LOGSUMEXP else n_args} argument(s), "
          f"got {len(src)}")
    e = src[0]
    if kind in (ReduceKind.SUM, ReduceKind.MEAN, ReduceKind.MAX, ReduceKind.MIN):
        if kind is ReduceKind.MEAN:
            _want(e.dtype.is_float, "mean needs a float operand (the front end casts integers to f64)", 0)
        if kind is ReduceKind.SUM:
            _want(not e.dtype.is_bool, "sum needs a numeric operand (the front end casts bool to i64)", 0)
        return e.dtype, e.dim, deps
    _want(e.dim == ONE, f"{kind}[{red.index}](...) needs a scalar argument, this one has dimension {e.dim}", 0,
          "reduce one component, e.g. a[0], or combine the components first, e.g. sum(a)")
    if kind in (ReduceKind.ARGMAX, ReduceKind.ARGMIN):
        return DType.I64, ONE, deps
    if kind is ReduceKind.LOGSUMEXP or kind is ReduceKind.SOFTMAX:
        _want(e.dtype.is_float, f"{kind} needs float scores", 0, "cast first, e.g. f64(n)")
        if len(src) == 1:
            return e.dtype, ONE, deps
        _same_dtype(src)
        return e.dtype, src[1].dim, deps
    assert red.k is not None, "k-reductions carry K"
    return (DType.I64 if kind.gives_index else e.dtype), red.k, deps


def contains_reduction(node: Node) -> bool:
    """Whether a REDUCE node is reachable from `node` (memoized on the node)."""
    cached = node.__dict__.get("_has_reduce")
    if cached is None:
        cached = node.op is Op.REDUCE or any(contains_reduction(s) for s in node.src)
        object.__setattr__(node, "_has_reduce", cached)
    return cached
