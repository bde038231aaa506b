"""The meaning of every elementwise and component op, as NumPy functions: the executable
definition that the NumPy backend runs and the front end's constant folder uses.

Values are NumPy arrays in their *compute* dtype: float64 for every float dtype (narrow values
are rounded only by an explicit CAST, as LANGUAGE.md §5 asks), the integer's own dtype (so i32
arithmetic wraps like i32), or bool. The vector axis is the last one.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np

from kernelc.ir.dtypes import DType
from kernelc.ir.monoids import scale_by_max
from kernelc.ir.ops import Op

Array = np.ndarray


def compute_dtype(dt: DType) -> np.dtype:
    """How values of `dt` are held while evaluating: every float in float64."""
    return np.dtype(np.float64) if dt.is_float else dt.numpy


def round_to(x: Array, dt: DType) -> Array:
    """Round a float64 array to the precision of float dtype `dt`, keeping float64 storage."""
    if dt is DType.F64:
        return x
    return x.astype(dt.numpy).astype(np.float64)


def cast(x: Array, target: DType) -> Array:
    """Explicit conversion. Float to integer truncates toward zero, saturates at the integer's
    range and maps NaN to 0 (LLVM's fptosi.sat); to bool is `!= 0` (NaN is true)."""
    if target.is_bool:
        return x != 0
    if target.is_float:
        return round_to(x.astype(np.float64), target)
    if x.dtype.kind != "f":
        return x.astype(target.numpy)
    info = np.iinfo(target.numpy)
    y = np.trunc(x)
    high, low, nan = y >= float(info.max), y <= float(info.min), np.isnan(y)
    safe = np.where(high | low | nan, 0.0, y).astype(target.numpy)
    return np.where(high, info.max, np.where(low, info.min, safe)).astype(target.numpy)


def _int_pow(base: Array, exp: Array) -> Array:
    """Integer power with wrap-around; a negative exponent truncates 1 / base**-exp toward zero."""
    r = np.power(base, np.maximum(exp, 0))
    neg = np.where(base == 1, 1, np.where(base == -1, np.where(exp % 2 == 0, 1, -1), 0)).astype(r.dtype)
    return np.where(exp < 0, neg, r)


def _pow(a: Array, b: Array) -> Array:
    return np.power(a, b) if a.dtype.kind == "f" else _int_pow(a, b)


def _sigmoid(x: Array) -> Array:
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


_erf = np.frompyfunc(math.erf, 1, 1)


def _int_identity_or(fn: Callable[[Array], Array]) -> Callable[[Array], Array]:
    return lambda x: fn(x) if x.dtype.kind == "f" else x


UNARY: dict[Op, Callable[[Array], Array]] = {
    Op.NEG: np.negative,
    Op.NOT: np.logical_not,
    Op.ABS: np.abs,
    Op.SIGN: np.sign,
    Op.SQUARE: np.square,
    Op.RELU: lambda x: np.maximum(x, np.zeros((), x.dtype)),
    Op.STEP: lambda x: (x >= 0).astype(x.dtype),
    Op.FLOOR: _int_identity_or(np.floor),
    Op.CEIL: _int_identity_or(np.ceil),
    Op.ROUND: _int_identity_or(np.rint),
    Op.EXP: np.exp,
    Op.EXP2: np.exp2,
    Op.EXPM1: np.expm1,
    Op.LOG: np.log,
    Op.LOG2: np.log2,
    Op.LOG1P: np.log1p,
    Op.SQRT: np.sqrt,
    Op.RSQRT: lambda x: 1.0 / np.sqrt(x),
    Op.INV: lambda x: 1.0 / x,
    Op.SIN: np.sin,
    Op.COS: np.cos,
    Op.TAN: np.tan,
    Op.ASIN: np.arcsin,
    Op.ACOS: np.arccos,
    Op.ATAN: np.arctan,
    Op.SINH: np.sinh,
    Op.COSH: np.cosh,
    Op.TANH: np.tanh,
    Op.SIGMOID: _sigmoid,
    Op.SOFTPLUS: lambda x: np.logaddexp(0.0, x),
    Op.ERF: lambda x: np.asarray(_erf(x), np.float64),  # (of a 0-d array frompyfunc gives a float)
}

BINARY: dict[Op, Callable[[Array, Array], Array]] = {
    Op.ADD: np.add,
    Op.SUB: np.subtract,
    Op.MUL: np.multiply,
    Op.DIV: np.divide,
    Op.POW: _pow,
    Op.MIN: np.minimum,
    Op.MAX: np.maximum,
    Op.ATAN2: np.arctan2,
    Op.LT: np.less,
    Op.LE: np.less_equal,
    Op.GT: np.greater,
    Op.GE: np.greater_equal,
    Op.EQ: np.equal,
    Op.NE: np.not_equal,
    Op.AND: np.logical_and,
    Op.OR: np.logical_or,
}


def _vlogsumexp(a: Array) -> Array:
    """logsumexp over the last axis with the rules of LANGUAGE.md §6 (NaN, inf, all -inf)."""
    m = a.max(axis=-1, keepdims=True)
    return m + np.log(scale_by_max(a, m).sum(axis=-1, keepdims=True))


COMPONENT: dict[Op, Callable[[Array], Array]] = {
    Op.VSUM: lambda a: a.sum(axis=-1, keepdims=True),
    Op.VMAX: lambda a: a.max(axis=-1, keepdims=True),
    Op.VMIN: lambda a: a.min(axis=-1, keepdims=True),
    Op.VARGMAX: lambda a: np.argmax(a, axis=-1, keepdims=True).astype(np.int64),
    Op.VARGMIN: lambda a: np.argmin(a, axis=-1, keepdims=True).astype(np.int64),
    Op.VLOGSUMEXP: _vlogsumexp,
}


def evaluate_elementwise(op: Op, operands: list[Array], arg: object = None) -> Array:
    """Apply one elementwise op to broadcastable arrays (errors such as 0/0 give NaN, silently)."""
    with np.errstate(all="ignore"):
        if op is Op.CAST:
            assert isinstance(arg, DType)
            return cast(operands[0], arg)
        if op is Op.WHERE:
            return np.where(*operands)
        if op in UNARY:
            return UNARY[op](operands[0])
        return BINARY[op](*operands)
