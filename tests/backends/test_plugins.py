"""Backend plugins: discovery through entry points, the API version rule, broken and clashing
plugins, priorities and KERNELC_BACKEND."""

import sys
import textwrap
import warnings
from types import SimpleNamespace

import numpy as np
import pytest

import kernelc as kc
from kernelc.backends import registry

PLUGIN = textwrap.dedent('''
    from kernelc.backends.numpy import NumpyBackend

    class Echo(NumpyBackend):
        """A plugin backend: the NumPy evaluator under another name."""
        name = "echo"
        description = "test plugin"
        priority = {priority}
        api_version = {api}

    backend = Echo()
''')


def _ep(name, value, dist="kernelc-echo", version="0.3"):
    return SimpleNamespace(name=name, value=value, dist=SimpleNamespace(name=dist, version=version))


@pytest.fixture
def plugins(tmp_path, monkeypatch):
    """Install fake plugin modules and entry points for one test; forget them afterwards."""
    monkeypatch.syspath_prepend(str(tmp_path))

    def install(eps, **modules):
        for mod, source in modules.items():
            (tmp_path / f"{mod}.py").write_text(source)
            sys.modules.pop(mod, None)
        monkeypatch.setattr(registry, "entry_points", lambda group: eps if group == "kernelc.backends" else [])
        registry.reset()

    yield install
    registry.reset()


def test_a_plugin_is_listed_and_runs(plugins):
    plugins([_ep("echo", "echo_ok:backend")], echo_ok=PLUGIN.format(priority=0, api=(1, 7)))
    info = {b.name: b for b in kc.backends()}["echo"]
    assert info.available and info.distribution == "kernelc-echo" and info.version == "0.3"
    k = kc.kernel("kernel t(x: f32[i]) -> f32[i] { return x + 1 }")
    np.testing.assert_array_equal(k(np.zeros(2, np.float32), backend="echo"), [1, 1])


def test_another_major_api_is_refused_with_one_warning(plugins):
    plugins([_ep("echo", "echo_v2:backend")], echo_v2=PLUGIN.format(priority=0, api='"2.0"'))
    with pytest.warns(RuntimeWarning, match="targets kernelc plugin API 2.0") as record:
        infos = {b.name: b for b in kc.backends()}
    assert len(record) == 1
    assert not infos["echo"].available and "API 2.0" in infos["echo"].reason
    assert infos["llvm"].available  # the rest works
    with pytest.raises(kc.BackendUnavailableError, match="API 2.0"):
        kc.kernel("kernel t(x: f32[i]) -> f32[i] { return x }")(np.zeros(1, np.float32), backend="echo")


def test_a_broken_plugin_gives_one_warning_and_nothing_else(plugins):
    plugins([_ep("broken", "broken_mod:backend")], broken_mod="raise ImportError('missing vendor SDK')\n")
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        infos = {b.name: b for b in kc.backends()}
        kc.backends()
        out = kc.kernel("kernel t(x: f32[i]) -> f32[i] { return x * 2 }")(np.ones(2, np.float32))
    assert len(record) == 1 and "missing vendor SDK" in str(record[0].message)
    assert "broken" in str(record[0].message)
    assert not infos["broken"].available
    np.testing.assert_array_equal(out, [2, 2])


def test_two_distributions_with_one_name_is_an_error_naming_both(plugins):
    src = PLUGIN.format(priority=0, api=(1, 0))
    plugins([_ep("echo", "echo_a:backend", dist="vendor-a"), _ep("echo", "echo_b:backend", dist="vendor-b")],
            echo_a=src, echo_b=src)
    with pytest.raises(kc.BackendUnavailableError) as info:
        kc.kernel("kernel t(x: f32[i]) -> f32[i] { return x }")(np.zeros(1, np.float32), backend="echo")
    assert "vendor-a" in str(info.value) and "vendor-b" in str(info.value)


def test_priority_and_kernelc_backend(plugins, monkeypatch):
    plugins([_ep("echo", "echo_hi:backend")], echo_hi=PLUGIN.format(priority=99, api=(1, 0)))
    k = kc.kernel("kernel t(x: f32[i]) -> f32[i] { return x }")
    k(np.zeros(1, np.float32))
    assert k.last_backend == "echo"  # the highest priority wins under auto
    monkeypatch.setenv("KERNELC_BACKEND", "numpy")
    k(np.zeros(1, np.float32))
    assert k.last_backend == "numpy"


def test_importing_kernelc_imports_no_plugin():
    import subprocess

    code = ("import sys, kernelc; "
            "print(any(m.startswith('kernelc.backends.llvm') for m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "False"


def test_the_example_c_plugin_is_discovered_and_runs(plugins):
    """examples/plugins/kernelc-c (on sys.path through tests/conftest.py) behind an entry point."""
    plugins([_ep("c", "kernelc_c:backend", dist="kernelc-c", version="0.1.0")])
    info = {b.name: b for b in kc.backends()}["c"]
    assert (info.distribution, info.version, info.priority) == ("kernelc-c", "0.1.0", 20)
    if not info.available:
        pytest.skip(info.reason)
    k = kc.kernel("kernel t(x: f32[i], y: f32[j]) -> i64[i] { return argmin[j](abs(x - y)) }")
    np.testing.assert_array_equal(k(np.float32([0, 5]), np.float32([4, 1, 0]), backend="c"), [2, 0])


def test_the_example_c_plugin_imports_only_the_public_api():
    import ast

    from conftest import C_PLUGIN

    for path in (C_PLUGIN / "kernelc_c").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            for name in names:
                assert not name.startswith("kernelc.") or name == "kernelc.plugins", (path, name)
