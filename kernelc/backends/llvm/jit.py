"""llvmlite plumbing: the host target, the new pass manager pipeline, and the JIT engine.

One engine per process; each kernel module is optimized (speed level 3, loop and SLP
vectorization), added to it and finalized. libm functions the generated code calls are bound
by address, so the JIT never depends on how the process happens to have loaded libm.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import threading
from functools import lru_cache

import llvmlite.binding as llvm

_lock = threading.Lock()
_loaded: dict[str, dict[str, int]] = {}  # cache key -> symbol addresses already in the engine
LIBM_FUNCTIONS = ("sin", "cos", "tan", "asin", "acos", "atan", "sinh", "cosh", "tanh", "expm1", "log1p", "erf",
                  "atan2")
# glibc's libmvec vector variants (x86-64 vector function ABI): ISA letter -> (vector bits, host
# features it needs); a variant's name is _ZGV<isa>N<lanes><one v per argument>_<function>
_VECTOR_ISAS = {"e": (512, ("avx512f", "avx512dq")), "d": (256, ("avx2", "fma"))}


@lru_cache(maxsize=None)
def target_machine(vector_bits: int = 0) -> llvm.TargetMachine:
    """The host CPU; `vector_bits` 512 lets the vectorizers use AVX-512's full width (LLVM's
    tuning for recent Intel CPUs otherwise prefers 256-bit vectors), 0 keeps LLVM's choice."""
    llvm.initialize_native_target()
    llvm.initialize_native_asmprinter()
    # A vectorized remainder loop after the vectorized loop: the pair loops run whole vectors
    # but for the last block, and it doubled the machine code (and compile time) of wide
    # kernels. (A process-wide LLVM option: other llvmlite users, e.g. Numba, get it too.)
    llvm.set_option("", "-enable-epilogue-vectorization=0")
    target = llvm.Target.from_default_triple()
    features = llvm.get_host_cpu_features().flatten()
    if vector_bits == 512:
        features += ",-prefer-256-bit"
    tm = target.create_target_machine(cpu=llvm.get_host_cpu_name(), features=features, opt=3, reloc="default",
                                       codemodel="jitdefault")
    _bind_libm()
    return tm


@lru_cache(maxsize=1)
def vector_widths() -> tuple[int, ...]:
    """The vector widths (bits) a schedule may ask for on this host: 512 only with AVX-512
    (asked once: reading the host's features costs about 0.1 ms, and every call's schedule asks)."""
    target_machine()
    return (512, 256) if llvm.get_host_cpu_features().get("avx512f") else (256,)


def host_description() -> str:
    """CPU name and features: part of every cache key."""
    target_machine()
    return f"{llvm.get_default_triple()}|{llvm.get_host_cpu_name()}|{llvm.get_host_cpu_features().flatten()}" \
        f"|libmvec={_libmvec() is not None}"


def _bind_libm() -> None:
    name = ctypes.util.find_library("m")
    libm = ctypes.CDLL(name) if name else ctypes.CDLL(None)
    for fn in LIBM_FUNCTIONS:
        for sym in (fn, fn + "f"):
            addr = ctypes.cast(getattr(libm, sym), ctypes.c_void_p).value
            llvm.add_symbol(f"kc_{sym}", addr)
            # bound now, not at code generation: object code from the disk cache calls them too
            vector_variants(sym, 2 if fn == "atan2" else 1)


@lru_cache(maxsize=1)
def _libmvec() -> ctypes.CDLL | None:
    """glibc's vector math library, where the process can load it (glibc >= 2.22 on x86-64)."""
    name = ctypes.util.find_library("mvec")
    try:
        return ctypes.CDLL(name or "libmvec.so.1")
    except OSError:
        return None


@lru_cache(maxsize=None)
def vector_variants(function: str, arity: int = 1) -> tuple[tuple[int, str], ...]:
    """(lanes, symbol) of each libmvec variant of libm's `function` (e.g. "sinf") that this
    host can run, bound in the JIT: the loop vectorizer calls one per vector of lanes instead of
    the scalar function once per lane (a vector attribute on the call, `ops.Math.libm`)."""
    lib, features = _libmvec(), llvm.get_host_cpu_features()
    if lib is None:
        return ()
    found = []
    single = function.endswith("f") and function[:-1] in LIBM_FUNCTIONS  # sinf, erff (not erf)
    for isa, (bits, needs) in _VECTOR_ISAS.items():
        lanes = bits // (32 if single else 64)
        symbol = f"_ZGV{isa}N{lanes}{'v' * arity}_{function}"
        if all(features.get(f) for f in needs) and hasattr(lib, symbol):
            llvm.add_symbol(symbol, ctypes.cast(getattr(lib, symbol), ctypes.c_void_p).value)
            found.append((lanes, symbol))
    return tuple(found)


def optimize(module: llvm.ModuleRef, vector_bits: int = 0) -> None:
    pto = llvm.create_pipeline_tuning_options(speed_level=3)
    pto.loop_vectorization = True
    pto.slp_vectorization = True
    pto.loop_unrolling = True
    pb = llvm.create_pass_builder(target_machine(vector_bits), pto)
    pm = pb.getModulePassManager()
    pm.run(module, pb)


@lru_cache(maxsize=1)
def _engine() -> llvm.ExecutionEngine:
    tm = target_machine()
    backing = llvm.parse_assembly("")
    return llvm.create_mcjit_compiler(backing, tm)


def optimized_ir(text: str, vector_bits: int = 0) -> str:
    """The module `text` after the same optimization as compile_ir, for showing generated code."""
    with _lock:
        tm = target_machine(vector_bits)
        module = llvm.parse_assembly(text)
        module.triple = tm.triple
        module.data_layout = str(tm.target_data)
        optimize(module, vector_bits)
        return str(module)


def compile_ir(text_fn, symbols: list[str], key: str | None = None,
               vector_bits: int = 0) -> tuple[dict[str, int], str]:
    """JIT the module that `text_fn()` builds; the addresses of `symbols`, and the optimized IR
    ("" when the object code came from the disk cache under `key`, skipping codegen entirely)."""
    from kernelc.backends import cache

    with _lock:
        if key in _loaded:  # the same code is already in this process
            return _loaded[key], ""
        tm = target_machine(vector_bits)
        engine = _engine()
        obj = cache.load(key, "o") if key else None
        optimized = ""
        if obj is None:
            module = llvm.parse_assembly(text_fn())
            module.verify()
            module.triple = tm.triple
            module.data_layout = str(tm.target_data)
            optimize(module, vector_bits)
            optimized = str(module)
            obj = tm.emit_object(module)
            if key:
                cache.store(key, "o", obj)
        engine.add_object_file(llvm.ObjectFileRef.from_data(obj))
        engine.finalize_object()
        addresses = {s: engine.get_function_address(s) for s in symbols}
        if key:
            _loaded[key] = addresses
        return addresses, optimized
