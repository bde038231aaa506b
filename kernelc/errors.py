"""The exceptions a user can see. Every mistake in a source or a call is one of these."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SourcePos:
    """A place in a kernel source: 1-based line and column, and how many characters it spans."""

    line: int
    column: int
    length: int = 1


class KernelcError(Exception):
    """Base class of every error kernelc raises on purpose."""


class KernelSourceError(KernelcError):
    """An error at a place in a source: shows the line, a caret under the place and a hint."""

    kind = "error"

    def __init__(
        self,
        message: str,
        pos: SourcePos | None = None,
        source: str | None = None,
        hint: str | None = None,
        filename: str | None = None,
    ) -> None:
        self.message = message
        self.pos = pos
        self.hint = hint
        self.filename = filename
        self.source = source
        super().__init__(self._render())

    @property
    def line(self) -> int | None:
        return self.pos.line if self.pos else None

    @property
    def column(self) -> int | None:
        return self.pos.column if self.pos else None

    @property
    def source_line(self) -> str | None:
        if self.source is None or self.pos is None:
            return None
        lines = self.source.splitlines()
        return lines[self.pos.line - 1] if 0 < self.pos.line <= len(lines) else ""

    def with_context(self, source: str, filename: str | None = None) -> "KernelSourceError":
        """The same error, told against `source` (the front end attaches it once, at the top)."""
        return type(self)(self.message, self.pos, source, self.hint, filename or self.filename)

    def _render(self) -> str:
        where = ""
        if self.pos is not None:
            where = f"line {self.pos.line}, column {self.pos.column}: "
        if self.filename:
            where = f"{self.filename}, {where}" if where else f"{self.filename}: "
        text = where + self.message
        src_line = self.source_line
        if src_line is not None and self.pos is not None:
            shown, start = _window(src_line.expandtabs(1), self.pos.column - 1)
            span = max(1, min(self.pos.length, len(shown) - start, 80))
            text += f"\n    {shown}\n    {' ' * start}^{'~' * (span - 1)}"
        if self.hint:
            text += f"\nhint: {self.hint}"
        return text


def _window(line: str, start: int, width: int = 100) -> tuple[str, int]:
    """A long source line cut to about `width` characters around the column `start` (0-based)."""
    if len(line) <= width:
        return line, start
    lo = max(0, min(start - width // 3, len(line) - width))
    cut = line[lo:lo + width]
    prefix = "..." if lo > 0 else ""
    suffix = "..." if lo + width < len(line) else ""
    return prefix + cut + suffix, start - lo + len(prefix)


class KernelSyntaxError(KernelSourceError):
    """The source does not follow the grammar of the kernelc language."""


class KernelTypeError(KernelSourceError):
    """The source parses but breaks a typing rule (dtype, dimension, index, reduction)."""


class KernelArgumentError(KernelcError, TypeError):
    """A call's arguments do not fit the kernel's parameters. `argument` names the culprit."""

    def __init__(self, argument: str | None, message: str, hint: str | None = None) -> None:
        self.argument = argument
        self.message = message
        self.hint = hint
        prefix = f"argument '{argument}': " if argument else ""
        text = prefix + message + (f"\nhint: {hint}" if hint else "")
        super().__init__(text)


class BackendUnavailableError(KernelcError):
    """A backend was asked for by name but cannot run here; the message says why."""


class UnsupportedKernelError(KernelcError):
    """A backend cannot run this (valid) kernel; the message says which construct. `backend="auto"`
    then falls back to another backend."""


class CompilationError(KernelcError):
    """A backend failed to compile a kernel that type-checked. This is a kernelc bug: please report it."""
