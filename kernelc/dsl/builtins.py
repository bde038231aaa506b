"""The built-in functions and reductions of the language, by name (LANGUAGE.md §5-6)."""

from __future__ import annotations

from kernelc.ir.ops import Op, ReduceKind

# Elementwise, one operand. The IR op decides the dtype rule (float-only or numeric-preserving).
UNARY_FUNCTIONS: dict[str, Op] = {
    "exp": Op.EXP, "exp2": Op.EXP2, "log": Op.LOG, "log2": Op.LOG2, "log1p": Op.LOG1P, "expm1": Op.EXPM1,
    "sqrt": Op.SQRT, "rsqrt": Op.RSQRT, "abs": Op.ABS, "sign": Op.SIGN, "floor": Op.FLOOR, "ceil": Op.CEIL,
    "round": Op.ROUND, "sin": Op.SIN, "cos": Op.COS, "tan": Op.TAN, "asin": Op.ASIN, "acos": Op.ACOS,
    "atan": Op.ATAN, "sinh": Op.SINH, "cosh": Op.COSH, "tanh": Op.TANH, "sigmoid": Op.SIGMOID,
    "relu": Op.RELU, "softplus": Op.SOFTPLUS, "erf": Op.ERF, "square": Op.SQUARE, "inv": Op.INV,
    "step": Op.STEP,
}

# Elementwise, two operands (`min`/`max` with one operand are component reductions instead).
BINARY_FUNCTIONS: dict[str, Op] = {"min": Op.MIN, "max": Op.MAX, "pow": Op.POW, "atan2": Op.ATAN2}

# Functions with their own lowering in lower.py, with the numbers of operands they take.
SPECIAL_FUNCTIONS: dict[str, tuple[int, ...]] = {
    "where": (3,), "clamp": (3,), "dot": (2,), "sqnorm": (1,), "norm": (1,), "sqdist": (2,),
    "sum": (1,), "mean": (1,), "max": (1, 2), "min": (1, 2), "logsumexp": (1,), "argmax": (1,),
    "argmin": (1,), "normalize": (1,), "softmax": (1,), "concat": (),
}

REDUCTIONS: dict[str, ReduceKind] = {kind.value: kind for kind in ReduceKind}

ALL_FUNCTION_NAMES: frozenset[str] = frozenset(UNARY_FUNCTIONS) | frozenset(BINARY_FUNCTIONS) | frozenset(
    SPECIAL_FUNCTIONS) | frozenset(REDUCTIONS)

RESERVED_NAMES: frozenset[str] = frozenset({"i", "j", "backend"})
