"""Softmax attention on the CPU's matrix unit (Intel AMX, bf16 tiles), for kernels under a tolerance.

`softmax[j](dot(x, y) * c, v)` costs 2 (D + E) flops per pair, all of them in two matrix
products: scores S = X Y^T and numerators P V. With f32 FMAs this is bound by the vector unit
(D = E = 64: at most about 1.3e9 pairs/s on 2 AVX-512 cores, 0.35-0.67e9 reached); an AMX tile
unit multiplies bf16 matrices 16 x 32 by 32 x 16 per instruction, about 30x the f32 FMA rate of
a core.

bf16 keeps 8 bits of a float's 24, so each f32 operand is split as a = a_hi + a_lo (both bf16,
16 bits together) and a product as a_hi b_hi + a_hi b_lo + a_lo b_hi ("bf16x3"): relative error
about 2^-16 per product, summed in f32 by the tile unit; a score is off by about 2^-16 of
sum |x_d y_d| |c|. That is a precision variant, so the kernel runs this way only under a
`tolerance=` (schedule knob `approx_math`, and `matrix_unit` not turned off), and the autotuner
and the variant choice measure the error like any other variant's. Inputs the split cannot
represent to that accuracy (not finite, or magnitudes outside [2^-40, 2^40], where bf16 parts of
products would underflow or overflow) run the f32 code. f16 and bf16 inputs are split as their f32 values
(exactly: a bf16 value's lo part is 0), and a narrow output is the f32 result rounded.

Layout (`AttentionExecutable.prepare`, per call, by native code from amx_pack.py: O((N + M)(D +
E)) against the products' O(N M (D + E))): X's and Y's split rows are [hi | lo], each part padded
to Dp (a multiple of 32), and the bf16x3 dot product is the sum of three products of parts
(`PRODUCTS`); X is cut into pair-interleaved ("VNNI") B tiles per 16 rows, V into V^T A tiles
per 32 keys; everything is zero-padded (rows to a multiple of 32, keys of 32) and 64-byte
aligned. (Rows [hi | hi | lo] of X against [hi | lo | hi] of Y, one product of length 3 Dp, took
half as much again of copies and a third more tile loads: D = E = 64 at 4096 x 4096 on one
thread 19.9-20.7 against 18.2-18.6 ms, copies 3.9 against 3.3 ms; at 1e4 x 1e4 on 2 threads
52-55 against 48 ms.)

The generated function walks the keys in tiles that stay in L2 (`tile_keys`), and for each
block of 32 rows and 32 keys: 2 x 2 x (3 Dp / 32) tile products give the scores, transposed
(keys by rows); vector code across the rows turns them into weights 2^(u - reference) (the
online softmax of `kernelc.ir.monoids` with a lazily moved reference maximum), adds them to the
rows' sums and splits them into bf16 hi and lo; 3 x 2 x Ep / 16 tile products add V^T P^T to
the accumulators, which stay in tile layout. The next block's score products are issued among
the vector code (software pipelining). The outputs are the accumulators divided by the sums.
With a causal mask, blocks past the diagonal are skipped.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Any

import numpy as np
from llvmlite import ir

from kernelc.backends.llvm import amx_pack, ops
from kernelc.backends.llvm.ops import F32, I16, I32, I64
from kernelc.backends.llvm.patterns import F32_AND_NARROW, param_of, row_and_column, widened
from kernelc.backends.threads import map_jobs
from kernelc.ir.dtypes import DType
from kernelc.ir.nodes import Kernel, Node, walk
from kernelc.ir.ops import ELEMENTWISE_OPS, Op, ReduceKind

ROWS = 16  # rows of a tile
BLOCK_ROWS = 32  # rows of a block of queries: two row tiles (generate)
KEYS = 32  # keys per block: two 16-key score tiles, one 32-deep numerator product
TILE_BYTES = 64  # bytes per tile row: 32 bf16 or 16 f32
HEADROOM = 8.0  # log2 units a block's maximum may pass a row's reference before it moves (weights)
# the products of parts (X's, Y's) that a score sums, grouped by X's part (its tiles loaded once per
# group), the small ones first: lo hi, hi lo, hi hi (lo lo, about 2^-16 of hi hi, is left out)
PRODUCTS = ((1, (0,)), (0, (1, 0)))
ALIGN = 64  # tile rows are read from addresses that are multiples of this (_aligned)
TILE_KEYS_BYTES = 640 << 10  # keys per L2 tile: their split Y and V take about this many bytes
SAFE_EXPONENT = 40  # inputs with magnitudes in [2^-40, 2^40] (or 0) take the matrix unit
_ARCH_REQ_XCOMP_PERM, _XFEATURE_XTILEDATA, _SYS_ARCH_PRCTL = 0x1023, 18, 158


@dataclass(frozen=True)
class Attention:
    """A kernel whose one output is softmax[j](dot(x, y) * scale, v), x: <D>[i], y: <D>[j],
    v: <E>[j] (or [j]) of f32, f16 or bf16, or logsumexp[j](dot(x, y) * scale) (`values` None, E = 0):
    `scale` a value computed once per call (constants, dimensions, scalar parameters; None: 1),
    `invert` divides by it instead, `negate` flips the scores' sign, and `causal` masks keys
    after the row (`where(j <= i, s, -inf)`). With `extreme` (only the fused f32 path's), the
    reduction of the scores is that one instead: max, min, argmax or argmin, or the K best."""

    queries: str
    keys: str
    values: str | None
    dim: int
    values_dim: int
    scale: Node | None = None
    invert: bool = False
    negate: bool = False
    causal: bool = False
    bindings: tuple[tuple[str, int], ...] = ()
    extreme: ReduceKind | None = None
    k: int = 0  # K of a K-best extreme (kmax, kmin, argkmax, argkmin)

    @property
    def what(self) -> str:
        """What the kernel computes, in words (the executables' descriptions)."""
        kind = f"{self.extreme.name.lower()} of dot products" if self.extreme is not None else \
            "softmax attention" if self.values is not None else "logsumexp of dot products"
        return kind + (" (causal)" if self.causal else "")

    @property
    def padded_dim(self) -> int:
        return -(-self.dim // KEYS) * KEYS

    @property
    def padded_values(self) -> int:
        return -(-self.values_dim // ROWS) * ROWS

    @property
    def chunks(self) -> int:
        """32-deep tiles of a row tile's split queries (and of 16 keys'): the two parts of Dp."""
        return 2 * self.padded_dim // KEYS

    @property
    def tile_keys(self) -> int:
        per_key = 2 * 2 * self.padded_dim + 2 * 2 * self.padded_values
        return max(KEYS, TILE_KEYS_BYTES // per_key // KEYS * KEYS)


VECTOR_BITS = 512  # the vector code between tile products (AMX hosts have AVX-512)
MIN_DIM = 16  # shorter dot products waste most of a 32-deep tile product
MIN_ROWS = 16  # fewer rows run the f32 code (a 32-row block at 1 ns per pair against 1.65 on 2 threads)


def match(kernel: Kernel, bindings: dict[str, int]) -> Attention | None:
    """The attention (or log-sum-exp of scores) this kernel computes, if it is one the matrix
    unit (and the fused f32 path) runs: inputs f32, f16 or bf16 (computed in f32), seen through
    the promotion casts to f32 of mixed ones."""
    if len(kernel.outputs) != 1:
        return None
    out = kernel.outputs[0]
    red = out.value
    if out.type.index != ("i",) or red.op is not Op.REDUCE or red.arg.index != "j" or red.dtype not in F32_AND_NARROW:
        return None
    params = {p.name: p for p in kernel.params}
    values = None
    if red.arg.kind is ReduceKind.SOFTMAX and len(red.src) == 2:
        values = param_of(red.src[1], params, ("j",), F32_AND_NARROW)
        if values is None:
            return None
    elif red.arg.kind is not ReduceKind.LOGSUMEXP or len(red.src) != 1:
        return None
    scores = match_scores(red.src[0], params, bindings)
    if scores is None:
        return None
    return replace(scores, values=values.arg if values is not None else None,
                   values_dim=values.dim.evaluate(bindings) if values is not None else 0)


def match_scores(score: Node, params: dict, bindings: dict[str, int]) -> Attention | None:
    """The scores `c * dot(x, y)` of an attention (seen through promotion casts, a negation, a
    division by c and a causal mask), as an Attention without values, or None."""
    score = widened(score)  # (f16 and bf16 scores are f32 values: widening them changes nothing)
    causal = score.op is Op.WHERE and _is_causal(score.src[0]) and score.src[2].op is Op.CONST \
        and score.src[2].arg == float("-inf")
    if causal:
        score = widened(score.src[1])
    scale, invert, negate = None, False, score.op is Op.NEG
    if negate:
        score = widened(score.src[0])
    if score.op in (Op.MUL, Op.DIV):
        invert = score.op is Op.DIV
        score, scale = (widened(n) for n in score.src)
        if score.op is not Op.VSUM and not invert:  # c * dot(x, y)
            score, scale = scale, score
        if not _per_call(scale, params):
            return None
    if score.op is not Op.VSUM or score.src[0].op is not Op.MUL:
        return None
    operands = row_and_column(*score.src[0].src, params, F32_AND_NARROW)
    if operands is None:
        return None
    a, b = operands
    dim = a.dim.evaluate(bindings)
    if dim < MIN_DIM:
        return None
    return Attention(a.arg, b.arg, None, dim, 0, scale, invert, negate, causal, tuple(sorted(bindings.items())))


def _is_causal(cond: Node) -> bool:
    """j <= i (or i >= j): each row's keys up to its own index."""
    index = [n.arg if n.op is Op.INDEX else None for n in cond.src]
    return (cond.op is Op.LE and index == ["j", "i"]) or (cond.op is Op.GE and index == ["i", "j"])


def _per_call(node: Node, params: dict) -> bool:
    """Whether `node` is one float computed once per call from constants, dimensions and scalar
    parameters by elementwise operations (the scores' factor, `factor`)."""
    if node.deps or not node.dtype.is_float:
        return False
    for n in walk([node]):
        if n.op is Op.PARAM:
            if params[n.arg].type.index or params[n.arg].type.dim is not None:
                return False
        elif n.op not in (Op.CONST, Op.DIMSIZE) and n.op not in ELEMENTWISE_OPS:
            return False
    return True


def per_call_values(nodes: list[Node], inputs: dict[str, np.ndarray], bindings: dict[str, int]) -> dict[Node, Any]:
    """The values of per-call subexpressions (`_per_call`) and of their parts for this call,
    computed as the row functions compute them (f16 and bf16 arithmetic in f32); also of one
    side's expressions (norm(x): arrays over the rows, a component sum added in f64 and rounded
    once, which a sum's unspecified order allows)."""
    from kernelc.ir.reference import evaluate_elementwise, round_to

    values: dict[Node, Any] = {}
    for n in walk(nodes):
        held = DType.F32 if n.dtype.is_narrow_float else n.dtype  # how the row functions hold it
        if n.op is Op.CONST:
            value = np.asarray(n.arg, n.dtype.numpy).astype(held.numpy)
        elif n.op is Op.DIMSIZE:
            value = np.asarray(n.arg.evaluate(bindings), np.int64)
        elif n.op is Op.PARAM:
            value = np.asarray(inputs[n.arg], n.dtype.numpy).astype(held.numpy)
        elif n.op is Op.VSUM:
            value = round_to(np.asarray(values[n.src[0]], np.float64).sum(-1), held)
        else:
            value = round_to(evaluate_elementwise(n.op, [values[s] for s in n.src], n.arg), held)
        values[n] = value
    return values


def factor(att: Attention, inputs: dict[str, np.ndarray]) -> float | None:
    """The scores' factor for this call (None: not a finite nonzero f32), computed as the row
    functions compute the kernel's scalar subexpression (f16 and bf16 arithmetic in f32)."""
    values = per_call_values([att.scale] if att.scale is not None else [], inputs, dict(att.bindings))
    with np.errstate(all="ignore"):
        value = np.float32(1.0) if att.scale is None else np.float32(values[att.scale])
        value = np.float32(1.0) / value if att.invert else value
    value = -value if att.negate else value
    return float(value) if np.isfinite(value) and value != 0 else None


@lru_cache(maxsize=1)
def unavailable() -> str | None:
    """Why this process cannot use AMX-BF16 tiles (None: it can). Linux hands out the tile
    state only to processes that ask for it (arch_prctl ARCH_REQ_XCOMP_PERM), once."""
    from kernelc.backends.llvm.jit import target_machine

    import llvmlite.binding as llvm

    target_machine()
    features = llvm.get_host_cpu_features()
    missing = [f for f in ("amx-tile", "amx-bf16", "avx512f") if not features.get(f)]
    if missing:
        return f"the CPU lacks {', '.join(missing)}"
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.syscall(_SYS_ARCH_PRCTL, _ARCH_REQ_XCOMP_PERM, _XFEATURE_XTILEDATA) != 0:
            return f"the OS refused the tile state (arch_prctl errno {ctypes.get_errno()})"
    except (OSError, AttributeError) as err:
        return f"cannot ask the OS for the tile state: {err}"
    return None


# --- code generation ------------------------------------------------------------------------------


class _TileType(ir.Type):
    """LLVM's x86_amx: a tile register value (llvmlite's builder has no such type)."""

    def _to_string(self) -> str:
        return "x86_amx"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _TileType)

    def __hash__(self) -> int:
        return hash("x86_amx")


TILE = _TileType()
_PTR = ir.IntType(8).as_pointer()


class _Tiles:
    """The tile intrinsics, with LLVM's shape arguments (rows, bytes per row) of full tiles; LLVM
    writes the tile configuration (ldtilecfg) itself."""

    def __init__(self, module: ir.Module, b: ir.IRBuilder) -> None:
        self.b = b
        shape = [I16, I16]
        self._load = ir.Function(module, ir.FunctionType(TILE, shape + [_PTR, I64]), "llvm.x86.tileloadd64.internal")
        self._zero = ir.Function(module, ir.FunctionType(TILE, shape), "llvm.x86.tilezero.internal")
        self._dot = ir.Function(module, ir.FunctionType(TILE, shape + [I16, TILE, TILE, TILE]),
                                "llvm.x86.tdpbf16ps.internal")
        self._store = ir.Function(module, ir.FunctionType(ir.VoidType(), shape + [_PTR, I64, TILE]),
                                  "llvm.x86.tilestored64.internal")
        self.shape = [ir.Constant(I16, ROWS), ir.Constant(I16, TILE_BYTES)]

    def load(self, pointer: ir.Value, stride: int | ir.Value) -> ir.Value:
        stride = ir.Constant(I64, stride) if isinstance(stride, int) else stride
        return self.b.call(self._load, self.shape + [self.b.bitcast(pointer, _PTR), stride])

    def zero(self) -> ir.Value:
        return self.b.call(self._zero, self.shape)

    def dot(self, acc: ir.Value, a: ir.Value, b: ir.Value) -> ir.Value:
        """acc (16 x 16 f32) += a (16 x 32 bf16) b (32 x 16 bf16, pair-interleaved)."""
        return self.b.call(self._dot, self.shape + [ir.Constant(I16, TILE_BYTES), acc, a, b])

    def store(self, pointer: ir.Value, stride: int, tile: ir.Value) -> None:
        self.b.call(self._store, self.shape + [self.b.bitcast(pointer, _PTR), ir.Constant(I64, stride), tile])


def symbol(tag: str) -> str:
    return f"kc_amx_attention{tag}"


_VEC = ir.VectorType(F32, ROWS)  # one value per row of a block: the vector phase runs across rows
_IVEC = ir.VectorType(I32, ROWS)
_LVEC = ir.VectorType(I64, ROWS)
_LOG2E = 1.4426950408889634


def generate(att: Attention, tag: str) -> str:
    """The module of `void f(i16* x, i16* y, i16* v, f32* max, f32* sum, f32* acc, i64 r0, i64 r1,
    i64 k0, i64 k1, i64 m, f32 scale)`: rows [r0, r1) (multiples of BLOCK_ROWS) of the split
    inputs (`prepare`) over keys [k0, k1) (multiples of 32; keys from m on are padding), leaving
    each row's maximum (in units of log2), sum, and unnormalized numerators (transposed per 16
    rows: acc[row tile][e][row]).

    Everything is computed transposed, keys by rows, so that the vector code between the tile
    products runs across the 16 rows of a tile, one row per lane: the running maximum and sum
    need no reduction across lanes, and two keys' bf16 weights interleave into the pairs of the
    numerator product's B tile with one shift and one or.

    A block is 32 rows (two row tiles) by 32 keys (two key tiles): its scores are 2 x 2
    accumulator tiles, so each operand tile loaded serves two products. Tile registers are not
    renamed: a load into a register waits until the products reading it are done, so with one
    row tile (operands in two registers) the products ran one after another (1.3 ns per pair
    with a product of 16 cycles at full rate)."""
    module = ir.Module(name="kernelc_amx")
    u16p, f32p = I16.as_pointer(), F32.as_pointer()
    fnty = ir.FunctionType(ir.VoidType(), [u16p, u16p, u16p, f32p, f32p, f32p, I64, I64, I64, I64, I64, F32])
    fn = ir.Function(module, fnty, symbol(tag))
    fn.attributes.add("nounwind")
    for arg in fn.args[:6]:
        arg.add_attribute("noalias")
    x, y, v, row_max, row_sum, acc, r0, r1, k0, k1, m, scale = fn.args
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    math = ops.Math(module, approx=True)
    tiles = _Tiles(module, b)
    i64 = lambda k: ir.Constant(I64, k)  # noqa: E731
    lanes = lambda k: ops.const(_VEC, k)  # noqa: E731 (k in every lane)
    dp, ep, chunks = att.padded_dim, att.padded_values, att.chunks
    tile_u16 = ROWS * TILE_BYTES // 2  # bf16 elements per tile
    row_tiles = range(BLOCK_ROWS // ROWS)

    def buffer(ty: ir.Type, count: int) -> ir.Value:
        slot = b.alloca(ir.ArrayType(ty, count))
        slot.align = 64
        return b.bitcast(slot, ty.as_pointer())

    def vector_at(pointer: ir.Value, offset: ir.Value | int, ty: ir.Type = _VEC) -> ir.Value:
        offset = i64(offset) if isinstance(offset, int) else offset
        return b.bitcast(b.gep(pointer, [offset]), ty.as_pointer())

    # per row tile: S^T of the block [key][row], its weights as bf16 pairs [key pair][row]
    score_slots = buffer(F32, 2 * len(row_tiles) * KEYS * ROWS)  # two blocks' S^T (software pipelining)
    weights_hi = [buffer(I32, KEYS // 2 * ROWS) for _ in row_tiles]
    weights_lo = [buffer(I32, KEYS // 2 * ROWS) for _ in row_tiles]

    # scores scaled to log2 units: exp(scale s - max) = 2^(u - max2) with u = s scale log2(e)
    to_log2 = ops.splat(b, b.fmul(scale, ir.Constant(F32, _LOG2E)), ROWS)

    def row_state(rt: ir.Value, base: ir.Value) -> ir.Value:
        return b.bitcast(b.gep(base, [rt]), _VEC.as_pointer())

    def acc_at(rt: ir.Value, e: int | ir.Value) -> ir.Value:
        e = i64(e) if isinstance(e, int) else e
        return vector_at(acc, b.add(b.mul(rt, i64(ep)), b.mul(e, i64(ROWS))))

    def init(rt: ir.Value) -> None:
        b.store(lanes(float("-inf")), row_state(rt, row_max), align=4)
        b.store(lanes(0.0), row_state(rt, row_sum), align=4)
        ops.loop(b, i64(0), i64(ep), "init.e", lambda e: b.store(lanes(0.0), acc_at(rt, e), align=4))

    ops.loop(b, r0, r1, "init", init, ROWS)

    def key_tile(t0: ir.Value) -> None:
        end = b.add(t0, i64(att.tile_keys))
        t1 = b.select(b.icmp_signed("<", end, k1), end, k1)

        def row_block(rb: ir.Value) -> None:
            stop = t1
            if att.causal:  # no key after the block's last row
                after = b.add(rb, i64(BLOCK_ROWS))
                stop = b.select(b.icmp_signed("<", after, t1), after, t1)
            with b.if_then(b.icmp_signed("<", t0, stop)):
                for step in scores_product(rb, t0, slot(t0, t0)):  # the first block's scores
                    step()
                ops.loop(b, t0, stop, "keys", lambda kb: block(rb, kb, t0, stop), KEYS)

        ops.loop(b, r0, r1, "rows", row_block, BLOCK_ROWS)

    def slot(t0: ir.Value, kb: ir.Value) -> ir.Value:
        """0 or 1: which score buffer the block of keys at kb uses."""
        return b.and_(b.udiv(b.sub(kb, t0), i64(KEYS)), i64(1))

    def scores_at(at: ir.Value, q: int) -> ir.Value:
        return b.gep(score_slots, [b.add(b.mul(at, i64(len(row_tiles) * KEYS * ROWS)), i64(q * KEYS * ROWS))])

    def scores_product(rb: ir.Value, kb: ir.Value, at: ir.Value) -> list:
        """S^T of rows rb.. and keys kb.. into score slot `at`, as steps to emit one by one: 2 x 2
        accumulator tiles, each a sum of PRODUCTS over Dp components (one step per product and
        32 components: X's part's 2 tiles loaded in the first step of its group, Y's 2 in
        each), then the stores."""
        firsts = [b.add(rb, i64(q * ROWS)) for q in row_tiles]
        s: list[list] = [[tiles.zero() for _ in row_tiles] for _ in range(2)]
        x_tiles = [b.gep(x, [b.mul(b.udiv(first, i64(ROWS)), i64(chunks * tile_u16))]) for first in firsts]
        xs: list = []

        def step(c: int, x_part: int, y_part: int, first_in_group: bool) -> None:
            if first_in_group:
                xs[:] = [tiles.load(b.gep(base, [i64((x_part * dp // KEYS + c) * tile_u16)]), TILE_BYTES)
                         for base in x_tiles]
            ys = [tiles.load(b.gep(y, [b.add(b.mul(b.add(kb, i64(half * ROWS)), i64(2 * dp)),
                                             i64(y_part * dp + c * KEYS))]), 2 * dp * 2) for half in range(2)]
            for half in range(2):
                for q in row_tiles:
                    s[half][q] = tiles.dot(s[half][q], ys[half], xs[q])

        def store() -> None:
            for half in range(2):
                for q in row_tiles:
                    tiles.store(b.gep(scores_at(at, q), [i64(half * ROWS * ROWS)]), TILE_BYTES, s[half][q])

        steps = [lambda c=c, x_part=x_part, y_part=y_part, first=k == 0: step(c, x_part, y_part, first)
                 for x_part, y_parts in PRODUCTS for c in range(dp // KEYS) for k, y_part in enumerate(y_parts)]
        return steps + [store]

    def block(rb: ir.Value, kb: ir.Value, t0: ir.Value, stop: ir.Value) -> None:
        """One block of 32 rows x 32 keys, software-pipelined: its scores were computed by the
        block before, and the tile products of the next block's scores are issued in among this
        block's vector code (the last block recomputes its own into the other slot), so that
        the tile unit and the vector unit work at once (0.95 -> 0.86 ns per pair on one thread;
        issued before the vector code rather than among it, they did not overlap)."""
        firsts = [b.add(rb, i64(q * ROWS)) for q in row_tiles]
        here = slot(t0, kb)
        following = b.add(kb, i64(KEYS))
        following = b.select(b.icmp_signed("<", following, stop), following, b.sub(stop, i64(KEYS)))
        side = lambda: scores_product(rb, following, b.sub(i64(1), here))  # noqa: E731
        scores = [scores_at(here, q) for q in row_tiles]
        whole = b.icmp_signed("<=", b.add(kb, i64(KEYS)), m)
        if att.causal:
            whole = b.and_(whole, b.icmp_signed("<", kb, rb))  # below the diagonal
        with b.if_then(b.not_(whole)):  # keys at m and beyond are padding; causal: keys after the row
            for q in row_tiles:
                last = ops.splat(b, b.sub(b.sub(m, i64(1)), kb), ROWS)  # per row, the last key it sees
                if att.causal:
                    rows = b.add(ops.splat(b, b.sub(firsts[q], kb), ROWS), ir.Constant(_LVEC, list(range(ROWS))))
                    last = b.select(b.icmp_signed("<", rows, last), rows, last)
                mask_scores(scores[q], last)
        steps = side()
        for q in row_tiles:
            weights(firsts[q], q, scores[q], steps if q == 0 else [])
        if not ep:
            return
        # acc^T += V^T P^T, Ep x 16 per row tile, in the accumulator tiles: Vhi Phi + Vlo Phi + Vhi Plo
        p_hi = [tiles.load(weights_hi[q], TILE_BYTES) for q in row_tiles]
        p_lo = [tiles.load(weights_lo[q], TILE_BYTES) for q in row_tiles]
        v_tiles = b.gep(v, [b.mul(b.udiv(kb, i64(KEYS)), i64(2 * (ep // ROWS) * tile_u16))])
        for e in range(ep // ROWS):
            sums = [b.gep(acc, [b.add(b.mul(first, i64(ep)), i64(e * ROWS * ROWS))]) for first in firsts]
            t = [tiles.load(at, TILE_BYTES) for at in sums]
            v_hi = tiles.load(b.gep(v_tiles, [i64(e * tile_u16)]), KEYS * 2)
            t = [tiles.dot(t[q], v_hi, p_hi[q]) for q in row_tiles]
            v_lo = tiles.load(b.gep(v_tiles, [i64((ep // ROWS + e) * tile_u16)]), KEYS * 2)
            t = [tiles.dot(t[q], v_lo, p_hi[q]) for q in row_tiles]
            t = [tiles.dot(t[q], v_hi, p_lo[q]) for q in row_tiles]
            for q in row_tiles:
                tiles.store(sums[q], TILE_BYTES, t[q])

    def rescale(rt: ir.Value, old: ir.Value, new: ir.Value) -> None:
        """Move the row tile's reference maxima from old to new: sums and accumulators times
        2^(old - new) (0 the first time, where old is -inf)."""
        alpha = ops.approx_exp2(b, math, b.fsub(old, new), nonpositive=True)
        b.store(new, row_state(rt, row_max), align=4)
        state = row_state(rt, row_sum)
        b.store(b.fmul(b.load(state, align=4), alpha), state, align=4)

        def scale_sums(e: ir.Value) -> None:
            at = acc_at(rt, e)
            b.store(b.fmul(b.load(at, align=64), alpha), at, align=64)

        ops.loop(b, i64(0), i64(ep), "rescale", scale_sums)

    def mask_scores(at: ir.Value, last: ir.Value) -> None:
        """For the scores of keys past `last` (per row, from the block's first key), the infinity
        that scaling turns into -inf: one copy of the weights' code serves every block (two had
        doubled the compile time)."""
        unseen = b.select(b.fcmp_ordered(">", to_log2, lanes(0.0)), lanes(float("-inf")), lanes(float("inf")))

        def key(k: ir.Value) -> None:
            where = vector_at(at, b.mul(k, i64(ROWS)))
            seen = b.icmp_signed("<=", ops.splat(b, k, ROWS), last)
            b.store(b.select(seen, b.load(where, align=64), unseen), where, align=64)

        ops.loop(b, i64(0), i64(KEYS), "mask", key)

    def weights(rt: ir.Value, q: int, scores: ir.Value, side: list) -> None:
        """Row tile q's weights 2^(u - reference) as bf16 hi and lo, and its rows' sums. A row's
        reference is its maximum so far, moved (`rescale`) only when a block's maximum passes it
        by more than HEADROOM: weights up to 2^HEADROOM, and the accumulators stay in tile
        layout, added to by the tile unit (rescaling every block, in vector code, cost 0.2 ns of
        1.2 per pair)."""
        u = []
        for k in range(KEYS):
            u.append(b.fmul(b.load(vector_at(scores, k * ROWS), align=64), to_log2))
        top = _tree(u, lambda p, r: math.intrinsic(b, "maxnum", p, r, flags=("nnan",)))
        reference = row_state(rt, row_max)
        old = b.load(reference, align=4)
        grows = b.fcmp_ordered(">", top, b.fadd(old, lanes(HEADROOM)))
        with b.if_then(b.icmp_unsigned("!=", b.bitcast(grows, ir.IntType(ROWS)), ir.Constant(ir.IntType(ROWS), 0))):
            rescale(rt, old, math.intrinsic(b, "maxnum", old, top, flags=("nnan",)))  # finite: a key below m
        new = b.load(reference, align=4)
        mask, half = ops.const(_IVEC, -0x10000), ops.const(_IVEC, 0x8000)
        every = max(1, (KEYS // 2) // max(1, len(side)))
        p: list[ir.Value] = []
        for pair in range(KEYS // 2):
            if side and pair % every == 0:
                side.pop(0)()  # a step of the next block's tile products, among the vector code
            # weights <= 2^HEADROOM, computed pair by pair (in program order among the tile steps)
            pw = [ops.approx_exp2(b, math, b.fsub(value, new), nonpositive=True) for value in u[2 * pair:2 * pair + 2]]
            p += pw
            if not ep:
                continue  # a log-sum-exp: the sums are all it needs
            # hi: the weight's bits truncated to bf16; lo: the exact rest, rounded half away from
            # zero by adding half an ulp of bf16 (about 2^-17 of the weight together, in 4 integer
            # operations per pair where round-to-even took 12)
            bits = [b.bitcast(w, _IVEC) for w in pw]
            rests = [b.add(b.bitcast(b.fsub(w, b.bitcast(b.and_(bw, mask), _VEC)), _IVEC), half)
                     for w, bw in zip(pw, bits)]
            for parts, out in ((bits, weights_hi[q]), (rests, weights_lo[q])):
                packed = b.or_(b.lshr(parts[0], ops.const(_IVEC, 16)), b.and_(parts[1], mask))  # 2r low, 2r + 1 high
                b.store(packed, vector_at(out, pair * ROWS, _IVEC), align=64)
        for step in side:
            step()
        total = _tree(p, lambda a, c: b.fadd(a, c, flags=("reassoc",)))
        state = row_state(rt, row_sum)
        b.store(b.fadd(b.load(state, align=4), total), state, align=4)

    ops.loop(b, k0, k1, "tiles", key_tile, att.tile_keys)
    b.ret_void()
    amx_pack.add_functions(module, att, tag, SAFE_EXPONENT)
    return str(module)


def _tree(values: list[ir.Value], combine) -> ir.Value:
    """values combined pairwise (a tree: log2 of the length deep, not a chain)."""
    while len(values) > 1:
        values = [combine(values[k], values[k + 1]) if k + 1 < len(values) else values[k]
                  for k in range(0, len(values), 2)]
    return values[0]


def _aligned(shape: tuple[int, ...], zero: bool = True, dtype: type = np.uint16) -> np.ndarray:
    """An array whose data starts at a multiple of 64 bytes: tile loads of rows that cross
    cache lines ran 4x slower (60 against 14.5 cycles per product, measured)."""
    count, size = int(np.prod(shape)), np.dtype(dtype).itemsize
    raw = (np.zeros if zero else np.empty)(count + ALIGN // size, dtype)
    start = (-raw.ctypes.data % ALIGN) // size
    return raw[start:start + count].reshape(shape)


def layout_shapes(att: Attention, n: int, m: int) -> dict[str, tuple[int, ...]]:
    """The shapes of the tile-ordered copies (amx_pack's layouts) for n rows and m keys."""
    rows, keys = -(-n // BLOCK_ROWS) * BLOCK_ROWS, -(-m // KEYS) * KEYS
    return {"queries": (rows // ROWS, att.chunks, ROWS, 2 * ROWS), "keys": (keys, 2 * att.padded_dim),
            "values": (keys // KEYS, 2, att.padded_values // ROWS, ROWS, KEYS)}


def _merge(states: list[tuple[np.ndarray, ...]]) -> tuple[np.ndarray, ...]:
    """One row state from those of key ranges: each part's sums and numerators scaled by 2^(its
    reference - the largest), as the online softmax's combine (kernelc.ir.monoids). The first
    part holds key 0, which every row sees, so the largest reference is finite."""
    refs = np.stack([s[0] for s in states]).astype(np.float64)
    top = refs.max(0)
    with np.errstate(invalid="ignore"):
        scales = np.where(np.isneginf(refs), 0.0, np.exp2(refs - top))
    total = sum(w * s[1].astype(np.float64) for w, s in zip(scales, states))
    rows = len(top)
    acc = sum(w.reshape(rows // ROWS, 1, ROWS) * s[2].reshape(rows // ROWS, -1, ROWS).astype(np.float64)
              for w, s in zip(scales, states))
    return top.astype(np.float32), total.astype(np.float32), acc.reshape(rows, -1).astype(np.float32)


_PACK_FN = ctypes.CFUNCTYPE(ctypes.c_int64, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p)
_FN = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p,
                       ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64, ctypes.c_int64, ctypes.c_int64, ctypes.c_int64,
                       ctypes.c_float)


def cache_key(att: Attention) -> str:
    """The disk cache key of the generated code: what it depends on (the dimensions, padded for
    the tile products and as they are for the copies; the names and the scale are per call)."""
    import llvmlite

    from kernelc import __version__
    from kernelc.backends.cache import make_key
    from kernelc.backends.llvm import codegen_version
    from kernelc.backends.llvm.jit import host_description

    return make_key("llvm-amx", codegen_version(), __version__, llvmlite.__version__, host_description(),
                    str((att.dim, att.values_dim, att.padded_dim, att.padded_values, att.tile_keys, att.causal,
                         att.values is None)))


class AttentionExecutable:
    """The compiled attention function and the per-call work around it: checks, split copies,
    row blocks over threads, and the final division."""

    def __init__(self, att: Attention, threads: int, chunks_per_thread: int) -> None:
        from kernelc.backends.llvm.jit import compile_ir

        reason = unavailable()  # also asks the OS for the tile state, without which tiles fault
        if reason is not None:
            raise RuntimeError(f"no AMX-BF16 here: {reason}")
        self.att, self.threads, self.chunks_per_thread = att, threads, chunks_per_thread
        key = cache_key(att)
        tag = "_" + key[:20]
        self._text = lambda: generate(att, tag)
        kinds = amx_pack.KINDS if att.values is not None else amx_pack.KINDS[:2]
        addresses, self.optimized_ir = compile_ir(self._text, [symbol(tag)] + [amx_pack.symbol(k, tag) for k in kinds],
                                                  key, VECTOR_BITS)
        self.fn = _FN(addresses[symbol(tag)])
        self.pack = {kind: _PACK_FN(addresses[amx_pack.symbol(kind, tag)]) for kind in kinds}

    def prepare(self, x: np.ndarray, y: np.ndarray, v: np.ndarray | None) -> tuple[np.ndarray, ...] | None:
        """The split, tile-ordered, 64-byte aligned copies of x, y and v (amx_pack), made over
        row ranges on the threads; None if a value is unsafe (not 0 and of magnitude outside
        [2^-40, 2^40], or not finite: the bf16 split and the tile unit's f32 sums would
        overflow or meet subnormals)."""
        shapes = layout_shapes(self.att, len(x), len(y))
        sources = {"queries": x, "keys": y} | ({"values": v} if v is not None else {})
        copies = {kind: _aligned(shapes[kind]) for kind in sources}
        jobs = []
        for kind, src in sources.items():
            parts = max(1, min(self.threads * 2, len(src) // 256))
            jobs += [(kind, len(src) * p // parts, len(src) * (p + 1) // parts) for p in range(parts)]

        def run_job(job: tuple[str, int, int]) -> int:
            kind, r0, r1 = job
            return self.pack[kind](sources[kind].ctypes.data, r0, r1, copies[kind].ctypes.data)

        unsafe = sum(map_jobs(self.threads, run_job, jobs))
        if unsafe:
            return None
        return copies["queries"], copies["keys"], copies.get("values", _aligned((1,)))

    @property
    def description(self) -> str:
        return (f"{self.att.what} on the AMX-BF16 tile unit, bf16x3 products "
                f"(calls of {MIN_ROWS}+ rows with inputs of magnitude in [2^-{SAFE_EXPONENT}, 2^{SAFE_EXPONENT}]; "
                "others run the f32 code)")

    @property
    def code(self) -> str:
        from kernelc.backends.llvm.jit import optimized_ir

        return self.optimized_ir or optimized_ir(self._text(), VECTOR_BITS)

    def run(self, inputs: dict[str, np.ndarray], out: np.ndarray) -> bool:
        """Compute the output into `out` (N x E, or N for scalar values and log-sum-exps); False,
        having done nothing, for calls the tile path does not take: fewer than MIN_ROWS rows (a
        block of 32 would be mostly padding), no keys, inputs outside the safe range, a zero or
        non-finite scale. (It takes calls whose per-call copies cost more than the tile path
        saves, too: the variant choice measures the error of 64 sampled rows, which must take
        the path that the whole call takes.)"""
        att = self.att
        x, y = (np.ascontiguousarray(inputs[name], np.float32) for name in (att.queries, att.keys))
        v = None
        if att.values is not None:  # scalar values: one column
            v = np.ascontiguousarray(inputs[att.values], np.float32).reshape(len(y), att.values_dim)
        scale = factor(att, inputs)
        n, m = len(x), len(y)
        if n < MIN_ROWS or m == 0 or scale is None:
            return False
        copies = self.prepare(x, y, v)
        if copies is None:
            return False
        xs, ys, vs = copies
        rows, keys = -(-n // BLOCK_ROWS) * BLOCK_ROWS, -(-m // KEYS) * KEYS
        blocks = rows // BLOCK_ROWS
        # few row blocks: the keys split over the threads too, each part with its own states
        parts = max(1, min(self.threads // blocks, keys // KEYS)) if blocks < self.threads else 1
        key_bounds = [keys // KEYS * p // parts * KEYS for p in range(parts + 1)]
        states = [(np.empty(rows, np.float32), np.empty(rows, np.float32),
                   _aligned((rows, max(1, att.padded_values)), zero=False, dtype=np.float32)) for _ in range(parts)]
        chunks = max(1, min(blocks, self.threads * self.chunks_per_thread // parts))
        bounds = [blocks * c // chunks * BLOCK_ROWS for c in range(chunks + 1)]
        jobs = [(c, p) for p in range(parts) for c in range(chunks)]

        def run_job(job: tuple[int, int]) -> None:
            c, p = job
            self.fn(xs.ctypes.data, ys.ctypes.data, vs.ctypes.data, *(a.ctypes.data for a in states[p]),
                    bounds[c], bounds[c + 1], key_bounds[p], key_bounds[p + 1], m, scale)

        map_jobs(self.threads, run_job, jobs)
        row_max, row_sum, acc = _merge(states) if parts > 1 else states[0]
        if att.values is None:  # ln sum exp(s) = ln 2 (max + log2 sum 2^(u - max)), max and u in log2 units
            out[...] = (row_max[:n].astype(np.float64) + np.log2(row_sum[:n].astype(np.float64))) * np.log(2.0)
            return True
        acc = acc.reshape(rows // ROWS, att.padded_values, ROWS).transpose(0, 2, 1).reshape(rows, -1)
        quotients = acc[:n, :att.values_dim] / row_sum[:n, None]
        out.reshape(n, att.values_dim)[...] = quotients  # f32, or rounded to a narrow output's type
        return True
