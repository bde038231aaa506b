"""The LLVM CPU backend: LLVM IR built with llvmlite from the typed IR specialized to a call's
dimensions, optimized with the new pass manager for the host CPU, JIT-compiled, and run over
row blocks on every core through ctypes (which releases the GIL)."""

from __future__ import annotations

import ctypes
import os
from functools import lru_cache
from typing import Any, Mapping

import numpy as np

from kernelc.backends.interface import Availability, Call, Executable, Schedule, Sizes, host_arrays_only
from kernelc.backends.llvm import weighted
from kernelc.backends.llvm.blocks import K_BEST
from kernelc.backends.llvm.codegen import (check_supported, generate, partial_reductions, pipeline_applies,
                                           row_functions, soa_blocks, splittable)
from kernelc.backends.llvm.ops import UnsupportedKernel
from kernelc.backends.runtime import output_shapes
from kernelc.backends.threads import map_jobs, thread_count
from kernelc.errors import UnsupportedKernelError
from kernelc.ir.dtypes import DType
from kernelc.ir.monoids import MONOIDS
from kernelc.ir.nodes import Kernel, walk
from kernelc.ir.ops import Op, ReduceKind
from kernelc.ir.passes import hoist
from kernelc.ir.passes.split_passes import Stage, detach, split_passes, value_type
from kernelc.plugins import API_VERSION

_ROW_FN = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64, ctypes.c_int64, ctypes.c_int64)


CODEGEN_VERSION = "55"  # with the generator's source hash (`codegen_version`), in every cache key


def codegen_version() -> str:
    """CODEGEN_VERSION and a hash of this folder's sources: the part of every cache key that
    stands for the code generator."""
    from kernelc.backends.cache import source_fingerprint

    return CODEGEN_VERSION + "-" + source_fingerprint(os.path.dirname(__file__))


def cache_key(kernel: Kernel, schedule: Schedule) -> str:
    import llvmlite

    from kernelc import __version__
    from kernelc.backends.cache import make_key
    from kernelc.backends.llvm.jit import host_description
    from kernelc.ir.printer import print_kernel

    return make_key("llvm", codegen_version(), __version__, llvmlite.__version__, host_description(),
                    print_kernel(kernel), str(dict(schedule.get("dims") or ())), str(bool(schedule.get("approx_math"))),
                    str(int(schedule.get("rows") or 1)), str(int(schedule.get("vector_bits") or 0)),
                    str(int(schedule.get("interleave") or 0)), str(_matrix_unit(schedule)),
                    str(bool(schedule.get("pipeline"))), str(bool(schedule.get("weighted_sums"))))


def _matrix_unit(schedule: Schedule) -> bool:
    """Whether a tolerance variant may run on the CPU's matrix unit (amx.py): knob `matrix_unit`,
    on unless set to False; exact kernels never do."""
    return bool(schedule.get("approx_math")) and schedule.get("matrix_unit") is not False


class LLVMExecutable:
    """Runs a kernel as one or more single-pass stages (see ir/passes/split_passes.py)."""

    def __init__(self, kernel: Kernel, schedule: Schedule) -> None:
        self.kernel = kernel
        stages = split_passes(kernel)
        if schedule.get("hoist") and schedule.get("optimize", True):
            stages = [part for stage in stages for part in _hoisted(stage)]
        self.stages = [(_StageExecutable(stage.kernel, schedule), stage) for stage in stages]

    @property
    def code(self) -> str:
        """The optimized LLVM IR of every stage (generated again when it came from a cache)."""
        return "\n".join(executable.code for executable, _ in self.stages)

    @property
    def notes(self) -> list[str]:
        """What `kernelc explain` says about how this runs, beyond the schedule."""
        return [f"stage {k}: {executable.pattern.description}" for k, (executable, _) in enumerate(self.stages)
                if executable.pattern is not None]

    def run(self, call: Call) -> None:
        inputs = dict(call.inputs)
        for k, (executable, stage) in enumerate(self.stages):
            if k + 1 == len(self.stages):
                executable.run(Call(inputs, call.sizes, call.outputs))
                return
            temps = [np.empty(shape, o.type.dtype.numpy)
                     for o, shape in zip(stage.kernel.outputs, output_shapes(stage.kernel, call.sizes))]
            executable.run(Call(inputs, call.sizes, temps))
            inputs.update(zip(self.stages[k + 1][1].temporaries, temps))


class _StageExecutable:
    def __init__(self, kernel: Kernel, schedule: Schedule) -> None:
        self.kernel = kernel
        self.dims = dict(schedule.get("dims") or ())
        self.threads = int(schedule.get("threads") or thread_count())
        self.chunks_per_thread = int(schedule.get("chunks_per_thread") or _CHUNKS_PER_THREAD)
        try:
            check_supported(kernel, self.dims)
        except UnsupportedKernel as err:
            raise UnsupportedKernelError(f"the llvm backend cannot run kernel '{kernel.name}': {err}") from None
        key = cache_key(kernel, schedule)
        tag = "_" + key[:20]  # symbols unique per compiled variant within the process
        weighted_sums = bool(schedule.get("weighted_sums"))
        self.specs = row_functions(kernel, tag, self.dims, weighted_sums)
        self.splittable = len(self.specs) == 1 and splittable(kernel, self.specs[0], self.dims)
        self.reductions = partial_reductions(kernel, self.specs[0]) if self.splittable else []
        symbols = [s.name for s in self.specs]
        approx = bool(schedule.get("approx_math"))
        rows = int(schedule.get("rows") or 1)
        self.vector_bits = int(schedule.get("vector_bits") or 0)
        self.rows = rows
        self.tile = int(schedule.get("tile") or 0)  # inner columns per tile (_run_tiled), 0: none
        interleave = int(schedule.get("interleave") or 0)
        pipeline = bool(schedule.get("pipeline"))
        self._generate = lambda partial=False: generate(kernel, self.dims, tag, approx, rows, interleave, partial,
                                                            self.vector_bits, pipeline, weighted_sums)[0]
        self._key, self._symbols = key, symbols
        self._functions: list[Any] | None = None
        self._partial: Any = None
        self.optimized_ir = ""
        self.pattern = _pattern_path(kernel, self.dims, schedule, self.threads, self.chunks_per_thread)
        # compiled now (the autotuner compiles in worker processes, for the disk cache): the
        # functions this schedule runs: a pattern path (the others then only for calls it
        # does not take), the row functions or, with tiles, the partial function
        if self.pattern is None and self.tile and self.splittable:
            self.partial()
        elif self.pattern is None:
            self.functions()
        self.schedule = schedule
        self._finish: _StageExecutable | None = None

    @property
    def code(self) -> str:
        """The optimized IR of the row functions, and with tiles of the partial function that
        tiled calls run."""
        from kernelc.backends.llvm.jit import optimized_ir

        text = self.optimized_ir or optimized_ir(self._generate(), self.vector_bits)
        if self.pattern is not None:
            text = self.pattern.code + "\n" + text
        if self.tile and self.splittable:
            text += "\n" + optimized_ir(self._generate(True), self.vector_bits)
        return text

    def run(self, call: Call) -> None:
        if dict(call.sizes.dims) != self.dims:
            raise AssertionError("an llvm executable runs only the dimensions it was compiled for")
        n, m = call.sizes.n, call.sizes.m
        for out in call.outputs:
            assert out.flags.c_contiguous, "the runtime allocates contiguous outputs"
        if self.pattern is not None and self.pattern.run(call.inputs, call.outputs[0]):
            return
        for k, spec in enumerate(self.specs):
            arrays = [soa_blocks(call.inputs[p.name]) if p.name in spec.soa
                      else np.ascontiguousarray(call.inputs[p.name]) for p in self.kernel.params] + list(call.outputs) \
                + [np.ascontiguousarray(call.inputs[name]) for name in spec.row_major_copies]
            pointers = (ctypes.c_void_p * len(arrays))(*[a.ctypes.data for a in arrays])
            rows = 1 if spec.outer is None else (n if spec.outer == "i" else m)
            inner = m if spec.outer == "i" else n
            if self.splittable and rows < self.threads and rows * inner >= _SPLIT_WORK:
                self._run_split(call, pointers, rows, inner)
            elif self.splittable and self.tile and inner > self.tile and rows >= self.threads:
                self._run_tiled(call, pointers, rows, inner)
            else:
                self._run_rows(self.functions()[k], arrays, spec.scratch, n, m, rows)
            del arrays  # kept alive until the native code returned

    def _run_split(self, call: Call, pointers: Any, rows: int, inner: int) -> None:
        """Few rows, a long inner index: split the inner index over threads, merge the partial
        states with the monoids' combine (in chunk order), then compute the outputs from the
        reductions' values with the detached finishing kernel."""
        from kernelc.backends.llvm.codegen import SUM_BLOCK

        chunks = min(self.threads, max(1, inner // SUM_BLOCK))
        bounds = [inner * c // chunks // SUM_BLOCK * SUM_BLOCK for c in range(chunks)] + [inner]
        states = [None] * chunks

        def run_chunk(c: int) -> None:
            states[c] = self._partial_states(call, pointers, 0, rows, bounds[c], bounds[c + 1])

        map_jobs(self.threads, run_chunk, range(chunks))
        merged = states[0]
        for part in states[1:]:
            merged = self._combine(merged, part)
        self._finish_from(call, merged)

    def _run_tiled(self, call: Call, pointers: Any, rows: int, inner: int) -> None:
        """Many rows and inner-indexed inputs larger than the cache: chunks of rows over threads,
        each walking the inner index in tiles of `tile` columns, so that a tile of the inputs is
        read from cache by all the chunk's rows (instead of streamed from memory once per
        register block of rows); each tile's partial states are merged into the chunk's with
        the monoids' combine (in column order), then the finishing kernel computes the outputs."""
        chunks = max(1, min(rows, self.threads * self.chunks_per_thread))
        bounds = [rows * c // chunks // self.rows * self.rows for c in range(chunks)] + [rows]
        states = [None] * chunks

        def run_chunk(c: int) -> None:
            r0, r1 = bounds[c], bounds[c + 1]
            for c0 in range(0, inner, self.tile):
                part = self._partial_states(call, pointers, r0, r1, c0, min(inner, c0 + self.tile))
                states[c] = part if states[c] is None else self._combine(states[c], part)

        map_jobs(self.threads, run_chunk, range(chunks))
        merged = [tuple(np.concatenate([s[k][f] for s in states]) for f in range(len(states[0][k])))
                  for k in range(len(states[0]))]
        self._finish_from(call, merged)

    def functions(self) -> list[Any]:
        """The row functions, compiled at their first use (with tiles, only for small calls)."""
        from kernelc.backends.llvm.jit import compile_ir

        if self._functions is None:
            addresses, self.optimized_ir = compile_ir(self._generate, self._symbols, self._key, self.vector_bits)
            self._functions = [_ROW_FN(addresses[name]) for name in self._symbols]
        return self._functions

    def partial(self) -> Any:
        """The partial function (states of rows [r0, r1) over columns [c0, c1)), compiled in a
        module of its own at its first use: most calls never need it."""
        from kernelc.backends.llvm.jit import compile_ir

        if self._partial is None:
            name = self.specs[0].name + "_partial"
            addresses, _ = compile_ir(lambda: self._generate(True), [name], self._key + "-partial", self.vector_bits)
            self._partial = _PARTIAL_FN(addresses[name])
        return self._partial

    def _partial_states(self, call: Call, pointers: Any, r0: int, r1: int, c0: int, c1: int) -> list[tuple]:
        """The reductions' states (monoid layout, kernelc.ir.monoids) of rows [r0, r1) over the
        inner columns [c0, c1) (c0 a multiple of SUM_BLOCK), from the partial function."""
        reds = self.reductions
        fields = [[np.empty((r1 - r0, w), dt) for dt, w in _state_layout(r, self.dims)] for r in reds]
        buffers = [a for red_fields in fields for a in red_fields]
        ptrs = (ctypes.c_void_p * len(buffers))(*[a.ctypes.data for a in buffers])
        self.partial()(ctypes.addressof(pointers), call.sizes.n, call.sizes.m, r0, r1, c0, c1, ctypes.addressof(ptrs))
        states = []
        for r, f in zip(reds, fields):
            if r.arg.kind is ReduceKind.MEAN:  # type: ignore[union-attr]
                f = [f[0], np.full((r1 - r0, 1), float(c1 - c0))]
            states.append(tuple(f))
        return states

    def _combine(self, first: list[tuple], second: list[tuple]) -> list[tuple]:
        return [MONOIDS[r.arg.kind].combine(a, b)  # type: ignore[union-attr]
                for r, a, b in zip(self.reductions, first, second)]

    def _finish_from(self, call: Call, states: list[tuple]) -> None:
        """The outputs, from the merged states of the reductions, by the detached finishing kernel."""
        reds = self.reductions
        values = {}
        for k, (r, state) in enumerate(zip(reds, states)):
            result = MONOIDS[r.arg.kind].finalize(state)  # type: ignore[union-attr, arg-type]
            t = value_type(r)
            with np.errstate(all="ignore"):
                result = result.astype(t.dtype.numpy)
            if not t.index:  # the same for every row
                result = result[:1]
            values[k] = result.reshape(result.shape[:1] * bool(t.index) + ((-1,) if t.dim is not None else ()))
        if self._finish is None:
            finish, self._finish_names = detach(self.kernel, reds, "__red")
            self._finish = _StageExecutable(finish, self.schedule)
        inputs = dict(call.inputs) | {name: values[k] for k, name in enumerate(self._finish_names)}
        self._finish.run(Call(inputs, call.sizes, call.outputs))

    def _run_rows(self, fn: Any, arrays: list[np.ndarray], scratch: tuple[int, ...], n: int, m: int,
                  rows: int) -> None:
        work = rows * max(n, m, 1)
        threads = max(1, min(self.threads, rows))
        # a chunk handed to a pool thread costs tens of microseconds: at least _CHUNK_WORK pairs
        # each (load balance from more chunks only pays on larger calls), and none below
        # _PARALLEL_WORK pairs
        chunks = 1 if threads == 1 or work < _PARALLEL_WORK else \
            min(rows, threads * self.chunks_per_thread, max(threads, work // _CHUNK_WORK))
        # chunks start at multiples of the register block (a last block repeats rows only at the
        # end of the call)
        bounds = [rows * c // chunks // self.rows * self.rows for c in range(chunks)] + [rows]

        def run_chunk(c: int) -> None:
            # each concurrent call gets its own scratch arrays for long reductions' states
            own = arrays + [np.empty(size, np.float64) for size in scratch]
            pointers = (ctypes.c_void_p * len(own))(*[a.ctypes.data for a in own])
            fn(ctypes.addressof(pointers), n, m, bounds[c], bounds[c + 1])

        map_jobs(threads, run_chunk, range(chunks))


def _pattern_path(kernel: Kernel, dims: dict[str, int], schedule: Schedule, threads: int,
                  chunks_per_thread: int) -> Any:
    """The hand-scheduled code this stage runs for the calls it takes, or None (the generated
    row functions run every call):
    - attention on the matrix unit (amx.AttentionExecutable): tolerance variants, knob
      `matrix_unit`, hosts with AMX-BF16;
    - attention, extremes and K best of dot products in fused AVX-512 micro-kernels
      (fused_attention.FusedAttentionExecutable): knob `fused_attention`;
    - sums of a function of a long sqdist or dot (fused_sums.FusedSumExecutable): knob
      `fused_sums`;
    - nearest neighbours through a filter with an exact recheck (nearest.NearestExecutable):
      exact results, knob `nearest_filter`."""
    from kernelc.backends.llvm import amx, fused_attention, fused_sums, nearest

    if _matrix_unit(schedule) and (att := amx.match(kernel, dims)) is not None and amx.unavailable() is None:
        return amx.AttentionExecutable(att, threads, chunks_per_thread)
    if schedule.get("fused_attention") is not False and (att := fused_attention.match(kernel, dims)) is not None:
        return fused_attention.FusedAttentionExecutable(att, threads, chunks_per_thread)
    if schedule.get("fused_sums") is not False and (pair := fused_sums.match(kernel, dims)) is not None:
        return fused_sums.FusedSumExecutable(pair, threads, chunks_per_thread)
    if schedule.get("nearest_filter") is not False and (near := nearest.match(kernel, dims)) is not None:
        return nearest.NearestExecutable(near, threads, chunks_per_thread)
    return None


def _hoisted(stage: Stage) -> list[Stage]:
    """The stage with its inner-index-only values precomputed by a map stage before it."""
    parts = hoist.run(stage.kernel)
    if len(parts) == 1:
        return [stage]
    return [Stage(parts[0].kernel, stage.temporaries), parts[1]]


# below this many pairs one thread is faster (Gaussian D=3, 300 x 300: 0.09 ms on one thread,
# 0.2 ms on two, 1.0 ms in 16 chunks); a chunk of fewer than _CHUNK_WORK pairs costs more to hand
# to a thread than load balance saves (1000 x 1000: 16 chunks 0.70 ms, 2 chunks 0.35 ms)
_PARALLEL_WORK = 1 << 18
_CHUNK_WORK = 1 << 21


_TILE_BYTES = 256 << 10  # a tile of the inner-indexed inputs (_run_tiled): about a core's L2 share
_TILE_ABOVE = 1 << 20  # inner-indexed inputs larger than this are tiled
_TILE_MIN_ROWS = 256  # rows per chunk from which tiles repay their per-tile overhead
_CHUNKS_PER_THREAD = 8  # the default schedule's chunks_per_thread


def _default_tile(kernel: Kernel, sizes: Sizes) -> int:
    """Inner columns per tile (0: no tiles) when the inputs read along the inner index do not
    fit in cache: measured on Gaussian D = 64, 1e4 x 1e4 (2.5 MB of y), 1.2-1.3x. Each tile of
    each chunk of rows costs a call and a merge of states in Python (tens of microseconds), so
    only chunks of _TILE_MIN_ROWS rows or more are tiled: attention with 32 rows and 1e6 keys had
    chunks of 2 rows walking 2000 tiles each, at 1.2e7 pairs/s. K-best reductions are never
    tiled: each tile starts its K slots empty, and the insertions that fill them (most of the
    walks, blocks.BufferedKBest) came again per tile: argkmin K=10 of 2e4 x 1e5 ran 4.3e9 pairs/s
    tiled, 9.0e9 untiled."""
    from kernelc.backends.llvm.codegen import SUM_BLOCK

    outer = next((o.type.index[0] for o in kernel.outputs if o.type.index), None)
    if outer is None:
        return 0
    inner = "j" if outer == "i" else "i"
    per_column = sum((p.type.dim.evaluate(sizes.bindings) if p.type.dim is not None else 1)
                     * p.type.dtype.numpy.itemsize for p in kernel.params if p.type.index == (inner,))
    extent, rows = (sizes.m, sizes.n) if inner == "j" else (sizes.n, sizes.m)
    if per_column * extent <= _TILE_ABOVE or rows < _TILE_MIN_ROWS * thread_count() * _CHUNKS_PER_THREAD \
            or _has_k_best(kernel):
        return 0
    return max(SUM_BLOCK, _TILE_BYTES // per_column // SUM_BLOCK * SUM_BLOCK)


def _default_rows(kernel: Kernel, sizes: Sizes, weighted_sums: bool = True) -> int:
    """Rows sharing one pass over the inner index (codegen.row_loop). Measured on this project's
    suite: 2 rows run Gaussian, logsumexp and argmin D=3 1.14-1.21x faster than 4 (whose
    constants and x components no longer fit the 32 vector registers: they were reloaded in the
    pair loop) and faster than 1; wide component sums want 4; the code (and the compile time)
    grows with rows x operations per pair, so long pair computations get 1."""
    if sizes.n * sizes.m < _PARALLEL_WORK:
        return 1
    return _rows_for(kernel, tuple(sorted(sizes.bindings.items())), weighted_sums)


@lru_cache(maxsize=256)
def _reduces(kernel: Kernel, kinds: frozenset[ReduceKind]) -> bool:
    """Whether the kernel has a reduction of one of these kinds (memoized: every call's schedule
    asks)."""
    return any(n.op is Op.REDUCE and n.arg.kind in kinds for n in walk([o.value for o in kernel.outputs]))


def _has_k_best(kernel: Kernel) -> bool:
    return _reduces(kernel, frozenset(K_BEST))


@lru_cache(maxsize=256)
def _rows_for(kernel: Kernel, bindings: tuple[tuple[str, int], ...], weighted_sums: bool) -> int:
    """_default_rows of a kernel and its dimensions, with knob `weighted_sums` on or off
    (memoized: every call's schedule asks, and counting the operations per pair takes about
    0.05 ms)."""
    from kernelc.ir.passes import cost

    if _has_k_best(kernel):
        return 2  # each row brings its insertion code; with the K slots in a vector 1, 2 and 4 rows ran alike
    ops = cost.ops_per_pair(kernel, dict(bindings))
    if weighted_sums and ops <= 1024 and weighted.applies(kernel, dict(bindings)):
        # a weighted sum's pair loop keeps one scalar per row, and each column of v loaded at the
        # block's end serves every row: Gaussian sums at 4096 x 4096, E = 64: 1, 2, 4, 8 rows
        # 40.9, 25.4, 18.0, 24.9 ms; E = 16: 15.6, 11.1, 8.6, 8.1 ms (ops counts the E products)
        return 4
    if ops <= 512 and any(_is_wide_pair_sum(n, dict(bindings)) for n in walk([o.value for o in kernel.outputs])):
        # sqdist/dot of long vectors (built a component at a time, the rows in lockstep): each
        # component of y loaded serves 4 rows; Gaussian D=64 and attention D=E=64 ran 1.4-1.5x
        # faster than with 2 rows (compile 0.45 -> 0.7 s and 0.6 -> 1.0 s)
        return 4
    return 2 if ops <= 256 else 1


_INTERLEAVE_WORK = 1 << 26  # pairs from which a call runs long enough to repay interleave 4's compile time


def _interleave_pays(kernel: Kernel) -> bool:
    """Whether a kernel with 4-row blocks (which only wide component sums get, _rows_for) should
    run 4 vectors side by side in its pair loop (`interleave`): LLVM's cost model chose 2 where a
    block-buffered reduction consumes the sum, and 4 ran 1.1-1.25x faster (logsumexp, argmin of
    D=64 dot/sqdist; Gaussian D=64 too); softmax with long values ran alike and compiled 0.5 s
    longer, so it keeps LLVM's choice. Gaussian D=64 compiles 0.25 s longer (0.7 -> 0.95 s), so
    only calls of _INTERLEAVE_WORK pairs or more (0.1 s and up) ask for it."""
    return not _reduces(kernel, frozenset({ReduceKind.SOFTMAX}))


def _is_wide_pair_sum(node, bindings: dict[str, int]) -> bool:
    """A component sum per pair that codegen builds a component at a time (wide_sum)."""
    from kernelc.backends.llvm.codegen import WIDE_DIM

    return node.op is Op.VSUM and len(node.deps) == 2 and node.src[0].dim is not None \
        and node.src[0].dim.evaluate(bindings) >= WIDE_DIM


_SPLIT_WORK = 1 << 18  # rows * inner above which few rows are split along the inner index
_PARTIAL_FN = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64, ctypes.c_int64,
                               ctypes.c_int64, ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p)


def _state_layout(node, dims: dict[str, int]) -> list[tuple[np.dtype, int]]:
    """(dtype, width) of each state field the partial function stores, as codegen lays them out."""
    kind: ReduceKind = node.arg.kind
    src = node.src[0].dtype
    value = np.dtype(np.float32) if src in (DType.F16, DType.BF16, DType.F32) else src.numpy
    acc = np.dtype(np.float64) if src.is_float else np.dtype(np.int64)
    dim = node.dim.evaluate(dims)
    if kind in (ReduceKind.SUM, ReduceKind.MEAN):
        return [(acc, dim)]
    if kind in (ReduceKind.MAX, ReduceKind.MIN):
        return [(value, dim)]
    if kind in (ReduceKind.ARGMAX, ReduceKind.ARGMIN):
        return [(value, 1), (np.dtype(np.int64), 1)]
    if kind is ReduceKind.LOGSUMEXP:
        return [(value, 1 if len(node.src) == 1 else dim), (value, dim)]
    if kind is ReduceKind.SOFTMAX:
        return [(value, 1), (value, dim), (value, 1)]
    return [(value, dim), (np.dtype(np.int64), dim)]


_HOIST_MIN_ROWS = 8  # below this many rows, a precomputing pass costs more than it saves
_HOIST_MAX_BYTES = 1 << 28


def _hoist_pays(kernel: Kernel, sizes: Sizes) -> bool:
    if min(sizes.n, sizes.m) < _HOIST_MIN_ROWS:
        return False
    stored = hoist.stored_bytes(kernel, {"i": sizes.n, "j": sizes.m}, sizes.bindings)
    return 0 < stored <= _HOIST_MAX_BYTES


@lru_cache(maxsize=256)
def _shape_knobs(kernel: Kernel, sizes: Sizes) -> tuple[tuple[str, Any], ...]:
    """The default knobs that follow from the kernel and the call's sizes. Deciding them runs
    IR passes (hoisting, the pipeline's cut, the weighted-sum match): about a millisecond that
    every call would pay, remembered here per kernel and sizes (the kernel's hash is cached)."""
    hoisting = _hoist_pays(kernel, sizes)
    main = hoist.run(kernel)[-1].kernel if hoisting else kernel  # the stage with the pair loop
    rows = _default_rows(main, sizes)
    interleave = {"interleave": 4} if rows == 4 and sizes.n * sizes.m >= _INTERLEAVE_WORK \
        and _interleave_pays(main) else {}
    pipeline = {"pipeline": True} if pipeline_applies(main, dict(sizes.dims)) else {}
    weighted_sums = {"weighted_sums": True} if weighted.applies(main, dict(sizes.dims)) else {}
    knobs = dict(hoist=hoisting, rows=rows, tile=_default_tile(main, sizes), **interleave, **pipeline, **weighted_sums)
    return tuple(knobs.items())


class LLVMBackend:
    name = "llvm"
    api_version = API_VERSION
    priority = 50  # "auto" prefers higher
    description = "LLVM IR via llvmlite, JIT-compiled for the host CPU, threads over row blocks"
    compiles_in_processes = True  # object code goes to the disk cache: the autotuner compiles in workers

    def available(self) -> Availability:
        try:
            from kernelc.backends.llvm.jit import target_machine

            target_machine()
        except Exception as err:  # llvmlite missing or broken
            return Availability(False, f"llvmlite cannot target this CPU: {type(err).__name__}: {err}")
        return Availability(True)

    def accepts(self, args: Mapping[str, Any]) -> bool:
        return host_arrays_only(args)

    def default_schedule(self, kernel: Kernel, sizes: Sizes) -> Schedule:
        from kernelc.backends.llvm.jit import vector_widths

        return Schedule.of(self.name, dims=sizes.dims, threads=thread_count(), chunks_per_thread=_CHUNKS_PER_THREAD,
                           vector_bits=vector_widths()[0], **dict(_shape_knobs(kernel, sizes)))

    def candidates(self, kernel: Kernel, sizes: Sizes) -> list[Schedule]:
        """The default first; then schedules that differ from it in one knob: rows per register
        block, the vector width, tiles of the inner index (or none), one vector at a time in the
        pair loop, hoisting, the two-stage pair loop (`pipeline`) and weighted sums (with the
        rows they would have without) flipped (where they apply), fewer threads, and row chunks
        of other granularities (load balance against per-chunk overhead). For calls that the
        nearest-neighbour filter takes, only the threads and the chunks: the filter's code does
        not depend on the other knobs, which change the row functions that run only for calls it
        refuses. Attention (and the pair sums) that the fused f32 paths take: also that path
        turned off (the tuner's canonical schedules then leave the row knobs to the generic code
        only)."""
        from kernelc.backends.llvm import fused_attention, fused_sums, nearest
        from kernelc.backends.llvm.jit import vector_widths

        default = self.default_schedule(kernel, sizes)
        knobs = dict(default.knobs)
        options: dict[str, list[Any]] = {
            "rows": [1, 2, 4, 8], "vector_bits": list(vector_widths()),
            "tile": [0] if knobs["tile"] else [4096, 16384], "interleave": [1, 0] if knobs.get("interleave") else [1],
            "hoist": [not knobs["hoist"]] if hoist.candidates(kernel) else [],
            "threads": [max(1, knobs["threads"] // 2)], "chunks_per_thread": [2, 32],
            "pipeline": [False] if knobs.get("pipeline") else [],
            "weighted_sums": [False] if knobs.get("weighted_sums") else []}
        near = nearest.match(kernel, dict(sizes.dims))
        if near is not None and sizes.n >= near.min_rows and near.min_points <= sizes.m < 2 ** 31:
            options = {knob: options[knob] for knob in ("threads", "chunks_per_thread")}
        if fused_attention.match(kernel, dict(sizes.dims)) is not None:
            options["fused_attention"] = [False]  # the generic row functions, with the default knobs
        elif fused_sums.match(kernel, dict(sizes.dims)) is not None:
            options["fused_sums"] = [False]
        # without weighted sums, the rows the pair loop's E accumulators want (E = 200 in 4 rows
        # compiled for minutes); without the fused attention, the fused sums off too where they
        # take the kernel (a softmax or logsumexp of f(c dot)), so that the generic code runs
        main = hoist.run(kernel)[-1].kernel if knobs["hoist"] else kernel
        with_it = {("weighted_sums", False): {"rows": _default_rows(main, sizes, weighted_sums=False)},
                   ("fused_attention", False): {"fused_sums": False}}
        found = [default]
        for knob, values in options.items():
            for value in values:
                s = Schedule(self.name, tuple(sorted((knobs | {knob: value} | with_it.get((knob, value), {})).items())))
                if s not in found and (knob != "chunks_per_thread" or knobs["threads"] > 1):
                    found.append(s)
        return found

    def canonical_schedule(self, kernel: Kernel, schedule: Schedule) -> Schedule:
        """The schedule without the knobs this kernel's code ignores under it (the autotuner
        times one candidate of each): attention on the matrix unit (a tolerance variant) or in
        the fused f32 micro-kernels, and the fused pair sums, use only the threads and chunks,
        not the row functions' knobs; under a tolerance the pair loops run in one stage
        (`pipeline` is dropped)."""
        from kernelc.backends.llvm import amx, fused_attention, fused_sums

        dims = dict(schedule.get("dims") or ())
        on_tiles = _matrix_unit(schedule) and amx.unavailable() is None and amx.match(kernel, dims) is not None
        fused = (schedule.get("fused_attention") is not False and fused_attention.match(kernel, dims) is not None) \
            or (schedule.get("fused_sums") is not False and fused_sums.match(kernel, dims) is not None)
        if on_tiles or fused:
            kept = ("dims", "threads", "chunks_per_thread", "approx_math", "matrix_unit", "optimize")
            if not on_tiles:  # (on tiles the fused paths' knobs do not matter; off, one gives way to the other)
                kept += ("fused_attention", "fused_sums")
            return Schedule(schedule.backend, tuple((k, v) for k, v in schedule.knobs if k in kept))
        if schedule.get("approx_math"):  # the row functions run their pair loops in one stage then
            return Schedule(schedule.backend, tuple((k, v) for k, v in schedule.knobs if k != "pipeline"))
        return schedule

    def target(self) -> str:
        """The machine code generated depends on: CPU name and features."""
        from kernelc.backends.llvm.jit import host_description

        return host_description()

    def compile(self, kernel: Kernel, schedule: Schedule) -> Executable:
        return LLVMExecutable(kernel, schedule)


backend = LLVMBackend()
