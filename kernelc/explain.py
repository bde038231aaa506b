"""What `kernelc explain` shows: the IR after each optimizer pass, with its cost, and the plan."""

from __future__ import annotations

from typing import Any

from kernelc.ir.passes import cost, fuse, hoist
from kernelc.ir.printer import print_kernel


def _cost_line(kernel: Any, bindings: dict[str, int]) -> str:
    plain = cost.ops_per_pair(kernel, bindings)
    weighted = cost.ops_per_pair(kernel, bindings, weighted=True)
    return f"{plain} operations per pair (weighted {weighted})"


def passes(k: Any, bindings: dict[str, int] | None = None) -> str:
    """The typed IR, then the IR after each pass of the pipeline, then the stages hoisting
    makes and the passes over each index. Costs use `bindings` for dimension symbols (default 3)."""
    bindings = bindings or {s: 3 for s in k.ir.symbols}
    where = ", ".join(f"{s}={v}" for s, v in bindings.items())
    parts = [f"=== typed IR: {_cost_line(k.ir, bindings)}{f' at {where}' if where else ''}", print_kernel(k.ir)]
    if not k.optimize:
        parts.append("=== optimizer off (optimize=False or KERNELC_OPTIMIZE=0)")
        return "\n".join(parts)
    previous = print_kernel(k.ir)
    for name, kernel in k.trace:
        text = print_kernel(kernel)
        parts.append(f"=== after {name}: {_cost_line(kernel, bindings)}" + (" (unchanged)" if text == previous else ""))
        if text != previous:
            parts.append(text)
        previous = text
    stages = hoist.run(k.optimized)
    if len(stages) > 1:
        parts.append(f"=== after hoist (backends that run rows, when N and M allow): "
                     f"{_cost_line(stages[-1].kernel, bindings)}")
        parts += [print_kernel(s.kernel) for s in stages]
    parts.append("=== fused passes")
    parts += fuse.groups(k.optimized)
    return "\n".join(parts)
