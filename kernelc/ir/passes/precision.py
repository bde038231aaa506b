"""precision: lower-precision variants of a kernel, offered only under a `tolerance=`.

Without a tolerance, dtypes follow LANGUAGE.md's rules as the front end typed them (f16/bf16
computed in f32, f32 in f32, f64 in f64, narrow sums accumulated in at least f32) and nothing
here runs. With one, `variants` lists rewrites that are cheaper and less accurate; a variant is
used only if its measured relative error on sampled output rows, against a float64 evaluation,
stays within the tolerance, and the cheapest such variant wins (the measuring is done by
`kernelc/backends/autotune/measure.py`, which runs backends; this module only rewrites IR).
"""

from __future__ import annotations

import numpy as np

from kernelc.ir import build
from kernelc.ir.dtypes import DType
from kernelc.ir.nodes import Kernel, Node, Output, walk
from kernelc.ir.ops import Op
from kernelc.ir.passes import cost, cse, fuse, hoist, simplify
from kernelc.ir.passes.rewrite import rebuild
from kernelc.ir.printer import print_kernel
from kernelc.ir.verify import verify


def to_f32(kernel: Kernel) -> Kernel:
    """An f64 kernel computed in f32: f64 parameters read then rounded, constants rounded, f64
    casts made f32 casts, and results widened back to the declared f64 outputs."""
    done: dict[Node, Node] = {}
    for node in walk([o.value for o in kernel.outputs]):
        if node.op is Op.PARAM:
            new = build.make(Op.CAST, node, arg=DType.F32) if node.dtype is DType.F64 else node
        elif node.op is Op.CONST:
            new = build.const(float(np.float32(node.arg)), DType.F32) if node.dtype is DType.F64 else node
        elif node.op is Op.CAST and node.arg is DType.F64:
            new = build.make(Op.CAST, done[node.src[0]], arg=DType.F32)
        else:
            new = rebuild(node, tuple(done[s] for s in node.src))
        done[node] = new
    outputs = []
    for out in kernel.outputs:
        value = done[out.value]
        if value.dtype != out.type.dtype:
            value = build.make(Op.CAST, value, arg=out.type.dtype)
        outputs.append(Output(value, out.type))
    return verify(Kernel(kernel.name, kernel.params, tuple(outputs), kernel.symbols, kernel.checks))


def variants(kernel: Kernel) -> list[tuple[str, Kernel]]:
    """(name, kernel) of each distinct lower-precision variant of an optimized kernel. Every
    variant runs with approximate math functions allowed (the `approx_math` schedule knob);
    "approx-math" is the kernel itself with only that."""
    fast = cse.run(simplify.run(kernel, fast=True))
    found = [("approx-math", kernel), ("fast-math", fast)]
    if fuse.has_pair_sqdist(fast):
        found.append(("fast-math+expanded-sqdist", cse.run(simplify.run(fuse.run(fast)))))
    if any(p.type.dtype is DType.F64 for p in kernel.params):
        found += [(f"{name}+f32", cse.run(simplify.run(to_f32(k), fast=True))) for name, k in list(found)]
    seen: set[str] = set()
    unique = []
    for name, k in found:
        text = print_kernel(k)
        if text not in seen:
            seen.add(text)
            unique.append((name, k))
    return unique


def weighted_cost(kernel: Kernel, bindings: dict[str, int], approx: bool = False) -> int:
    """Weighted operations per pair once inner-index-only values are hoisted, as backends run it
    (`approx`: with approximate math functions, which cost about half)."""
    return cost.ops_per_pair(hoist.run(kernel)[-1].kernel, bindings, weighted=True, approx=approx)
