"""How each IR op is computed in LLVM IR, one scalar lane at a time (`llvm_ops`).

Narrow floats (f16, bf16) are computed in f32 and rounded only by an explicit cast; f32 in
f32 and f64 in f64. Every rule here matches `kernelc.ir.reference` (NaN propagation of min and
max, saturating float-to-int casts, round half to even).
"""

from __future__ import annotations

import math

import numpy as np
from llvmlite import ir

from kernelc.ir.dtypes import DType
from kernelc.ir.ops import Op

F32, F64, F16 = ir.FloatType(), ir.DoubleType(), ir.HalfType()
I1, I8, I16, I32, I64 = ir.IntType(1), ir.IntType(8), ir.IntType(16), ir.IntType(32), ir.IntType(64)


class UnsupportedKernel(Exception):
    """The LLVM backend cannot compile this kernel (yet); the message says what."""


def compute_type(dt: DType) -> ir.Type:
    """The LLVM type values of `dt` are computed in."""
    return {DType.BOOL: I1, DType.I32: I32, DType.I64: I64, DType.F16: F32, DType.BF16: F32, DType.F32: F32,
            DType.F64: F64}[dt]


def storage_type(dt: DType) -> ir.Type:
    return {DType.BOOL: I8, DType.I32: I32, DType.I64: I64, DType.F16: F16, DType.BF16: I16, DType.F32: F32,
            DType.F64: F64}[dt]


def _host_has_scalef() -> bool:
    """Whether LLVM lowers a vector ldexp to AVX-512's vscalef on this host (elsewhere it would
    become a libm call per lane)."""
    import llvmlite.binding as llvm

    features = llvm.get_host_cpu_features()
    return bool(features.get("avx512f")) and bool(features.get("avx512vl"))


_HAS_SCALEF = _host_has_scalef()


class _CallAttributes(ir.values.AttributeSet):
    """A call's string attributes (`"key"="value"`), which llvmlite's own call attributes refuse."""

    def add(self, name: str) -> None:
        set.add(self, name)


class Math:
    """Intrinsics and libm calls, declared once per module."""

    def __init__(self, module: ir.Module, approx: bool = False) -> None:
        self.module = module
        self.approx = approx  # schedule knob approx_math: the kernel runs under a tolerance
        # under a tolerance, a multiply and an add may fuse into one FMA (one rounding fewer)
        self.contract: tuple[str, ...] = ("contract",) if approx else ()
        # ... and products may regroup (x * a) * b as x * (a * b), so that factors computed
        # outside a loop fold into one (sums keep their order: regrouping them can cancel)
        self.product: tuple[str, ...] = ("contract", "reassoc", "nsz") if approx else ()
        self.vector_functions: list[ir.Function] = []  # libmvec variants declared (finish)

    def intrinsic(self, b: ir.IRBuilder, name: str, *args: ir.Value, flags: tuple[str, ...] = ()) -> ir.Value:
        ty = args[0].type
        suffix = "f32" if element_type(ty) == F32 else "f64"
        if isinstance(ty, ir.VectorType):
            suffix = f"v{ty.count}{suffix}"
        return b.call(self._declared(f"llvm.{name}.{suffix}", ty, [ty] * len(args)), list(args), fastmath=flags)

    def _declared(self, name: str, result: ir.Type, params: list[ir.Type]) -> ir.Function:
        """The module's function `name` (an intrinsic), declared on its first use."""
        return self.module.globals.get(name) or ir.Function(self.module, ir.FunctionType(result, params), name=name)

    def extreme(self, b: ir.IRBuilder, acc: ir.Value, v: ir.Value, largest: bool) -> ir.Value:
        """A running max/min (of a reduction): for floats `llvm.maximum`/`minimum`, which
        propagate NaN and which LLVM vectorizes as reductions (a compare-and-select recurrence
        keeps the whole loop scalar); nsz: either zero may come out of +0 against -0
        (docs/SEMANTICS.md; both are found by ==, and a block maximum adds 0.0)."""
        if isinstance(acc.type, ir.IntType):
            return select_max(b, acc, v, largest)
        return self.intrinsic(b, "maximum" if largest else "minimum", acc, v, flags=("nsz",))

    def libm(self, b: ir.IRBuilder, name: str, *args: ir.Value) -> ir.Value:
        """A call of libm's `name`, which the loop vectorizer may replace with libmvec's vector
        variants (the call's `vector-function-abi-variant`; the variants are kept in the module
        until then by `finish`). On vectors (code that builds them itself, the fused paths, which
        ask `libm_vectorizes` first): libmvec's variant of that many lanes, called directly."""
        from kernelc.backends.llvm.jit import vector_variants

        ty = args[0].type
        if isinstance(ty, ir.VectorType):
            symbol = dict(vector_variants(libm_symbol(name, ty), len(args))).get(ty.count)
            if symbol is None:
                raise UnsupportedKernel(f"no libmvec variant of {name} for {ty} on this host")
            fn = self.module.globals.get(symbol) or ir.Function(self.module, ir.FunctionType(ty, [ty] * len(args)),
                                                                name=symbol)
            return b.call(fn, list(args))
        libm_name = libm_symbol(name, ty)
        sym = f"kc_{libm_name}"
        fn = self.module.globals.get(sym)
        if fn is None:
            fn = ir.Function(self.module, ir.FunctionType(ty, [ty] * len(args)), name=sym)
            fn.attributes.add("nounwind")
            fn.attributes.add("readnone")
        call = b.call(fn, list(args))
        names = []
        for lanes, vector in vector_variants(libm_name, len(args)):
            vec_t = ir.VectorType(ty, lanes)
            if vector not in self.module.globals:
                self.vector_functions.append(ir.Function(self.module, ir.FunctionType(vec_t, [vec_t] * len(args)),
                                                         name=vector))
            names.append(f"{vector[:vector.index('_', 4)]}_{sym}({vector})")  # _ZGV<isa>N<lanes><v...>_<scalar>
        if names:
            call.attributes = _CallAttributes([f'"vector-function-abi-variant"="{",".join(names)}"'])
        return call

    def finish(self) -> None:
        """Keep the declared vector variants in the module until the loop vectorizer has run
        (`llvm.compiler.used`, as LLVM's own InjectTLIMappings does): unused declarations are
        dropped before it, and it then finds no variant to call."""
        if not self.vector_functions:
            return
        pointers = [f.bitcast(I8.as_pointer()) for f in self.vector_functions]
        array_t = ir.ArrayType(I8.as_pointer(), len(pointers))
        used = ir.GlobalVariable(self.module, array_t, "llvm.compiler.used")
        used.linkage, used.section, used.initializer = "appending", "llvm.metadata", ir.Constant(array_t, pointers)

    def ldexp(self, b: ir.IRBuilder, x: ir.Value, k: ir.Value) -> ir.Value:
        """x * 2**k, correctly rounded (overflow to inf, gradual underflow); scalars or vectors."""
        element, lanes = (x.type.element, x.type.count) if isinstance(x.type, ir.VectorType) else (x.type, 0)
        width = (k.type.element if lanes else k.type).width
        vec = f"v{lanes}" if lanes else ""
        name = f"llvm.ldexp.{vec}{'f32' if element == F32 else 'f64'}.{vec}i{width}"
        return b.call(self._declared(name, x.type, [x.type, k.type]), [x, k])

    def lrint(self, b: ir.IRBuilder, x: ir.Value, to: ir.IntType) -> ir.Value:
        """x rounded to an integer in the current rounding mode (to nearest even)."""
        return self._to_int(b, "lrint", x, to)

    def fptosi_sat(self, b: ir.IRBuilder, x: ir.Value, to: ir.IntType) -> ir.Value:
        return self._to_int(b, "fptosi.sat", x, to)

    def _to_int(self, b: ir.IRBuilder, intrinsic: str, x: ir.Value, to: ir.IntType) -> ir.Value:
        """llvm.<intrinsic> of an f32 or f64 x, or a vector of them, to integers of type `to`."""
        lanes = x.type.count if isinstance(x.type, ir.VectorType) else 0
        element, vec = (x.type.element, f"v{lanes}") if lanes else (x.type, "")
        name = f"llvm.{intrinsic}.{vec}i{to.width}.{vec}{'f32' if element == F32 else 'f64'}"
        return b.call(self._declared(name, ir.VectorType(to, lanes) if lanes else to, [x.type]), [x])


def libm_symbol(name: str, ty: ir.Type) -> str:
    """libm's name of function `name` for values of `ty` (sinf for f32, sin for f64)."""
    return f"{name}{'f' if element_type(ty) == F32 else ''}"


def libm_vectorizes(op: Op, lanes: int) -> bool:
    """Whether op, a libm function, has a libmvec variant of `lanes` f32 lanes on this host (or
    is not a libm call at all)."""
    from kernelc.backends.llvm.jit import vector_variants

    name = _LIBM.get(op)
    return name is None or lanes in dict(vector_variants(f"{name}f"))


def loop(b: ir.IRBuilder, start: ir.Value, stop: ir.Value, name: str, body, step: int = 1,
         interleave: int = 0) -> None:
    """for (k = start; k < stop; k += step) body(k) in the builder's function, with the builder
    left after the loop; `interleave` (if not 0) tells the loop vectorizer how many vectors to
    run side by side."""
    fn = b.function
    pre = b.block
    head = fn.append_basic_block(f"{name}.head")
    work = fn.append_basic_block(f"{name}.body")
    done = fn.append_basic_block(f"{name}.done")
    b.branch(head)
    b.position_at_end(head)
    k = b.phi(start.type, name=name)
    k.add_incoming(start, pre)
    b.cbranch(b.icmp_signed("<", k, stop), work, done)
    b.position_at_end(work)
    body(k)
    k.add_incoming(b.add(k, ir.Constant(start.type, step)), b.block)
    back = b.branch(head)
    if interleave:
        back.set_metadata("llvm.loop", loop_id(fn.module, ("llvm.loop.interleave.count", interleave)))
    b.position_at_end(done)


def each_set_bit(b: ir.IRBuilder, mask: ir.Value, name: str, body) -> None:
    """body(k) for each set bit k (an i64) of the integer `mask`, lowest first, with the builder
    left after the loop: a walk that branches per set bit (an entering score, a passing lane)
    rather than per bit."""
    fn, mask_t = b.function, mask.type
    cttz = fn.module.globals.get(f"llvm.cttz.i{mask_t.width}") or ir.Function(
        fn.module, ir.FunctionType(mask_t, [mask_t, I1]), name=f"llvm.cttz.i{mask_t.width}")
    pre = b.block
    head, work, done = (fn.append_basic_block(f"{name}.{part}") for part in ("bits", "bit", "done"))
    b.branch(head)
    b.position_at_end(head)
    left = b.phi(mask_t)
    left.add_incoming(mask, pre)
    b.cbranch(b.icmp_unsigned("!=", left, ir.Constant(mask_t, 0)), work, done)
    b.position_at_end(work)
    bit = b.call(cttz, [left, ir.Constant(I1, 1)])
    body(b.zext(bit, I64) if mask_t.width < 64 else b.trunc(bit, I64) if mask_t.width > 64 else bit)
    left.add_incoming(b.and_(left, b.sub(left, ir.Constant(mask_t, 1))), b.block)
    b.branch(head)
    b.position_at_end(done)


def loop_id(module: ir.Module, *properties: tuple[str, int]) -> ir.Value:
    """A loop's metadata (its first operand is itself, which makes it unique) with properties."""
    from llvmlite.ir.values import MDValue

    props = [module.add_metadata([ir.MetaDataString(module, name), ir.Constant(ir.IntType(32), value)])
             for name, value in properties]
    loop = MDValue(module, [None] + props, name=str(len(module.metadata)))
    loop.operands = (loop,) + loop.operands[1:]
    return loop


def entry_alloca(b: ir.IRBuilder, entry: ir.Block, ty: ir.Type, count: int | None = None,
                 align: int | None = None) -> ir.AllocaInstr:
    """Stack memory allocated at the start of the function's entry block (where LLVM promotes
    scalar slots to registers, and allocates arrays once), the builder left where it was."""
    with b.goto_block(entry):
        b.position_at_start(entry)
        slot = b.alloca(ty, size=count)
    if align is not None:
        slot.align = align
    return slot


def splat(b: ir.IRBuilder, x: ir.Value, lanes: int) -> ir.Value:
    """x in every lane of a vector."""
    vec = b.insert_element(ir.Constant(ir.VectorType(x.type, lanes), ir.Undefined), x, ir.Constant(I32, 0))
    return b.shuffle_vector(vec, ir.Constant(ir.VectorType(x.type, lanes), ir.Undefined),
                            ir.Constant(ir.VectorType(I32, lanes), [0] * lanes))


def element_type(ty: ir.Type) -> ir.Type:
    """The type of a vector's lanes, or the type itself for a scalar."""
    return ty.element if isinstance(ty, ir.VectorType) else ty


def like(ty: ir.Type, element: ir.Type) -> ir.Type:
    """`element`, or a vector of it with as many lanes as the vector type `ty`."""
    return ir.VectorType(element, ty.count) if isinstance(ty, ir.VectorType) else element


def _table(ty: ir.Type) -> str:
    """The key of the exp and log tables for f32 or f64 values (scalars or vectors: a vector of
    f32 once took the f64 table, a degree-13 polynomial with 64-bit exponents, in the fused
    attention's weights)."""
    return "f32" if element_type(ty) == F32 else "f64"


def const(ty: ir.Type, value: float | int | bool) -> ir.Constant:
    if isinstance(ty, ir.VectorType):  # the value in every lane
        return ir.Constant(ty, [const(ty.element, value)] * ty.count)
    if isinstance(ty, ir.IntType):
        return ir.Constant(ty, int(value))
    return ir.Constant(ty, float(value))


def is_nan(b: ir.IRBuilder, x: ir.Value) -> ir.Value:
    return b.fcmp_unordered("uno", x, x)


def select_max(b: ir.IRBuilder, x: ir.Value, y: ir.Value, largest: bool) -> ir.Value:
    """max/min that propagate NaN (as np.maximum / np.minimum)."""
    if isinstance(x.type, ir.IntType):
        pick_x = b.icmp_signed(">" if largest else "<", x, y)
        return b.select(pick_x, x, y)
    pick_x = b.fcmp_ordered(">" if largest else "<", x, y)
    pick_x = b.or_(pick_x, is_nan(b, x))
    return b.select(pick_x, x, y)


def _unary(b: ir.IRBuilder, m: Math, op: Op, x: ir.Value) -> ir.Value:
    ty = x.type
    is_int = isinstance(ty, ir.IntType)
    one, zero = const(ty, 1), const(ty, 0)
    if op is Op.NOT:
        return b.not_(x)
    if op is Op.NEG:
        return b.sub(zero, x) if is_int else b.fneg(x)
    if op is Op.SQUARE:
        return b.mul(x, x) if is_int else b.fmul(x, x, flags=m.contract)
    if op is Op.ABS:
        return b.select(b.icmp_signed("<", x, zero), b.sub(zero, x), x) if is_int else m.intrinsic(b, "fabs", x)
    if op is Op.SIGN:
        if is_int:
            return b.sub(b.zext(b.icmp_signed(">", x, zero), ty), b.zext(b.icmp_signed("<", x, zero), ty))
        pos = b.select(b.fcmp_ordered(">", x, zero), one, x)
        return b.select(b.fcmp_ordered("<", x, zero), const(ty, -1), pos)
    if op is Op.RELU:
        return select_max(b, x, zero, largest=True)
    if op is Op.STEP:
        ge = b.icmp_signed(">=", x, zero) if is_int else b.fcmp_ordered(">=", x, zero)
        return b.select(ge, one, zero)
    if op in (Op.FLOOR, Op.CEIL, Op.ROUND):
        return x if is_int else m.intrinsic(b, {Op.FLOOR: "floor", Op.CEIL: "ceil", Op.ROUND: "roundeven"}[op], x)
    if op is Op.EXP:
        return poly_exp(b, m, x)
    if op is Op.EXP2:
        return poly_exp(b, m, x, base2=True)
    if op is Op.LOG:
        return poly_log(b, m, x)
    if op is Op.LOG2:
        return b.fmul(poly_log(b, m, x), const(x.type, 1.4426950408889634))
    if op is Op.SQRT and m.approx and x.type == F32:
        return approx_sqrt(b, m, x)
    if op in _INTRINSICS:
        return m.intrinsic(b, _INTRINSICS[op], x)
    if op in _LIBM:
        return m.libm(b, _LIBM[op], x)
    if op is Op.RSQRT:
        return b.fdiv(one, m.intrinsic(b, "sqrt", x))
    if op is Op.INV:
        return b.fdiv(one, x)
    if op is Op.SIGMOID:
        return b.fdiv(one, b.fadd(one, poly_exp(b, m, b.fneg(x))))
    if op is Op.SOFTPLUS:  # max(x, 0) + log1p(exp(-|x|))
        tail = m.libm(b, "log1p", poly_exp(b, m, b.fneg(m.intrinsic(b, "fabs", x))))
        return b.fadd(select_max(b, x, zero, largest=True), tail)
    raise UnsupportedKernel(f"the llvm backend has no implementation of {op}")


_INTRINSICS = {Op.SQRT: "sqrt"}
_LIBM = {Op.SIN: "sin", Op.COS: "cos", Op.TAN: "tan", Op.ASIN: "asin", Op.ACOS: "acos", Op.ATAN: "atan",
         Op.SINH: "sinh", Op.COSH: "cosh", Op.TANH: "tanh", Op.EXPM1: "expm1", Op.LOG1P: "log1p", Op.ERF: "erf"}

_FCMP = {Op.LT: "<", Op.LE: "<=", Op.GT: ">", Op.GE: ">=", Op.EQ: "=="}
_ICMP = {Op.LT: "<", Op.LE: "<=", Op.GT: ">", Op.GE: ">=", Op.EQ: "==", Op.NE: "!="}


def approx_sqrt(b: ir.IRBuilder, m: Math, x: ir.Value) -> ir.Value:
    """f32 sqrt in a tolerance variant: x times LLVM's reciprocal-square-root estimate with one
    Newton step (`afn arcp`: vrsqrt14ps and four multiplies or FMAs per vector, where vsqrtps
    holds the divider for 12 cycles), about 2^-22 relative. The estimate fails at 0, below
    2^-126 and at +inf, so those lanes are set apart: 0 below 2^-126 (as the approximate exp
    gives 0 below 2^-125.5), +inf at +inf, NaN for negative and NaN inputs."""
    fast = ("afn", "arcp", "contract")
    root = b.fmul(x, b.fdiv(const(F32, 1.0), m.intrinsic(b, "sqrt", x, flags=fast), flags=fast))
    inf = const(F32, float("inf"))
    normal = b.and_(b.fcmp_ordered(">=", x, const(F32, 2.0 ** -126)), b.fcmp_ordered("<", x, inf))
    special = b.select(b.fcmp_ordered("==", x, inf), inf, const(F32, 0.0))
    special = b.select(b.fcmp_ordered(">=", x, const(F32, 0.0)), special, const(F32, float("nan")))
    return b.select(normal, root, special)


def _binary(b: ir.IRBuilder, m: Math, op: Op, x: ir.Value, y: ir.Value) -> ir.Value:
    is_int = isinstance(x.type, ir.IntType)
    if op in (Op.AND, Op.OR):
        return b.and_(x, y) if op is Op.AND else b.or_(x, y)
    if op in _ICMP:
        if is_int:
            return b.icmp_signed(_ICMP[op], x, y)
        return b.fcmp_unordered("!=", x, y) if op is Op.NE else b.fcmp_ordered(_FCMP[op], x, y)
    if op in (Op.MIN, Op.MAX):
        return select_max(b, x, y, largest=op is Op.MAX)
    if is_int:
        ints = {Op.ADD: b.add, Op.SUB: b.sub, Op.MUL: b.mul}
        if op in ints:
            return ints[op](x, y)
        if op is Op.POW:
            return int_pow(b, x, y)
        raise UnsupportedKernel(f"the llvm backend has no implementation of integer {op}")
    floats = {Op.ADD: b.fadd, Op.SUB: b.fsub, Op.MUL: b.fmul, Op.DIV: b.fdiv}
    if op in floats:
        return floats[op](x, y, flags=m.product if op is Op.MUL else m.contract)
    if op is Op.POW:
        n = _small_integer(y, element_type(x.type))
        return m.intrinsic(b, "pow", x, y) if n is None else integer_power(b, x, n)
    if op is Op.ATAN2:
        return m.libm(b, "atan2", x, y)
    raise UnsupportedKernel(f"the llvm backend has no implementation of {op}")


# f32 divisors c for which a / c runs without the divider (which Matern-5/2's `5 * r * r / 3` shared
# with its square root: 9-14% faster at 1e4), correctly rounded for every f32 a,
# as `tools/check_division.c` checks exhaustively (all 2**32 of them; the tests check a sample). The
# sequence is Markstein's correction of a * RN(1/c). Not every constant passes: 6, 10, 12, 14, 100
# and 1000 round some subnormal quotients the other way. Powers of 2 need none (LLVM multiplies).
EXACT_DIVISORS_F32 = frozenset({3.0, 5.0, 7.0, 9.0, 11.0, 13.0, 15.0})


def divide_by_constant(b: ir.IRBuilder, m: Math, a: ir.Value, c: float) -> ir.Value:
    """a / c, correctly rounded, for f32 a and a divisor c with |c| in EXACT_DIVISORS_F32: q0 = a y with
    y = RN(1/c), the remainder r = a - q0 c (exact, one FMA), then q0 + r y rounded once (Markstein).
    Where r is 0, q0 is exact and kept (so -0 / c stays -0); where r is NaN, a is +-inf or NaN and
    q0 = a y is already the quotient."""
    y = const(a.type, float(np.float32(1) / np.float32(c)))
    q0 = b.fmul(a, y)
    r = m.intrinsic(b, "fma", b.fneg(q0), const(a.type, c), a)
    return b.select(b.fcmp_ordered("!=", r, const(a.type, 0.0)), m.intrinsic(b, "fma", r, y, q0), q0)


def round_bf16(b: ir.IRBuilder, x: ir.Value) -> ir.Value:
    """f32 -> the bf16 bits (i16), rounding to nearest even; NaN stays a quiet NaN."""
    bits = b.bitcast(x, I32)
    lsb = b.and_(b.lshr(bits, const(I32, 16)), const(I32, 1))
    rounded = b.lshr(b.add(bits, b.add(const(I32, 0x7FFF), lsb)), const(I32, 16))
    quiet = b.or_(b.lshr(bits, const(I32, 16)), const(I32, 0x40))
    return b.trunc(b.select(is_nan(b, x), quiet, rounded), I16)


def bf16_to_f32(b: ir.IRBuilder, bits: ir.Value) -> ir.Value:
    return b.bitcast(b.shl(b.zext(bits, I32), const(I32, 16)), F32)


def cast(b: ir.IRBuilder, m: Math, x: ir.Value, src: DType, dst: DType) -> ir.Value:
    """Convert a computed value of `src` to the computed value of `dst` (narrow targets round)."""
    to = compute_type(dst)
    if dst.is_bool:
        if src.is_bool:
            return x
        zero = const(x.type, 0)
        return b.icmp_signed("!=", x, zero) if isinstance(x.type, ir.IntType) else b.fcmp_unordered("!=", x, zero)
    if dst.is_float:
        if src.is_bool:
            y = b.uitofp(x, to)
        elif src.is_int:
            y = b.sitofp(x, to)
        elif x.type == to:
            y = x
        elif to == F64:
            y = b.fpext(x, F64)
        else:
            y = b.fptrunc(x, F32)
        if dst is DType.F16:
            return b.fpext(b.fptrunc(y, F16), F32)
        if dst is DType.BF16:
            return bf16_to_f32(b, round_bf16(b, y))
        return y
    if src.is_bool:
        return b.zext(x, to)
    if src.is_int:
        if x.type.width == to.width:
            return x
        return b.sext(x, to) if x.type.width < to.width else b.trunc(x, to)
    return m.fptosi_sat(b, x, to)


def elementwise(b: ir.IRBuilder, m: Math, op: Op, args: list[ir.Value]) -> ir.Value:
    if op is Op.WHERE:
        return b.select(*args)
    if len(args) == 1:
        return _unary(b, m, op, args[0])
    return _binary(b, m, op, *args)


# --- a vectorizable exp ---------------------------------------------------------------------------
# llvm.exp becomes one libm call per lane, which stops the loop vectorizer. This is the classic
# reduction exp(x) = 2^k * exp(r), k = round(x / ln 2), r = x - k ln 2 (Cody-Waite, two parts),
# exp(r) by a polynomial on |r| <= ln(2)/2, and 2^k applied by vscalef or in two halves so that
# subnormal results come out right. f32: 1 + r + r^2 q(r), q of degree 4 fitted for the least
# maximal relative error (Lawson reweighting, f32 coefficients): 0.72 ulp in f32 arithmetic on
# the reduced range, as the degree-7 Taylor polynomial it replaced (0.76 ulp) with one FMA less;
# f64: Taylor, degree 13 (truncation below 0.1 ulp). Measured accuracy
# (tests/backends/test_llvm_backend.py): at most 1 ulp against a float64 reference for f32 and f64.

_EXP_F32_POLY = (1.0, 1.0, 0.4999999403953552, 0.1666652113199234, 0.04166838899254799, 0.008368710055947304,
                 0.001381461275741458)  # lowest degree first
_EXP = {
    # type: (low clamp, high clamp, ln2_hi, ln2_lo, coefficients, mantissa bits, exponent bias, int type)
    "f32": (-104.0, 89.0, 0.693359375, -2.12194440e-4, _EXP_F32_POLY, 23, 127, I32),
    "f64": (-746.0, 710.0, 6.93147180369123816490e-01, 1.90821492927058770002e-10,
            tuple(1 / math.factorial(n) for n in range(14)), 52, 1023, I64),
}


# 2**g on [-1/2, 1/2] as 1 + g q(g), q of degree 4 fitted for the least maximal relative error
# (weighted least squares, Lawson reweighting, f32 coefficients): 9.7e-8 before rounding, and
# exactly 1 at g = 0, so exp(0) = 1 and 2**k is exact.
_EXP2_APPROX = (1.0, 0.6931470036506653, 0.24022234976291656, 0.05550696328282356, 0.009671935811638832,
                0.0013276698300614953)


def approx_exp2(b: ir.IRBuilder, m: Math, t: ir.Value, nonpositive: bool = False) -> ir.Value:
    """2**t for f32 in 13 instructions, for kernels under a tolerance: t = k + g with k = round(t)
    (the 1.5 * 2**23 rounding trick, which keeps NaN a float), 2 q(g) by a degree-5 polynomial
    with doubled coefficients, times 2**(k - 1) built in the exponent bits. Clamping t to
    [-126.5, 128] makes 2**(k - 1) exactly 0 for k = -126 and 2**127 for k = 128, so results below
    2**-125.5 are 0 and above 2**128 inf with no compare or select, and no result is subnormal
    (subnormals cost a microcode assist each on many CPUs: a Gaussian KDE with 1.6% of its
    terms in that range ran 16x slower). NaN stays NaN; error about 2 ulp, plus for exp the
    rounding of x * log2(e) (relative |x| 2**-24)."""
    c = lambda v: const(t.type, v)  # noqa: E731 (t: f32 or a vector of f32)
    bits = like(t.type, I32)
    clamped = t if nonpositive else b.select(b.fcmp_ordered(">", t, c(128.0)), c(128.0), t)
    clamped = b.select(b.fcmp_ordered("<", clamped, c(-126.5)), c(-126.5), clamped)
    magic = 1.5 * 2 ** 23  # adding it rounds to an integer (half to even), kept in the low bits
    shifted = b.fadd(clamped, c(magic))
    g = b.fsub(clamped, b.fsub(shifted, c(magic)))  # both exact: |g| <= 1/2
    p = c(2 * _EXP2_APPROX[-1])
    for a in reversed(_EXP2_APPROX[:-1]):
        p = m.intrinsic(b, "fma", p, g, c(2 * a))
    magic_bits = int(np.float32(magic).view(np.int32))
    biased = b.add(b.bitcast(shifted, bits), const(bits, 126 - magic_bits))  # k - 1 + 127
    return b.fmul(p, b.bitcast(b.shl(biased, const(bits, 23)), t.type))


def poly_exp(b: ir.IRBuilder, m: Math, x: ir.Value, base2: bool = False, nonpositive: bool = False) -> ir.Value:
    """exp(x), or 2**x with `base2` (then k = round(x) and r = (x - k) ln 2, exact to rounding);
    `nonpositive`: the caller knows x <= 0 or NaN (no upper clamp)."""
    ty = x.type
    if m.approx and element_type(ty) == F32:
        return approx_exp2(b, m, x if base2 else b.fmul(x, const(ty, 1.4426950408889634), flags=m.product),
                           nonpositive)
    lo, hi, ln2_hi, ln2_lo, coeffs, mant, bias, ity = _EXP[_table(ty)]
    ity = like(ty, ity)
    c = lambda v: const(ty, v)  # noqa: E731
    if base2:
        lo, hi = lo * 1.4426950408889634, hi * 1.4426950408889634
    clamped = b.select(b.fcmp_ordered("<", x, c(lo)), c(lo), x)
    if not nonpositive:
        clamped = b.select(b.fcmp_ordered(">", clamped, c(hi)), c(hi), clamped)
    t = clamped if base2 else b.fmul(clamped, c(1.4426950408889634))
    if _HAS_SCALEF:
        # k = round(t) (half to even) as an integer by one vcvtps2dq, and back as a float for the
        # reduction; vscalef takes that same float (the backend's conversion for it is the same
        # node), so 2**k costs one instruction. lrint of a NaN is some integer, and p is NaN.
        ki = m.lrint(b, t, element_type(ity))
        k = b.sitofp(ki, ty)
    else:
        k = m.intrinsic(b, "roundeven", t)
        # k is clamped, so only a NaN x makes fptosi poison: frozen, it is some integer, and p (NaN
        # from r) times any power of 2 is NaN, with no compare and select for it
        ki = freeze(b, b.fptosi(k, ity))
    if base2:
        f = b.fsub(clamped, k)  # exact: |f| <= 1/2
        r = m.intrinsic(b, "fma", f, c(ln2_hi), b.fmul(f, c(ln2_lo)))
    else:
        r = m.intrinsic(b, "fma", k, c(-ln2_hi), clamped)
        r = m.intrinsic(b, "fma", k, c(-ln2_lo), r)
    p = c(coeffs[-1])
    for a in reversed(coeffs[:-1]):
        p = m.intrinsic(b, "fma", p, r, c(a))
    if _HAS_SCALEF:  # one vscalefps/vscalefpd per vector instead of two exponent-bit steps
        return m.ldexp(b, p, ki)
    k1 = b.ashr(ki, const(ity, 1))
    k2 = b.sub(ki, k1)
    two_k1 = b.bitcast(b.shl(b.add(k1, const(ity, bias)), const(ity, mant)), ty)
    two_k2 = b.bitcast(b.shl(b.add(k2, const(ity, bias)), const(ity, mant)), ty)
    return b.fmul(b.fmul(p, two_k1), two_k2)


def freeze(b: ir.IRBuilder, x: ir.Value) -> ir.Value:
    """LLVM's `freeze` (llvmlite's builder has none): a poison x becomes some fixed value."""
    inst = ir.instructions.Instruction(b.block, x.type, "freeze", [x])
    b._insert(inst)
    return inst


# `x ** n` with a constant integer n: llvm.pow is a libm call per lane, which keeps the pair
# loop scalar ((dot(x, y) + 1) ** 3 at D = 64 ran 2x slower than NumPy's chunks). An f32 x is
# raised in f64 by repeated squaring and rounded once: each f64 product of f32 values is off by
# at most 2^-53 relative (x^2 exactly), so the result is IEEE's x^n but for a double rounding
# within 2^-29 ulp of a tie, and f64's range holds x^n for |n| <= 8 (a result that underflows
# f64 underflows f32 too, 1 / 0 is inf where x^-n overflows f32). An f64 x uses repeated
# multiplication only for n = 3 and 4: two roundings at most 1 ulp and 1.5 ulp (3 eps); larger
# or negative n stay llvm.pow.
_F32_POWERS = frozenset(range(-8, 9)) - {0}
_F64_POWERS = frozenset({2, 3, 4})


def small_integer(n: float, element: ir.Type) -> int | None:
    """n as an int when `integer_power` raises an element of this type (f32, f64) to it."""
    if not math.isfinite(n) or n != int(n):
        return None
    return int(n) if int(n) in (_F32_POWERS if element == F32 else _F64_POWERS) else None


def _small_integer(y: ir.Value, element: ir.Type) -> int | None:
    """small_integer of y when y is a scalar float constant."""
    if not isinstance(y, ir.Constant) or isinstance(y.type, ir.VectorType) or not isinstance(y.constant, float):
        return None
    return small_integer(y.constant, element)


def integer_power(b: ir.IRBuilder, x: ir.Value, n: int) -> ir.Value:
    """x ** n for a small nonzero integer n (see _F32_POWERS): f32 in f64, f64 in f64."""
    wide = b.fpext(x, like(x.type, F64)) if element_type(x.type) == F32 else x
    result, square, e = None, wide, abs(n)
    while e:
        if e & 1:
            result = square if result is None else b.fmul(result, square)
        e >>= 1
        if e:
            square = b.fmul(square, square)
    if n < 0:
        result = b.fdiv(const(result.type, 1.0), result)
    return b.fptrunc(result, x.type) if result.type != x.type else result


def int_pow(b: ir.IRBuilder, base: ir.Value, exp: ir.Value) -> ir.Value:
    """Integer power by squaring, branch-free (so it vectorizes), wrapping like NumPy; a negative
    exponent truncates 1 / base**-exp toward zero (as kernelc.ir.reference._int_pow)."""
    ty = base.type
    one, zero = const(ty, 1), const(ty, 0)
    result, square, e = one, base, exp
    for _ in range(ty.width - 1):
        odd = b.icmp_signed("!=", b.and_(e, one), zero)
        result = b.select(odd, b.mul(result, square), result)
        square = b.mul(square, square)
        e = b.ashr(e, one)
    even = b.icmp_signed("==", b.and_(exp, one), zero)
    neg = b.select(b.icmp_signed("==", base, one), one,
                   b.select(b.icmp_signed("==", base, const(ty, -1)), b.select(even, one, const(ty, -1)), zero))
    return b.select(b.icmp_signed("<", exp, zero), neg, result)


# --- a vectorizable log -----------------------------------------------------------------------------
# x = 2^e * m with m in [sqrt(1/2), sqrt(2)), log(m) = 2 atanh(s), s = (m - 1) / (m + 1),
# |s| <= 0.1716, by its odd Taylor series (to s^9 for f32, s^21 for f64: truncation < 0.01 ulp).
# Subnormal inputs are scaled into the normal range first. Measured (tests/backends/
# test_llvm_backend.py): <= 2.7 ulp (f32), <= 3 ulp (f64), worst where e ln 2 and log(m) cancel.

_LOG = {
    # type: (int type, mantissa bits, bias, last odd power, subnormal scale exponent)
    "f32": (I32, 23, 127, 9, 24),
    "f64": (I64, 52, 1023, 21, 54),
}


def poly_log(b: ir.IRBuilder, m: Math, x: ir.Value) -> ir.Value:
    ty = x.type
    ity, mant, bias, last, sub = _LOG[_table(ty)]
    ity = like(ty, ity)
    c = lambda v: const(ty, v)  # noqa: E731
    tiny = b.fcmp_ordered("<", x, c(2.0 ** (1 - bias)))
    scaled = b.select(tiny, b.fmul(x, c(2.0 ** sub)), x)
    bits = b.bitcast(scaled, ity)
    e = b.sub(b.lshr(bits, const(ity, mant)), const(ity, bias))
    e = b.sub(e, b.select(tiny, const(ity, sub), const(ity, 0)))
    mbits = b.or_(b.and_(bits, const(ity, (1 << mant) - 1)), const(ity, bias << mant))
    mv = b.bitcast(mbits, ty)
    big = b.fcmp_ordered(">", mv, c(1.4142135623730951))
    mv = b.select(big, b.fmul(mv, c(0.5)), mv)
    e = b.add(e, b.select(big, const(ity, 1), const(ity, 0)))
    s = b.fdiv(b.fsub(mv, c(1.0)), b.fadd(mv, c(1.0)))
    z = b.fmul(s, s)
    p = c(2.0 / last)
    for n in range(last - 2, 0, -2):
        p = m.intrinsic(b, "fma", p, z, c(2.0 / n))
    ef = b.sitofp(e, ty)
    ln2_hi, ln2_lo = _EXP[_table(ty)][2:4]
    result = m.intrinsic(b, "fma", ef, c(ln2_hi), m.intrinsic(b, "fma", ef, c(ln2_lo), b.fmul(s, p)))
    result = b.select(b.fcmp_ordered("==", x, c(0.0)), c(float("-inf")), result)
    result = b.select(b.fcmp_ordered("==", x, c(float("inf"))), x, result)
    return b.select(b.fcmp_unordered("uno", x, x), x, b.select(b.fcmp_ordered("<", x, c(0.0)), c(float("nan")), result))
