"""The sign-bit analysis (kernelc.ir.signs) against evaluation on edge values."""

import numpy as np
import pytest
from hypothesis import given, note
from hypothesis import strategies as st

import kernelc as kc
from kernelc.ir import signs
from kernelc.ir.ops import Op

EDGES = np.array([0.0, -0.0, 1.0, -1.0, 2.5, -3.0, 1e-300, -1e-300, 1e300, -1e300, np.inf, -np.inf, np.nan])


def _output(source: str):
    k = kc.kernel(source)
    return k, k.optimized.outputs[0].value


@pytest.mark.parametrize("expr, known", [
    ("exp(-sqdist(x, y) / (2 * s * s))", True),   # the Gaussian: negative whatever s is
    ("exp(-sqrt(5) * sqrt(sqdist(x, y)))", True),  # Matérn
    ("exp(x[0] * -x[0])", True),
    ("exp(-abs(x[0] - y[0]))", True),
    ("exp(x[0] - y[0])", False),
    ("exp(-x[0] * y[0])", False),
    ("exp(-sqrt(x[0]))", False),  # sqrt keeps its operand's sign bit
])
def test_exp_arguments_known_nonpositive(expr, known):
    _, out = _output(f"kernel t(x: f64[i, D], y: f64[j, D], s: f64) -> f64[i, j] {{ return {expr} }}")
    exp = out if out.op is Op.EXP else next(n for n in _walk(out) if n.op is Op.EXP)
    assert signs.nonpositive(exp.src[0]) is known


def _walk(node):
    yield node
    for s in node.src:
        yield from _walk(s)


LEAVES = st.sampled_from(["x", "y", "s", "2.0", "-0.5", "0.0", "-0.0"])
UNARY = st.sampled_from(["-({})", "square({})", "abs({})", "exp({})", "sqrt({})"])
BINARY = st.sampled_from(["({}) * ({})", "({}) / ({})", "({}) + ({})", "({}) - ({})"])
EXPRS = st.recursive(LEAVES, lambda inner: st.one_of(
    st.tuples(UNARY, inner).map(lambda t: t[0].format(t[1])),
    st.tuples(BINARY, inner, inner).map(lambda t: t[0].format(t[1], t[2]))), max_leaves=6)


@given(expr=EXPRS)
def test_known_sign_bits_hold_on_edge_values(expr):
    """Where the analysis knows a sign bit, every non-NaN value has it (zeros, infinities and
    huge and tiny values included), in the NumPy reference's evaluation."""
    note(expr)
    k, out = _output(f"kernel t(x: f64[i], y: f64[j], s: f64) -> f64[i, j] {{ return {expr} }}")
    s = signs.sign(out)
    if s.unknowns:
        return
    for value in EDGES:
        with np.errstate(all="ignore"):
            got = np.asarray(k(EDGES, EDGES, np.float64(value), backend="numpy"))
        real = got[~np.isnan(got)]
        assert (np.signbit(real) == s.negative).all(), (value, got)
