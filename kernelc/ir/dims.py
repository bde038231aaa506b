"""Vector dimensions: integers or linear expressions of dimension symbols (`D`, `D + 3`, `D - 1`).

Symbolic dimensions are kept exact so the type checker can tell `D` from `E` before any call,
and a call can check every static slice and component index once the symbols are bound.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping


@dataclass(frozen=True, order=True)
class Dim:
    """const + sum(coeff * symbol). Two dims are equal exactly when the expressions are."""

    const: int = 0
    terms: tuple[tuple[str, int], ...] = ()

    @staticmethod
    def of(value: "int | str | Dim") -> "Dim":
        if isinstance(value, Dim):
            return value
        if isinstance(value, str):
            return Dim(0, ((value, 1),))
        return Dim(int(value), ())

    @property
    def is_const(self) -> bool:
        return not self.terms

    @property
    def symbols(self) -> frozenset[str]:
        return frozenset(s for s, _ in self.terms)

    def __add__(self, other: "Dim | int") -> "Dim":
        other = Dim.of(other)
        coeffs = dict(self.terms)
        for sym, c in other.terms:
            coeffs[sym] = coeffs.get(sym, 0) + c
        terms = tuple(sorted((s, c) for s, c in coeffs.items() if c != 0))
        return Dim(self.const + other.const, terms)

    def __neg__(self) -> "Dim":
        return Dim(-self.const, tuple((s, -c) for s, c in self.terms))

    def __sub__(self, other: "Dim | int") -> "Dim":
        return self + (-Dim.of(other))

    def evaluate(self, bindings: Mapping[str, int]) -> int:
        return self.const + sum(c * bindings[s] for s, c in self.terms)

    def __str__(self) -> str:
        parts: list[str] = []
        for sym, c in self.terms:
            sign = "-" if c < 0 else "+"
            mag = "" if abs(c) == 1 else f"{abs(c)}*"
            parts.append(f"{sign} {mag}{sym}")
        if self.const or not parts:
            parts.append(f"{'-' if self.const < 0 else '+'} {abs(self.const)}")
        text = " ".join(parts)
        return text[2:] if text.startswith("+ ") else "-" + text[2:]


ONE = Dim(1)
