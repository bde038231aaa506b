"""Binding a call's arguments to a kernel's parameters: every check happens here, before any
backend code runs (dtype, shape, N/M agreement, dimension symbols, K, strides, memory).

Arrays are taken without copying when their dtype and layout allow (NumPy arrays, objects with
the buffer protocol, `__array_interface__` or CPU DLPack); a safe dtype conversion or a
non-native byte order costs one copy; anything that cannot be read correctly is refused.
"""

from __future__ import annotations

import difflib
import math
import numbers
import sys
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from kernelc.backends.interface import Call, Sizes
from kernelc.errors import KernelArgumentError
from kernelc.ir.dtypes import SAFE_CASTS, DType, holds_floats
from kernelc.ir.nodes import Kernel, Param

_MAX_OUTPUT_BYTES = 1 << 40  # refuse to allocate absurd outputs (1 TiB) before trying


@dataclass(frozen=True)
class Bound:
    """A validated call before outputs exist: arrays by name and the sizes."""

    inputs: dict[str, np.ndarray]  # or device arrays (CuPy), checked alike, for backends that take them
    sizes: Sizes
    library: Any  # the array module of the inputs, to give outputs back in (None: NumPy)

    @property
    def on_device(self) -> bool:
        return any(_on_device(a) for a in self.inputs.values())

    def on_host(self) -> "Bound":
        """The same call with device arrays copied to NumPy (to sample rows for tuning)."""
        if not self.on_device:
            return self
        return Bound({k: a.get() if _on_device(a) else a for k, a in self.inputs.items()}, self.sizes, None)


def _on_device(array: Any) -> bool:
    return hasattr(array, "__cuda_array_interface__")


def bind(kernel: Kernel, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Bound:
    values = match_parameters(kernel, args, kwargs)
    dim_kwargs = {k: v for k, v in kwargs.items() if k in kernel.symbols and k not in values}
    sizes: dict[str, tuple[int, str]] = {}  # "N", "M" and symbols -> (value, who fixed it)
    inputs: dict[str, np.ndarray] = {}
    library = None
    for p in kernel.params:
        raw = values[p.name]
        library = library or _library_of(raw)
        arr = as_array(p, raw)
        _check_shape(p, arr, sizes)
        inputs[p.name] = arr
    for name, value in dim_kwargs.items():
        _bind_size(sizes, name, _dim_keyword(name, value), f"the keyword {name}=", name)
    missing = [s for s in kernel.symbols if s not in sizes]
    if missing:
        s = missing[0]
        raise KernelArgumentError(s, f"the dimension symbol {s} is not fixed by any argument",
                                  hint=f"pass it by keyword, e.g. {s}=10")
    n = sizes.get("N", (0, ""))[0]
    m = sizes.get("M", (0, ""))[0]
    dims = tuple((s, sizes[s][0]) for s in kernel.symbols)
    bindings = dict(dims)
    for check in kernel.checks:
        if not check.holds(bindings):
            shown = ", ".join(f"{k}={v}" for k, v in dims)
            raise KernelArgumentError(None, f"{check.message} (with {shown})",
                                      hint="pass arrays whose vector dimension is large enough")
    return Bound(inputs, Sizes(n, m, dims), library)


def match_parameters(kernel: Kernel, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> dict[str, Any]:
    names = [p.name for p in kernel.params]
    if len(args) > len(names):
        raise KernelArgumentError(None, f"{kernel.name}() takes {len(names)} argument(s) but {len(args)} were given",
                                  hint=f"its parameters are: {', '.join(names) or '(none)'}")
    values = dict(zip(names, args))
    for key, value in kwargs.items():
        if key in names:
            if key in values:
                raise KernelArgumentError(key, "given both by position and by keyword")
            values[key] = value
        elif key not in kernel.symbols:
            close = difflib.get_close_matches(key, names + list(kernel.symbols), n=1)
            raise KernelArgumentError(key, f"{kernel.name}() has no parameter or dimension symbol named '{key}'",
                                      hint=f"did you mean '{close[0]}'?" if close else
                                      f"its parameters are: {', '.join(names) or '(none)'}")
    missing = [n for n in names if n not in values]
    if missing:
        p = kernel.param(missing[0])
        raise KernelArgumentError(p.name, f"missing (declared as {p.type})")
    return values


def _library_of(raw: Any) -> Any:
    if isinstance(raw, (np.ndarray, np.generic, numbers.Number, list, tuple)):
        return None
    module = type(raw).__module__.split(".")[0]
    lib = sys.modules.get(module)
    return lib if lib is not None and hasattr(lib, "from_dlpack") and hasattr(raw, "__dlpack__") else None


def as_array(p: Param, raw: Any) -> np.ndarray:
    want = p.type.dtype
    if isinstance(raw, (bool, int, float, np.bool_, np.integer, np.floating)) and not isinstance(raw, np.ndarray):
        return _from_number(p, raw)
    if isinstance(raw, (list, tuple)):
        return _from_sequence(p, raw)
    arr = _to_numpy(p, raw)
    got = DType.from_numpy(arr.dtype)
    if got is None and arr.dtype.kind in "biuf" and arr.dtype.newbyteorder("=").isnative:
        got = DType.from_numpy(arr.dtype.newbyteorder("="))  # non-native byte order: one copy below
    if got is None:
        raise KernelArgumentError(p.name, f"expected a {want} array, got dtype {arr.dtype}",
                                  hint=f"convert it, e.g. x.astype({_np_name(want)})")
    if got != want:
        if (got, want) not in SAFE_CASTS:
            raise KernelArgumentError(p.name, f"expected {want}, got {got} (converting would lose information)",
                                      hint=f"convert it explicitly, e.g. x.astype({_np_name(want)})")
    if not arr.dtype.isnative or got != want:
        arr = arr.astype(want.numpy)
    return arr


def _np_name(dt: DType) -> str:
    return "ml_dtypes.bfloat16" if dt is DType.BF16 else f"np.{dt.numpy.name}"


def _to_numpy(p: Param, raw: Any) -> np.ndarray:
    """A NumPy view of `raw`; a GPU array (CuPy) is kept as it is: its dtype and shape are checked
    like a NumPy array's, and only a backend that accepts it (cuda) reads its memory."""
    if isinstance(raw, np.ndarray) or _on_device(raw):
        return raw
    try:
        if hasattr(raw, "__array_interface__") or hasattr(raw, "__array__"):
            return np.asarray(raw)
        if hasattr(raw, "__dlpack__"):
            return np.from_dlpack(raw)
        return np.asarray(memoryview(raw))
    except (TypeError, ValueError, BufferError, RuntimeError) as err:
        raise KernelArgumentError(p.name, f"cannot read a {type(raw).__name__} as an array: {err}",
                                  hint="pass a NumPy array (or an object with the buffer protocol, "
                                       "__array_interface__ or CPU DLPack)") from None


def _from_number(p: Param, raw: Any) -> np.ndarray:
    want = p.type.dtype
    if isinstance(raw, (float, np.floating)) and not want.is_float:
        if not (math.isfinite(raw) and float(raw).is_integer()):
            raise KernelArgumentError(p.name, f"expected {want}, got the float {raw!r}",
                                      hint=f"pass a whole number for an {want} parameter")
        raw = int(raw)
    if isinstance(raw, (int, np.integer)) and not isinstance(raw, (bool, np.bool_)):
        if want.is_bool:
            raise KernelArgumentError(p.name, f"expected bool, got the integer {raw!r}", hint="pass True or False")
        if want.is_int:
            info = np.iinfo(want.numpy)
            if not info.min <= int(raw) <= info.max:
                raise KernelArgumentError(p.name, f"{raw} does not fit in {want}")
    with np.errstate(over="ignore"):
        return np.asarray(raw, dtype=want.numpy)


def _from_sequence(p: Param, raw: list | tuple) -> np.ndarray:
    try:
        arr = np.asarray(raw)
    except (ValueError, TypeError) as err:
        raise KernelArgumentError(p.name, f"cannot read this {type(raw).__name__} as an array: {err}") from None
    want = p.type.dtype
    floats = holds_floats(arr.dtype)  # (a list of ml_dtypes bf16 scalars gives dtype kind "V")
    if not (floats or arr.dtype.kind in "biu") or (floats and not want.is_float) or \
            (arr.dtype.kind in "iu" and want.is_bool):
        raise KernelArgumentError(p.name, f"expected numbers for a {want} parameter, got {arr.dtype} values")
    return arr.astype(want.numpy)


def _bind_size(sizes: dict[str, tuple[int, str]], name: str, value: int, who: str, argument: str) -> None:
    if name in sizes and sizes[name][0] != value:
        first_value, first_who = sizes[name]
        label = {"N": "N (the size of i)", "M": "M (the size of j)"}.get(name, f"dimension {name}")
        raise KernelArgumentError(argument, f"{label} is {value} here but {first_value} from {first_who}",
                                  hint="every argument must agree on N, M and each dimension symbol")
    sizes.setdefault(name, (value, who))


def _check_shape(p: Param, arr: np.ndarray, sizes: dict[str, tuple[int, str]]) -> None:
    t = p.type
    want = [("N" if ix == "i" else "M") for ix in t.index]
    shape = arr.shape
    if t.dim is None and len(t.index) >= 1 and arr.ndim == len(t.index) + 1 and shape[-1] == 1:
        shape = shape[:-1]  # f32[i] accepts (N, 1)
    expected_ndim = len(t.index) + (1 if t.dim is not None else 0)
    if len(shape) != expected_ndim:
        expect = "(" + ", ".join(want + ([str(t.dim)] if t.dim is not None else [])) + ("," if expected_ndim == 1 else "") + ")"
        hint = "pass a number or a 0-d array" if expected_ndim == 0 else None
        raise KernelArgumentError(p.name, f"expected shape {expect} for {t}, got {arr.shape}", hint=hint)
    who = f"argument '{p.name}'"
    for name, size in zip(want, shape):
        _bind_size(sizes, name, int(size), who, p.name)
    if t.dim is not None:
        d = int(shape[-1])
        if d < 1:
            raise KernelArgumentError(p.name, f"the vector dimension {t.dim} is 0", hint="vectors have at least one component")
        if t.dim.is_const:
            if d != t.dim.const:
                raise KernelArgumentError(p.name, f"expected vectors of dimension {t.dim.const} for {t}, got {d} (shape {arr.shape})")
        elif len(t.dim.terms) == 1 and t.dim.terms[0][1] == 1 and t.dim.const == 0:
            _bind_size(sizes, t.dim.terms[0][0], d, who, p.name)


def _dim_keyword(name: str, value: Any) -> int:
    if isinstance(value, (bool, np.bool_)):
        raise KernelArgumentError(name, f"expected a whole number for {name}, got {value!r}")
    if isinstance(value, (float, np.floating)):
        if not math.isfinite(value) or not float(value).is_integer():
            raise KernelArgumentError(name, f"expected a whole number for {name}, got {value!r}")
        value = int(value)
    if not isinstance(value, (int, np.integer)):
        raise KernelArgumentError(name, f"expected a whole number for {name}, got {type(value).__name__}")
    if value < 1:
        raise KernelArgumentError(name, f"{name} must be at least 1, got {value}")
    if value > 1 << 40:
        raise KernelArgumentError(name, f"{name}={value} is too large")
    return int(value)


def output_shapes(kernel: Kernel, sizes: Sizes) -> list[tuple[int, ...]]:
    b = sizes.bindings
    shapes = []
    for out in kernel.outputs:
        shape = [sizes.n if ix == "i" else sizes.m for ix in out.type.index]
        if out.type.dim is not None:
            shape.append(out.type.dim.evaluate(b))
        shapes.append(tuple(shape))
    return shapes


def allocate(kernel: Kernel, bound: Bound) -> Call:
    outputs = []
    for out, shape in zip(kernel.outputs, output_shapes(kernel, bound.sizes)):
        nbytes = math.prod(shape) * out.type.dtype.numpy.itemsize
        if nbytes > _MAX_OUTPUT_BYTES:
            raise KernelArgumentError(None, f"the output {out.type} would take {nbytes / 2**30:.0f} GiB (shape {shape})",
                                      hint="reduce over an index instead of returning the full matrix")
        try:
            empty = bound.library.empty if bound.on_device else np.empty
            outputs.append(empty(shape, dtype=out.type.dtype.numpy))
        except MemoryError:
            raise KernelArgumentError(None, f"not enough memory for the output {out.type} of shape {shape}") from None
    return Call(bound.inputs, bound.sizes, outputs)
