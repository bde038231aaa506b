"""The one printer of the IR. Its text is deterministic and canonical: it is part of cache keys
and the golden output of tests, so change it only on purpose."""

from __future__ import annotations

from kernelc.ir.dims import Dim
from kernelc.ir.nodes import Kernel, Node, walk
from kernelc.ir.ops import Op


def _fmt_arg(node: Node) -> str:
    arg = node.arg
    if node.op is Op.CONST:
        return repr(arg) if not isinstance(arg, float) else _fmt_float(arg)
    if node.op is Op.SLICE:
        start, stop = arg  # type: ignore[misc]
        return f"{start}:{stop}"
    if arg is None:
        return ""
    return str(arg)


def _fmt_float(v: float) -> str:
    if v != v:
        return "nan"
    if v in (float("inf"), float("-inf")):
        return "inf" if v > 0 else "-inf"
    return repr(v)


def _fmt_type(node: Node) -> str:
    deps = "".join(sorted(node.deps))
    dim = f"<{node.dim}>" if node.dim != Dim(1) else ""
    return f"{node.dtype}{dim}" + (f"[{deps}]" if deps else "")


def print_kernel(kernel: Kernel) -> str:
    params = ", ".join(f"{p.name}: {p.type}" for p in kernel.params)
    outs = ", ".join(str(o.type) for o in kernel.outputs)
    outs = outs if len(kernel.outputs) == 1 else f"({outs})"
    lines = [f"kernel {kernel.name}({params}) -> {outs} {{"]
    names: dict[Node, str] = {}
    for node in walk([o.value for o in kernel.outputs]):
        name = f"%{len(names)}"
        names[node] = name
        operands = ", ".join(names[s] for s in node.src)
        arg = _fmt_arg(node)
        body = " ".join(part for part in (str(node.op), arg, operands) if part)
        lines.append(f"  {name} = {body} : {_fmt_type(node)}")
    for check in kernel.checks:
        lines.append(f"  check {check.low} <= {check.high}")
    lines.append("  return " + ", ".join(names[o.value] for o in kernel.outputs))
    lines.append("}")
    return "\n".join(lines)
