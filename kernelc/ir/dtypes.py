"""Element types of the kernelc language and how they map to NumPy."""

from __future__ import annotations

import enum

import ml_dtypes
import numpy as np


class DType(enum.Enum):
    """A value's element type. Ordered by the promotion lattice within each kind."""

    BOOL = "bool"
    I32 = "i32"
    I64 = "i64"
    F16 = "f16"
    BF16 = "bf16"
    F32 = "f32"
    F64 = "f64"

    def __str__(self) -> str:
        return self.value

    @property
    def is_float(self) -> bool:
        return self in _FLOATS

    @property
    def is_int(self) -> bool:
        return self in (DType.I32, DType.I64)

    @property
    def is_bool(self) -> bool:
        return self is DType.BOOL

    @property
    def is_narrow_float(self) -> bool:
        return self in (DType.F16, DType.BF16)

    @property
    def numpy(self) -> np.dtype:
        return _TO_NUMPY[self]

    @property
    def bits(self) -> int:
        return _BITS[self]

    @classmethod
    def from_name(cls, name: str) -> "DType":
        return cls(name)

    @classmethod
    def from_numpy(cls, dtype: np.dtype) -> "DType | None":
        """The kernelc dtype of a NumPy dtype in native byte order, or None if there is none."""
        dtype = np.dtype(dtype)
        for dt, npdt in _TO_NUMPY.items():
            if dtype == npdt and dtype.isnative:
                return dt
        return None


_FLOATS = (DType.F16, DType.BF16, DType.F32, DType.F64)
_TO_NUMPY = {
    DType.BOOL: np.dtype(np.bool_),
    DType.I32: np.dtype(np.int32),
    DType.I64: np.dtype(np.int64),
    DType.F16: np.dtype(np.float16),
    DType.BF16: np.dtype(ml_dtypes.bfloat16),
    DType.F32: np.dtype(np.float32),
    DType.F64: np.dtype(np.float64),
}
_BITS = {DType.BOOL: 8, DType.I32: 32, DType.I64: 64, DType.F16: 16, DType.BF16: 16, DType.F32: 32, DType.F64: 64}

# Casts that lose nothing: an argument of the left dtype may be passed for a parameter of the right one.
SAFE_CASTS: frozenset[tuple[DType, DType]] = frozenset(
    {(DType.BOOL, t) for t in DType}
    | {(DType.I32, DType.I64), (DType.I32, DType.F64), (DType.I64, DType.F64)}
    | {(DType.F16, DType.F32), (DType.F16, DType.F64), (DType.BF16, DType.F32), (DType.BF16, DType.F64)}
    | {(DType.F32, DType.F64)}
    | {(t, t) for t in DType}
)


def promote(a: DType, b: DType) -> DType:
    """The common dtype of two strong dtypes, as NumPy 2 would choose it (bf16 as in JAX).

    bool meets anything as that thing; an integer meeting a float gives f64 (NumPy's rule that
    the float must hold every integer value); f16 meeting bf16 gives f32.
    """
    if a == b:
        return a
    if a.is_bool:
        return b
    if b.is_bool:
        return a
    if a.is_int and b.is_int:
        return DType.I64
    if a.is_int or b.is_int:
        return DType.F64
    if {a, b} == {DType.F16, DType.BF16}:
        return DType.F32
    return a if _FLOATS.index(a) > _FLOATS.index(b) else b


def holds_floats(dtype: np.dtype) -> bool:
    """Whether a NumPy array of `dtype` holds floats: NumPy's own (kind "f") or ml_dtypes'
    bfloat16, whose kind is "V" (a check of the kind alone takes bf16 results for integers)."""
    dtype = np.dtype(dtype)
    return dtype.kind == "f" or dtype == _TO_NUMPY[DType.BF16]


def float_of(dt: DType) -> DType:
    """The dtype a float-only operation gives on `dt`: floats stay, integers and bools become f64."""
    return dt if dt.is_float else DType.F64
