"""IR-to-IR passes, one per module: simplify, cse, fuse and precision rewrite a kernel; hoist
and split_passes cut it into stages for backends that make one pass per row.

`optimize` runs the default pipeline (only rewrites that give bit-identical results) and can
record the kernel after each pass for `kernelc explain --passes`.
"""

from __future__ import annotations

from typing import Callable

from kernelc.ir.nodes import Kernel

Pass = Callable[[Kernel], Kernel]


def _simplify(kernel: Kernel) -> Kernel:
    from kernelc.ir.passes import simplify

    return simplify.run(kernel)


def _cse(kernel: Kernel) -> Kernel:
    from kernelc.ir.passes import cse

    return cse.run(kernel)


PIPELINE: tuple[tuple[str, Pass], ...] = (("simplify", _simplify), ("cse", _cse))


def optimize(kernel: Kernel, trace: list[tuple[str, Kernel]] | None = None) -> Kernel:
    """`kernel` after the default pipeline; `trace` receives (pass name, kernel after it)."""
    for name, run in PIPELINE:
        kernel = run(kernel)
        if trace is not None:
            trace.append((name, kernel))
    return kernel
