"""The front end: source text to typed IR kernels, with positioned, explained errors."""

from __future__ import annotations

from kernelc.dsl.lower import lower_module
from kernelc.dsl.parser import parse
from kernelc.errors import KernelSourceError, KernelSyntaxError, SourcePos
from kernelc.ir.nodes import Kernel


def compile_source(source: str, filename: str | None = None) -> list[Kernel]:
    """Parse and type-check every kernel in `source`. Errors carry the source line and a caret."""
    if not isinstance(source, str):
        raise KernelSyntaxError(f"a kernel source must be a str, not {type(source).__name__}")
    try:
        return lower_module(parse(source))
    except KernelSourceError as err:
        raise err.with_context(source, filename) from None
    except RecursionError:
        err = KernelSyntaxError("this source is nested too deeply", SourcePos(1, 1),
                                hint="bind intermediate values to names instead of one huge expression")
        raise err.with_context(source, filename) from None


__all__ = ["compile_source", "parse"]
