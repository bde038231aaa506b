"""Every mistake in a source is a KernelSyntaxError or KernelTypeError with a line, a column, the
source line, a caret and (where one helps) a hint (LANGUAGE.md §8)."""

import pytest

import kernelc as kc

HEAD = "kernel f(x: f32[i, D], y: f32[j, D], b: f32[j], s: f32, n: i32[i]) -> f32[i] {\n"


def error_of(src):
    with pytest.raises(kc.KernelcError) as info:
        kc.compile(src)
    return info.value


def body_error(body):
    return error_of(HEAD + body + "\n}")


def test_spec_example_message():
    err = error_of("kernel g(x: f32[i, D], y: f32[j, D], b: f32[j]) -> f32[i] {\n"
                   "    d2 = sqdist(x, y)\n    return exp(-d2) * b\n}")
    assert isinstance(err, kc.KernelTypeError)
    assert (err.line, err.column) == (3, 12)
    text = str(err)
    assert "line 3, column 12: this value depends on j but the output is indexed by i" in text
    assert "    return exp(-d2) * b\n" in text
    assert "\n               ^" in text
    assert "hint: reduce over j, e.g. sum[j](...)" in text


@pytest.mark.parametrize("src, line, col, words, hint", [
    ("kernel f(x: f32) -> f32 { return x ^ 2 }", 1, 36, "unexpected character '^'", "**"),
    ("kernel f(x: f32) -> f32 { return x", 1, 35, "ends too early", "close the kernel body"),
    ("kernel f(x: f32) -> f32 { return x y }", 1, 36, "unexpected 'y'", "operator missing"),
    ("kernel f(x: f32) -> f32 { return x < 1 < 2 }", 1, 40, "unexpected '<'", "do not chain"),
    ("kernel f(x: f32) -> f32 { return where(x = 1, 1, 2) }", 1, 42, "unexpected '='", "=="),
    ("kernel f(x: f32) -> f32 {\n y = x +\n return y }", 2, 9, "end of line", "unfinished"),
    ("kernel f(x: f32) -> f32 { return x && x }", 1, 36, "'&'", "and"),
    ("kernel f(x: f32) { return x }", 1, 18, "unexpected '{'", "->"),
    ("kernel f(x: f32[i, 2.5]) -> f32 { return 1 }", 1, 20, "whole number", None),
    ("kernel (x: f32) -> f32 { return x }", 1, 8, "unexpected '('", None),
    ("kernel f(x: f32) -> f32 { return x } kernel", 1, 44, "ends too early", None),
    ("kernel f(x: f32) -> f32 { return x\n kernel g() -> f32 { return 1 } ", 2, 2, "unexpected 'kernel'", "not closed"),
])
def test_syntax_errors(src, line, col, words, hint):
    err = error_of(src)
    assert isinstance(err, kc.KernelSyntaxError), err
    assert (err.line, err.column) == (line, col), str(err)
    assert words in err.message
    if hint:
        assert hint in (err.hint or ""), err.hint
    assert "^" in str(err)


@pytest.mark.parametrize("body, words, hint", [
    ("return q", "unknown name 'q'", None),
    ("return sqdistt(x, y)", "unknown function 'sqdistt'", "sqdist"),
    ("return sum[j](x_)", "unknown name 'x_'", "did you mean 'x'"),
    ("x = 1\nreturn x", "'x' is a parameter", None),
    ("a = s\na = s\nreturn a", "already bound", None),
    ("return sum[k](b)", "runs over i or j", None),
    ("return sum(b, b)", "takes 1 argument", None),
    ("return sum[j](sum[j](b))", "may not itself contain a reduction", "nest"),
    ("m = max[j](b)\nreturn sum[j](b - m)", "may not itself contain a reduction", None),
    ("return argmin[j](y)", "needs a scalar argument", None),
    ("return kmin[j](b)", "needs K", None),
    ("return sum[j, 3](b)", "takes no K", "kmin"),
    ("return x + b", "depends on j", "sum[j]"),
    ("return sum[j](x + y)", "vector of dimension D", "f32[i, D]"),
    ("return f64(s)", "this value is f64 but the output is declared f32", "f32(...)"),
    ("return sum[j](b) * n", "f64 but the output is declared f32", None),
    ("return n * 0.5 + s", "f64 but the output is declared f32", None),
    ("return not s", "needs bool operands", None),
    ("return where(s, s, s)", "condition of where(...) must be bool", None),
    ("return s[3]", "out of range", None),
    ("return x[0:0][0]", "is empty", None),
    ("return y", "depends on j", None),
    ("return s\nreturn s", "never run", None),
    ("return s, s", "2 value(s) but the kernel declares 1", None),
    ("return i32(s) + 3000000000", "does not fit in i32", None),
    ("return exp", "is a function", "exp(...)"),
    ("return f32", "is a dtype", "f32(x)"),
    ("return sum[j]", "needs an argument", None),
    ("return sum(b)[1]", "out of range", None),
    ("exp = 1\nreturn s", "built-in function", None),
    ("i = 1\nreturn s", "reserved", None),
    ("return x[s]", "must be known before the call", None),
    ("return s(1)", "is a value, not a function", None),
    ("return logsumexp[j](b, b, b)", "one or two arguments", None),
    ("return min[j](b) and true", "needs bool operands", None),
])
def test_type_errors(body, words, hint):
    err = body_error(body)
    assert isinstance(err, kc.KernelTypeError), (type(err), str(err))
    assert words in err.message, err.message
    assert err.line is not None and err.line >= 2 and err.column >= 1
    if hint:
        assert hint in (err.hint or ""), err.hint
    assert "^" in str(err)


@pytest.mark.parametrize("src, words", [
    ("kernel f(x: f32, x: f32) -> f32 { return x }", "two parameters are named 'x'"),
    ("kernel f(D: f32, x: f32[i, D]) -> f32[i] { return x[0] }", "both a parameter and a dimension symbol"),
    ("kernel f(x: f32[D, i]) -> f32 { return 1 }", "indices i and j come before"),
    ("kernel f(x: f32[j, i]) -> f32 { return 1 }", "order [i, j]"),
    ("kernel f(x: f32[i, D, E]) -> f32 { return 1 }", "at most one vector dimension"),
    ("kernel f(x: f32[i, 0]) -> f32 { return 1 }", "at least 1"),
    ("kernel f(x: f32) -> f32 { y = x }", "no return statement"),
    ("kernel f(x: f32) -> f32 { return x }\nkernel f(x: f32) -> f32 { return x }", "already defined"),
    ("kernel f(y: f32[j]) -> f32[i] { return 1 }", "no parameter is indexed by i"),
    ("kernel f(backend: f32) -> f32 { return backend }", "reserved"),
    ("kernel f(x: f32[i, D], y: f32[j, E]) -> f32[i] { return sum[j](sqdist(x, y)) }", "dimensions differ: D and E"),
    ("kernel f(x: f32[i, D]) -> f32[i, E] { return x * 2 }", None),  # E is bound to D: valid
])
def test_declaration_errors(src, words):
    if words is None:
        kc.compile(src)
        return
    err = error_of(src)
    assert isinstance(err, kc.KernelTypeError), str(err)
    assert words in err.message, err.message


def test_errors_name_the_file(tmp_path):
    path = tmp_path / "bad.kc"
    path.write_text("kernel f(x: f32) -> f32 {\n  return y\n}\n")
    with pytest.raises(kc.KernelTypeError) as info:
        kc.load(path)
    assert str(info.value).startswith(f"{path}, line 2, column 10: unknown name 'y'")


def test_deeply_nested_source_is_an_error_not_a_crash():
    err = error_of("kernel f(x: f32) -> f32 { return " + "(" * 5000 + "x" + ")" * 5000 + " }")
    assert isinstance(err, kc.KernelSyntaxError) and err.line == 1
    err = error_of("kernel f(x: f32) -> f32 { return " + "-" * 20000 + "x }")
    assert isinstance(err, kc.KernelcError) and err.line is not None
    err = error_of("kernel f(x: f32) -> f32 { return x" + " + x" * 20000 + " }")
    assert isinstance(err, kc.KernelcError) and err.line is not None


def test_kernel_wants_exactly_one_or_a_name():
    src = "kernel a(x: f32) -> f32 { return x }\nkernel b(x: f32) -> f32 { return 2 * x }"
    with pytest.raises(kc.KernelArgumentError, match="defines 2 kernels"):
        kc.kernel(src)
    assert kc.kernel(src, name="b")(3.0) == 6.0
    with pytest.raises(kc.KernelArgumentError, match="no kernel named 'c'"):
        kc.kernel(src, name="c")
    with pytest.raises(kc.KernelSyntaxError, match="defines no kernel"):
        kc.kernel("# nothing here\n")
