"""The per-call copies of the tile path's inputs (amx.py), as native code: each f32 value split
into bf16 hi and lo and stored where the tile products read it, and counted if it is unsafe.

In NumPy the same copies took about 7 ns per element (splits, transposes and their
temporaries): at 1e4 x 1e4 with D = E = 64 that was 15% of the call, and with few rows and
many keys (32 x 1e6) most of it. Here each is one pass over the input, run over row ranges on
every thread. Layouts (bf16 elements, the output zero-filled beforehand; `amx.Attention`):

- queries, per 16 rows and 32-deep chunk of the split row [hi | lo] (each part Dp wide), one
  pair-interleaved B tile: element a of row i at ((i/16 chunks + a/32) 16 + (a%32)/2) 32 +
  2 (i%16) + a%2;
- keys, row-major split rows [hi | lo] of 2 Dp: element a of key j at 2 Dp j + a;
- values, per 32 keys and part (hi, lo), per 16 values one A tile of V^T: value e of key j at
  (((j/32) 2 + part) Ep/16 + e/16) 512 + (e%16) 32 + j%32.
"""

from __future__ import annotations

from llvmlite import ir

from kernelc.backends.llvm import ops
from kernelc.backends.llvm.ops import F32, I16, I64

KINDS = ("queries", "keys", "values")


def symbol(kind: str, tag: str) -> str:
    return f"kc_amx_pack_{kind}{tag}"


def add_functions(module: ir.Module, att, tag: str, safe_exponent: int) -> None:
    """`i64 f(f32* src, i64 r0, i64 r1, i16* out)` per input kind: rows [r0, r1) of the
    row-major input copied into `out`; returns how many of their values are unsafe (not 0 and
    of magnitude outside [2^-e, 2^e], or not finite), in which case the caller discards it."""
    for kind in KINDS if att.values is not None else KINDS[:2]:
        fnty = ir.FunctionType(I64, [F32.as_pointer(), I64, I64, I16.as_pointer()])
        fn = ir.Function(module, fnty, symbol(kind, tag))
        fn.attributes.add("nounwind")
        src, r0, r1, out = fn.args
        b = ir.IRBuilder(fn.append_basic_block("entry"))
        unsafe = b.alloca(I64)
        b.store(ir.Constant(I64, 0), unsafe)
        width = att.values_dim if kind == "values" else att.dim
        place = {"queries": _query_offsets, "keys": _key_offsets, "values": _value_offsets}[kind]

        def row(r: ir.Value, width=width, place=place) -> None:
            def element(c: ir.Value) -> None:
                value = b.load(b.gep(src, [b.add(b.mul(r, ir.Constant(I64, width)), c)]))
                magnitude = b.call(_fabs(module), [value])
                fine = b.and_(b.fcmp_ordered("<=", magnitude, ir.Constant(F32, 2.0 ** safe_exponent)),
                              b.or_(b.fcmp_ordered(">=", magnitude, ir.Constant(F32, 2.0 ** -safe_exponent)),
                                    b.fcmp_ordered("==", magnitude, ir.Constant(F32, 0.0))))
                b.store(b.add(b.load(unsafe), b.zext(b.not_(fine), I64)), unsafe)
                hi = ops.round_bf16(b, value)
                parts = [hi, ops.round_bf16(b, b.fsub(value, ops.bf16_to_f32(b, hi)))]
                for offset, part in place(b, att, r, c):
                    b.store(parts[part], b.gep(out, [offset]))

            ops.loop(b, ir.Constant(I64, 0), ir.Constant(I64, width), f"{kind}.c", element)

        ops.loop(b, r0, r1, f"{kind}.rows", row)
        b.ret(b.load(unsafe))


def _fabs(module: ir.Module) -> ir.Function:
    return module.globals.get("llvm.fabs.f32") or ir.Function(module, ir.FunctionType(F32, [F32]), "llvm.fabs.f32")


def _c(k: int) -> ir.Constant:
    return ir.Constant(I64, k)


def _query_offsets(b: ir.IRBuilder, att, i: ir.Value, c: ir.Value) -> list[tuple[ir.Value, int]]:
    """[hi | lo]: (offset, part) of element c of row i in its two places."""
    dp = att.padded_dim
    block = b.lshr(i, _c(4))
    lane = b.mul(b.and_(i, _c(15)), _c(2))
    found = []
    for shift, part in ((0, 0), (dp, 1)):
        a = b.add(c, _c(shift))
        tile = b.add(b.mul(block, _c(att.chunks)), b.lshr(a, _c(5)))
        pair = b.lshr(b.and_(a, _c(31)), _c(1))
        found.append((b.add(b.add(b.mul(b.add(b.mul(tile, _c(16)), pair), _c(32)), lane), b.and_(a, _c(1))), part))
    return found


def _key_offsets(b: ir.IRBuilder, att, j: ir.Value, c: ir.Value) -> list[tuple[ir.Value, int]]:
    """[hi | lo] rows of 2 Dp."""
    dp = att.padded_dim
    base = b.add(b.mul(j, _c(2 * dp)), c)
    return [(base, 0), (b.add(base, _c(dp)), 1)]


def _value_offsets(b: ir.IRBuilder, att, j: ir.Value, e: ir.Value) -> list[tuple[ir.Value, int]]:
    """hi and lo tiles of V^T per 32 keys and 16 values."""
    chunks = att.padded_values // 16
    key, block = b.and_(j, _c(31)), b.lshr(j, _c(5))
    inside = b.add(b.mul(b.and_(e, _c(15)), _c(32)), key)
    found = []
    for part in (0, 1):
        tile = b.add(b.mul(b.add(b.mul(block, _c(2)), _c(part)), _c(chunks)), b.lshr(e, _c(4)))
        found.append((b.add(b.mul(tile, _c(512)), inside), part))
    return found
