"""The operations of the formula IR, in groups. Every table keyed by `Op` must cover its group."""

from __future__ import annotations

import enum


class Op(enum.Enum):
    # --- leaves: read the outside world --------------------------------------------------------
    PARAM = "param"  # a kernel parameter; arg = its name
    CONST = "const"  # a literal; arg = Python bool / int / float
    INDEX = "index"  # the current i or j, as i64; arg = "i" | "j"
    DIMSIZE = "dimsize"  # the value of a dimension expression at the call, as i64; arg = Dim

    # --- elementwise, one operand ----------------------------------------------------------------
    NEG = "neg"
    NOT = "not"
    ABS = "abs"
    SIGN = "sign"
    SQUARE = "square"
    RELU = "relu"
    STEP = "step"
    FLOOR = "floor"
    CEIL = "ceil"
    ROUND = "round"
    EXP = "exp"
    EXP2 = "exp2"
    EXPM1 = "expm1"
    LOG = "log"
    LOG2 = "log2"
    LOG1P = "log1p"
    SQRT = "sqrt"
    RSQRT = "rsqrt"
    INV = "inv"
    SIN = "sin"
    COS = "cos"
    TAN = "tan"
    ASIN = "asin"
    ACOS = "acos"
    ATAN = "atan"
    SINH = "sinh"
    COSH = "cosh"
    TANH = "tanh"
    SIGMOID = "sigmoid"
    SOFTPLUS = "softplus"
    ERF = "erf"
    CAST = "cast"  # arg = the target DType

    # --- elementwise, two or three operands ------------------------------------------------------
    ADD = "add"
    SUB = "sub"
    MUL = "mul"
    DIV = "div"
    POW = "pow"
    MIN = "min"
    MAX = "max"
    ATAN2 = "atan2"
    LT = "lt"
    LE = "le"
    GT = "gt"
    GE = "ge"
    EQ = "eq"
    NE = "ne"
    AND = "and"
    OR = "or"
    WHERE = "where"

    # --- over the components of one vector value -------------------------------------------------
    VSUM = "vsum"
    VMAX = "vmax"
    VMIN = "vmin"
    VARGMAX = "vargmax"
    VARGMIN = "vargmin"
    VLOGSUMEXP = "vlogsumexp"
    ELEMENT = "element"  # arg = Dim, the component index
    SLICE = "slice"  # arg = (start Dim, stop Dim)
    CONCAT = "concat"

    # --- over an index: consumes i or j ----------------------------------------------------------
    REDUCE = "reduce"  # arg = Reduction

    def __str__(self) -> str:
        return self.value


LEAF_OPS = frozenset({Op.PARAM, Op.CONST, Op.INDEX, Op.DIMSIZE})
# Float in, float out; integer operands are cast to f64 by the front end first.
FLOAT_UNARY_OPS = frozenset(
    {Op.EXP, Op.EXP2, Op.EXPM1, Op.LOG, Op.LOG2, Op.LOG1P, Op.SQRT, Op.RSQRT, Op.INV, Op.SIN, Op.COS, Op.TAN,
     Op.ASIN, Op.ACOS, Op.ATAN, Op.SINH, Op.COSH, Op.TANH, Op.SIGMOID, Op.SOFTPLUS, Op.ERF}
)
# Keep the operand's numeric dtype (integers stay integers).
NUMERIC_UNARY_OPS = frozenset({Op.NEG, Op.ABS, Op.SIGN, Op.SQUARE, Op.RELU, Op.STEP, Op.FLOOR, Op.CEIL, Op.ROUND})
UNARY_OPS = FLOAT_UNARY_OPS | NUMERIC_UNARY_OPS | {Op.NOT, Op.CAST}
ARITH_OPS = frozenset({Op.ADD, Op.SUB, Op.MUL, Op.POW, Op.MIN, Op.MAX})
FLOAT_BINARY_OPS = frozenset({Op.DIV, Op.ATAN2})
COMPARE_OPS = frozenset({Op.LT, Op.LE, Op.GT, Op.GE, Op.EQ, Op.NE})
LOGIC_OPS = frozenset({Op.AND, Op.OR})
BINARY_OPS = ARITH_OPS | FLOAT_BINARY_OPS | COMPARE_OPS | LOGIC_OPS
ELEMENTWISE_OPS = UNARY_OPS | BINARY_OPS | {Op.WHERE}
COMPONENT_REDUCE_OPS = frozenset({Op.VSUM, Op.VMAX, Op.VMIN, Op.VARGMAX, Op.VARGMIN, Op.VLOGSUMEXP})
VECTOR_OPS = COMPONENT_REDUCE_OPS | {Op.ELEMENT, Op.SLICE, Op.CONCAT}


class ReduceKind(enum.Enum):
    """The reductions over an index of LANGUAGE.md §6; their monoids live in `ir/monoids.py`."""

    SUM = "sum"
    MEAN = "mean"
    MAX = "max"
    MIN = "min"
    ARGMAX = "argmax"
    ARGMIN = "argmin"
    LOGSUMEXP = "logsumexp"
    SOFTMAX = "softmax"
    KMIN = "kmin"
    KMAX = "kmax"
    ARGKMIN = "argkmin"
    ARGKMAX = "argkmax"

    def __str__(self) -> str:
        return self.value

    @property
    def takes_k(self) -> bool:
        return self in (ReduceKind.KMIN, ReduceKind.KMAX, ReduceKind.ARGKMIN, ReduceKind.ARGKMAX)

    @property
    def gives_index(self) -> bool:
        return self in (ReduceKind.ARGMAX, ReduceKind.ARGMIN, ReduceKind.ARGKMIN, ReduceKind.ARGKMAX)
