"""Fuzzing the front end and the runtime: whatever the text, kernelc raises nothing but
`KernelcError` subclasses, and source errors carry a position (LANGUAGE.md §8)."""

from pathlib import Path

import numpy as np
from hypothesis import example, given, settings
from hypothesis import strategies as st

import kernelc as kc
from kernelc.explain import random_arguments

ROOT = Path(__file__).resolve().parents[1]
SEEDS = [p.read_text() for p in sorted((ROOT / "examples").glob("*.kc"))]

TOKENS = [
    "kernel", "return", "and", "or", "not", "true", "false", "inf", "nan", "pi", "f16", "bf16", "f32", "f64",
    "i32", "i64", "bool", "i", "j", "D", "K", "x", "y", "s", "b", "f", "sum", "mean", "max", "min", "argmin",
    "argkmin", "kmin", "logsumexp", "softmax", "exp", "sqdist", "dot", "where", "concat", "norm", "clamp",
    "(", ")", "[", "]", "{", "}", ",", ":", ";", "->", "=", "==", "<", "<=", "+", "-", "*", "/", "**", "\n",
    "0", "1", "3", "2.5", ".5", "1e-3", "1e400", "99999999999999999999999", "#c\n", "@", "$", "é", "\t", "\\",
]


def assert_kernelc_error_only(source: str) -> None:
    try:
        module = kc.compile(source)
    except kc.KernelSyntaxError as err:
        assert err.line is not None and err.column is not None, repr(err)
        str(err)
        return
    except kc.KernelTypeError as err:
        assert err.line is not None and err.column is not None, repr(err)
        str(err)
        return
    for kernel in module:
        kernel.explain()
        try:
            args = random_arguments(kernel, n=3, m=4, dims={}, seed=0)
            kernel(**args, backend="numpy")
        except kc.KernelcError:
            pass


@settings(max_examples=300)
@given(st.lists(st.sampled_from(TOKENS), max_size=40))
def test_random_token_streams(tokens):
    assert_kernelc_error_only(" ".join(tokens))


@settings(max_examples=200)
@given(st.text(max_size=80))
@example("kernel f(x: f32) -> f32 { return x }\x00")
@example("kernel f(x: f32) -> f32 { return x }\r\n")
def test_random_text(text):
    assert_kernelc_error_only(text)


mutation = st.tuples(st.sampled_from(["delete", "insert", "replace", "duplicate"]), st.integers(0, 10_000),
                     st.integers(1, 12), st.sampled_from(TOKENS))


@settings(max_examples=300)
@given(st.sampled_from(SEEDS), st.lists(mutation, min_size=1, max_size=4))
def test_mutated_valid_programs(source, mutations):
    for kind, at, length, token in mutations:
        at %= len(source) + 1
        if kind == "delete":
            source = source[:at] + source[at + length:]
        elif kind == "insert":
            source = source[:at] + " " + token + " " + source[at:]
        elif kind == "replace":
            source = source[:at] + token + source[at + length:]
        else:
            source = source[:at] + source[at:at + length] + source[at:]
    assert_kernelc_error_only(source)


def test_seeds_are_valid():
    assert SEEDS
    for source in SEEDS:
        for kernel in kc.compile(source):
            out = kernel(**random_arguments(kernel, n=3, m=4, dims={}, seed=0), backend="numpy")
            for o in out if isinstance(out, tuple) else (out,):
                assert isinstance(o, np.ndarray)
