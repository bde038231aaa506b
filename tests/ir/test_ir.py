"""The IR: tables cover every op, the printer is stable (golden files), the verifier catches
broken nodes, and every reduction's monoid gives the same result however the range is split."""

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import kernelc as kc
from kernelc.dsl.builtins import BINARY_FUNCTIONS, UNARY_FUNCTIONS
from kernelc.dsl.parser import _ToAst, grammar_rules
from kernelc.ir import build, reference
from kernelc.ir.dims import Dim
from kernelc.ir.dtypes import DType
from kernelc.ir.monoids import MONOIDS
from kernelc.ir.nodes import Kernel, Output, TensorType
from kernelc.ir.ops import (
    BINARY_OPS,
    COMPONENT_REDUCE_OPS,
    ELEMENTWISE_OPS,
    FLOAT_UNARY_OPS,
    LEAF_OPS,
    UNARY_OPS,
    VECTOR_OPS,
    Op,
    ReduceKind,
)
from kernelc.ir.verify import IRVerificationError, verify

GOLDEN = Path(__file__).with_name("golden")
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_op_groups_partition_the_ops():
    groups = [LEAF_OPS, ELEMENTWISE_OPS, VECTOR_OPS, {Op.REDUCE}]
    assert set().union(*groups) == set(Op)
    assert sum(len(g) for g in groups) == len(Op)


def test_reference_tables_cover_every_op():
    assert set(reference.UNARY) == UNARY_OPS - {Op.CAST}
    assert set(reference.BINARY) == BINARY_OPS
    assert set(reference.COMPONENT) == COMPONENT_REDUCE_OPS
    assert set(MONOIDS) == set(ReduceKind)


def test_reference_unary_ops_take_0d_values():
    """Per-call values (a scalar parameter's function, evaluated once by the fused paths) are 0-d
    arrays: every float unary op gives a float64 value of them (erf, a Python function mapped
    over arrays, gave a Python float), as of any other shape."""
    for op in sorted(FLOAT_UNARY_OPS, key=lambda o: o.name):
        value = reference.evaluate_elementwise(op, [np.asarray(0.5)])
        whole = reference.evaluate_elementwise(op, [np.array([0.5, 0.25])])
        assert isinstance(value, (np.ndarray, np.floating)) and value.dtype == np.float64, op
        np.testing.assert_array_equal(value, whole[0], err_msg=str(op))


def test_every_function_name_maps_to_an_op():
    assert set(UNARY_FUNCTIONS.values()) | set(BINARY_FUNCTIONS.values()) <= ELEMENTWISE_OPS


def test_every_grammar_rule_has_a_handler():
    missing = {r for r in grammar_rules() if not hasattr(_ToAst, r)}
    assert not missing, missing


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.kc")), ids=lambda p: p.stem)
def test_printer_golden(path):
    text = "\n\n".join(k.explain() for k in kc.load(path)) + "\n"
    golden = GOLDEN / f"{path.stem}.ir"
    if not golden.exists():  # first run writes it; review and commit
        golden.write_text(text)
    assert text == golden.read_text()


def test_printing_is_deterministic_and_structural():
    src = "kernel f(x: f32[i, D], y: f32[j, D]) -> f32[i] { return sum[j](exp(-sqdist(x, y))) }"
    a, b = kc.kernel(src), kc.kernel(src)
    assert a.explain() == b.explain()
    assert a.ir == b.ir and hash(a.ir.outputs[0].value) == hash(b.ir.outputs[0].value)
    c = kc.kernel(src.replace("exp(-", "exp(2 * -"))
    assert c.ir != a.ir


def test_constants_compare_by_bits():
    assert build.const(0.0, DType.F32) != build.const(-0.0, DType.F32)
    assert build.const(float("nan"), DType.F32) == build.const(float("nan"), DType.F32)
    assert build.const(1, DType.I64) != build.const(1.0, DType.F64)


def test_verifier_catches_wrong_types():
    x = build.param("x", TensorType(DType.F32, ("i",)))
    bad = build.Node(Op.EXP, DType.F64, Dim(1), frozenset({"i"}), (x,))
    k = Kernel("k", (kc.api.nodes.Param("x", TensorType(DType.F32, ("i",))),), (Output(bad, TensorType(DType.F64, ("i",))),), ())
    with pytest.raises(IRVerificationError, match="recorded type"):
        verify(k)
    wrong_out = Kernel("k", k.params, (Output(build.make(Op.EXP, x), TensorType(DType.F32, ())),), ())
    with pytest.raises(IRVerificationError, match="depends on"):
        verify(wrong_out)


def test_build_rejects_mixed_dtypes_and_nested_reductions():
    x = build.param("x", TensorType(DType.F32, ("i",)))
    y = build.param("y", TensorType(DType.F64, ("j",)))
    with pytest.raises(build.IRTypingError, match="different dtypes"):
        build.make(Op.ADD, x, y)
    r = build.make(Op.REDUCE, x, arg=kc.api.nodes.Reduction(ReduceKind.SUM, "i"))
    with pytest.raises(build.IRTypingError, match="may not itself contain"):
        build.make(Op.REDUCE, r, arg=kc.api.nodes.Reduction(ReduceKind.SUM, "i"))


# --- monoids: any split, merged in any order, equals one pass ------------------------------------

SPECIAL = [0.0, 1.0, -1.0, 2.0, np.nan, np.inf, -np.inf]
elements = st.one_of(st.floats(-5, 5), st.sampled_from(SPECIAL))


def _run(kind, values, weights, cuts, k):
    monoid = MONOIDS[kind]
    rows, cols = values.shape
    dim = k if kind.takes_k else (weights.shape[-1] if weights is not None else 1)
    state = monoid.identity(rows, dim, values.dtype)
    parts = []
    bounds = [0, *sorted(set(cuts)), cols]
    for lo, hi in zip(bounds, bounds[1:]):
        if hi <= lo:
            continue
        vals = (values[:, lo:hi, None],) + ((weights[:, lo:hi],) if weights is not None else ())
        parts.append(monoid.accumulate(monoid.identity(rows, dim, values.dtype), vals, np.arange(lo, hi)))
    # merge the parts as a balanced tree, the way threads or Dask chunks would
    while len(parts) > 1:
        parts = [monoid.combine(parts[i], parts[i + 1]) if i + 1 < len(parts) else parts[i]
                 for i in range(0, len(parts), 2)]
    if parts:
        state = monoid.combine(state, parts[0])
    return monoid.finalize(state)


@given(st.sampled_from(list(ReduceKind)), st.integers(0, 9).flatmap(
    lambda m: st.tuples(hnp.arrays(np.float64, (2, m), elements=elements), st.lists(st.integers(0, m), max_size=4),
                        hnp.arrays(np.float64, (2, m, 2), elements=st.floats(0, 3)))))
def test_monoid_split_invariance(kind, data):
    values, cuts, weights = data
    w = weights if kind in (ReduceKind.SOFTMAX, ReduceKind.LOGSUMEXP) else None
    one_pass = _run(kind, values, w, [], 3)
    split = _run(kind, values, w, cuts, 3)
    if kind.gives_index:
        np.testing.assert_array_equal(split, one_pass)
    else:
        np.testing.assert_allclose(split, one_pass, rtol=1e-12, atol=1e-300, equal_nan=True)


def test_split_passes_moves_early_reductions_to_a_first_stage():
    from kernelc.ir.passes.split_passes import split_passes

    one = kc.kernel("kernel c(x: f64[i], y: f64[j]) -> f64[i] { return sum[j](x * y) }").ir
    assert len(split_passes(one)) == 1
    two = kc.kernel("kernel c(x: f64[i], y: f64[j]) -> f64[i] { return x - mean[i](x) + sum[j](y) }").ir
    first, second = split_passes(two)
    assert [str(o.type) for o in first.kernel.outputs] == ["f64"]
    assert second.temporaries == ("__pass0",)
    assert "mean[i]" not in str(second.kernel) and "sum[j]" in str(second.kernel)
