"""The IR verifier: every node obeys its op's typing rule and every output fits its declared type.

Run after the front end and around every pass in tests, or always with KERNELC_VERIFY=1.
A failure is a kernelc bug, never a user's mistake, hence the plain AssertionError subclass.
"""

from __future__ import annotations

from kernelc.ir import build
from kernelc.ir.nodes import Kernel, Node, walk
from kernelc.ir.ops import LEAF_OPS


class IRVerificationError(AssertionError):
    pass


def verify(kernel: Kernel) -> Kernel:
    names = [p.name for p in kernel.params]
    if len(set(names)) != len(names):
        raise IRVerificationError(f"duplicate parameter names in {kernel.name}")
    params = {p.name: p for p in kernel.params}
    for node in walk([o.value for o in kernel.outputs]):
        _verify_node(node, params)
    for out in kernel.outputs:
        value, want = out.value, out.type
        if value.dtype != want.dtype:
            raise IRVerificationError(f"output dtype {value.dtype} != declared {want.dtype}")
        if not value.deps <= set(want.index):
            raise IRVerificationError(f"output depends on {sorted(value.deps)} but is indexed by {want.index}")
        if value.dim != want.value_dim:
            raise IRVerificationError(f"output dimension {value.dim} != declared {want.value_dim}")
    return kernel


def _verify_node(node: Node, params: dict) -> None:
    if node.op in LEAF_OPS:
        if node.src:
            raise IRVerificationError(f"leaf {node.op} has operands")
        if node.op.value == "param":
            p = params.get(node.arg)
            if p is None or build.param(p.name, p.type) != node:
                raise IRVerificationError(f"param node {node.arg!r} does not match the kernel's parameters")
        return
    try:
        sig = build.infer(node.op, node.src, node.arg)
    except build.IRTypingError as err:
        raise IRVerificationError(f"{node.op}: {err.message}") from None
    if sig != (node.dtype, node.dim, node.deps):
        raise IRVerificationError(f"{node.op}: recorded type {(node.dtype, node.dim, node.deps)} != inferred {sig}")
