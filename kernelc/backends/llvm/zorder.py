"""Points and rows in Z order for the nearest-neighbour filter (`nearest.py`): Morton codes of
the coordinates, quantized over the points' bounding box, and the points' arrays in that
order, built by generated code. NumPy took two dozen small calls per array for the same work,
some 1.5 ms of a 5 ms call at 1e4 x 1e4 on 2 threads.

The codes only place things: they decide which points seed a row and which rows and points
share a box, never a result. Rows and points are coded by the same function, so a row's code
finds its neighbours' place in the points' order.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from llvmlite import ir

from kernelc.backends.llvm import ops
from kernelc.backends.llvm.ops import F32, F64, I32, I64

MAX_BITS = 10  # bits per coordinate (fewer where D of them would pass 63)

_CODES = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_int64, *[ctypes.c_void_p] * 5)
_POINTS = ctypes.CFUNCTYPE(None, *[ctypes.c_void_p] * 3, *[ctypes.c_int64] * 4, *[ctypes.c_void_p] * 4)


def bits(dim: int) -> int:
    return min(MAX_BITS, 63 // dim)


def centred(b: ir.IRBuilder, value: ir.Value, centre: ir.Value) -> ir.Value:
    """An f32 coordinate less the f64 centre, rounded to f32: the filter's x~ and y~, which its
    error bound takes as computed alike for rows and points (`nearest`)."""
    return b.fptrunc(b.fsub(b.fpext(value, F64), centre), F32)


def spanned(b: ir.IRBuilder, math: ops.Math, sides: list[list[ir.Value]], first: ir.Value, last: ir.Value,
            coordinate, name: str) -> list[list[ir.Value]]:
    """The lows and the highs (f64) of coordinate(at, d) over at in [first, last), kept in the
    allocas `sides` (made in the entry block by the caller)."""
    for side in sides:
        for d in range(len(side)):
            b.store(ops.const(F64, float("nan")), side[d])

    def widen(at: ir.Value) -> None:
        for d in range(len(sides[0])):
            v = b.fpext(coordinate(at, d), F64)
            for side, extreme in zip(sides, ("minnum", "maxnum")):
                b.store(math.intrinsic(b, extreme, b.load(side[d]), v), side[d])

    ops.loop(b, first, last, name, widen)
    return [[b.load(s) for s in side] for side in sides]


def generate(dim: int, tag: str) -> str:
    """The module of two functions.

    `void codes(f32* p, i64 n, f64* centre, f32* lo, f32* scale, u64* spread, u64* out)`: the
    Morton codes of n points (n x D): per coordinate, c = p - centre rounded to f32 (the
    filter's centred coordinates), q = (c - lo) scale clamped to [0, 2^bits - 1], and q's bits
    moved D apart (the table `spread`) and d up.

    `void points(f32* y, i32* order, f64* centre, i64 m, i64 mp, i64 length, i64 block, f32*
    sorted, f32* columns, f32* ys, f64* boxes)`: the points in `order`, as given (`sorted`,
    M x D, and `columns`, D x length padded with 0), and as the filter reads them (`ys`: the D
    centred coordinates, then their squared norm summed in f32, each padded to mp with 0 and
    +inf), and per `block` points the lows, then the highs of their coordinates (f64)."""
    module = ir.Module(name="kernelc_zorder")
    f32p, f64p, i64p = F32.as_pointer(), F64.as_pointer(), I64.as_pointer()
    top = float(2 ** bits(dim) - 1)

    def c64(v: int) -> ir.Constant:
        return ir.Constant(I64, v)

    def coordinate(p: ir.Value, at: ir.Value, d: int) -> ir.Value:
        return b.load(b.gep(p, [b.add(b.mul(at, c64(dim)), c64(d))]))

    fn = ir.Function(module, ir.FunctionType(ir.VoidType(), [f32p, I64, f64p, f32p, f32p, i64p, i64p]),
                     f"kc_zcodes{tag}")
    p, n, centre, lo, scale, spread, out = fn.args
    b = ir.IRBuilder(fn.append_basic_block("entry"))

    def code(i: ir.Value) -> None:
        total = c64(0)
        for d in range(dim):
            q = b.fmul(b.fsub(centred(b, coordinate(p, i, d), b.load(b.gep(centre, [c64(d)]))),
                              b.load(b.gep(lo, [c64(d)]))),
                       b.load(b.gep(scale, [c64(d)])))
            q = b.select(b.fcmp_ordered(">", q, ops.const(F32, 0.0)), q, ops.const(F32, 0.0))
            q = b.select(b.fcmp_ordered("<", q, ops.const(F32, top)), q, ops.const(F32, top))
            total = b.or_(total, b.shl(b.load(b.gep(spread, [b.fptosi(q, I64)])), c64(d)))
        b.store(total, b.gep(out, [i]))

    ops.loop(b, c64(0), n, "point", code)
    b.ret_void()

    fn = ir.Function(module, ir.FunctionType(ir.VoidType(), [f32p, I32.as_pointer(), f64p, I64, I64, I64, I64,
                                                          f32p, f32p, f32p, f64p]), f"kc_zpoints{tag}")
    y, order, centre, m, mp, length, block, ordered, columns, ys, boxes = fn.args
    b = ir.IRBuilder(fn.append_basic_block("entry"))

    def place(at: ir.Value) -> None:
        j = b.sext(b.load(b.gep(order, [at])), I64)
        norm = ops.const(F32, 0.0)
        for d in range(dim):
            value = coordinate(y, j, d)
            b.store(value, b.gep(ordered, [b.add(b.mul(at, c64(dim)), c64(d))]))
            b.store(value, b.gep(columns, [b.add(b.mul(length, c64(d)), at)]))
            c = centred(b, value, b.load(b.gep(centre, [c64(d)])))
            b.store(c, b.gep(ys, [b.add(b.mul(mp, c64(d)), at)]))
            norm = b.fadd(norm, b.fmul(c, c))
        b.store(norm, b.gep(ys, [b.add(b.mul(mp, c64(dim)), at)]))

    def pad(at: ir.Value) -> None:
        for d in range(dim):
            b.store(ops.const(F32, 0.0), b.gep(ys, [b.add(b.mul(mp, c64(d)), at)]))
        b.store(ops.const(F32, float("inf")), b.gep(ys, [b.add(b.mul(mp, c64(dim)), at)]))

    ops.loop(b, c64(0), m, "place", place)
    ops.loop(b, m, mp, "pad", pad)

    def pad_columns(at: ir.Value) -> None:
        for d in range(dim):
            b.store(ops.const(F32, 0.0), b.gep(columns, [b.add(b.mul(length, c64(d)), at)]))

    ops.loop(b, m, length, "pad_columns", pad_columns)
    sides = [[b.alloca(F64) for _ in range(dim)] for _ in range(2)]
    math = ops.Math(module)

    def box(at: ir.Value) -> None:
        first = b.mul(at, block)
        last = b.add(first, block)
        last = b.select(b.icmp_signed("<", last, m), last, m)
        for s, side in enumerate(spanned(b, math, sides, first, last, lambda q, d: coordinate(ordered, q, d), "widen")):
            for d, value in enumerate(side):
                b.store(value, b.gep(boxes, [b.add(b.mul(at, c64(2 * dim)), c64(s * dim + d))]))

    ops.loop(b, c64(0), b.sdiv(b.add(m, b.sub(block, c64(1))), block), "box", box)
    b.ret_void()
    return str(module)


class Functions:
    """The compiled `generate` module of one dimension."""

    def __init__(self, dim: int) -> None:
        import llvmlite

        from kernelc import __version__
        from kernelc.backends.cache import make_key
        from kernelc.backends.llvm import codegen_version
        from kernelc.backends.llvm.jit import compile_ir, host_description

        key = make_key("llvm-zorder", codegen_version(), __version__, llvmlite.__version__, host_description(),
                       str((dim, bits(dim))))
        tag = "_" + key[:20]
        addresses, _ = compile_ir(lambda: generate(dim, tag), [f"kc_zcodes{tag}", f"kc_zpoints{tag}"], key)
        self.codes = _CODES(addresses[f"kc_zcodes{tag}"])
        self.points = _POINTS(addresses[f"kc_zpoints{tag}"])


@lru_cache(maxsize=16)
def functions(dim: int) -> Functions:
    return Functions(dim)


@lru_cache(maxsize=16)
def _spread(bits_: int, dim: int) -> np.ndarray:
    """Each value of `bits_` bits with its bits moved `dim` apart (one coordinate's part of a
    Morton code)."""
    values = np.arange(2 ** bits_, dtype=np.uint64)
    out = np.zeros(2 ** bits_, np.uint64)
    for bit in range(bits_):
        out |= ((values >> np.uint64(bit)) & np.uint64(1)) << np.uint64(bit * dim)
    return out


class ZOrder:
    """The quantization of one call's points (their box, from their columns D x M, less
    `centre`), then their order (`sort`): `order` (i32) and `sorted` (their codes in order)."""

    def __init__(self, columns: np.ndarray, centre: np.ndarray) -> None:
        dim = len(columns)
        # rounding is monotonic: the box of the centred coordinates, from the columns' extremes
        self.lo = (columns.min(1) - centre).astype(np.float32)
        hi = (columns.max(1) - centre).astype(np.float32)
        self.scale = np.float32(2 ** bits(dim) - 1) / np.maximum(hi - self.lo, np.float32(1e-30))
        self.centre = np.ascontiguousarray(centre, np.float64)
        self.spread = _spread(bits(dim), dim)
        self.functions = functions(dim)

    def codes(self, p: np.ndarray) -> np.ndarray:
        """The codes of points p (n x D, f32, C-contiguous)."""
        assert p.dtype == np.float32 and p.flags.c_contiguous and p.shape[1:] == self.lo.shape
        out = np.empty(len(p), np.uint64)
        arrays = (self.centre, self.lo, self.scale, self.spread, out)
        self.functions.codes(p.ctypes.data, len(p), *(a.ctypes.data for a in arrays))
        return out

    def sort(self, y: np.ndarray) -> None:
        codes = self.codes(y)
        order = np.argsort(codes)  # any order among equal codes will do
        self.order, self.sorted = order.astype(np.int32), np.take(codes, order)

    def points(self, y: np.ndarray, width: int, block: int, length: int) -> Points:
        """After `sort`: the points' arrays in Z order (`Points`), the filter's columns padded to
        a multiple of `width`, the indices and the original columns to `length` at least."""
        m, dim = y.shape
        assert y.dtype == np.float32 and y.flags.c_contiguous and len(self.order) == m
        mp = -(-m // width) * width
        length = max(length, mp)
        ordered, ys = np.empty((m, dim), np.float32), np.empty((dim + 1, mp), np.float32)
        columns, boxes = np.empty((dim, length), np.float32), np.empty((-(-m // block), 2, dim), np.float64)
        self.functions.points(y.ctypes.data, self.order.ctypes.data, self.centre.ctypes.data, m, mp, length, block,
                              ordered.ctypes.data, columns.ctypes.data, ys.ctypes.data, boxes.ctypes.data)
        indices = np.full(length, -1, np.int32)
        indices[:m] = self.order
        # an upper bound of max |y~|: the f32 squares' rounding (under D u) is far inside the 1e-6
        radius = float(np.sqrt(np.float64(ys[dim, :m].max()))) * (1 + 1e-6)
        return Points(ordered, columns, indices, ys, radius, boxes)


@dataclass
class Points:
    """One call's points in Z order, as the filter reads them."""

    ordered: np.ndarray  # as given, M x D (the rechecks' exact distances)
    columns: np.ndarray  # as given, D x length (the seeds' exact distances, a vector at a time)
    indices: np.ndarray  # their indices (i32), -1 past M
    ys: np.ndarray  # the centred columns, then the squared norms (+inf past M), D + 1 x mp
    radius: float  # at least max |y~|
    boxes: np.ndarray  # per block: lows, then highs (f64)
