"""The `kernelc` command."""

import subprocess
import sys
from pathlib import Path

from kernelc.cli import main

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def test_run_prints_time_and_rows(capsys):
    assert main(["run", str(EXAMPLES / "gauss.kc"), "-n", "200", "-m", "300", "-d", "E=2", "--rows", "3"]) == 0
    out = capsys.readouterr().out
    assert "backend llvm (auto), N=200, M=300, D=3, E=2" in out
    assert "pairs/s" in out and "output 0: f32[i, E], shape (200, 2)" in out
    assert "compile + first call: " in out and "next call: " in out  # the rate is the compiled call's


def test_run_with_a_tolerance(capsys):
    assert main(["run", str(EXAMPLES / "attention.kc"), "-n", "64", "-d", "D=32", "-d", "E=8",
                 "--tolerance", "1e-4"]) == 0
    out = capsys.readouterr().out
    assert "precision variant: " in out and "tolerance 0.0001" in out and "shape (64, 8)" in out
    assert main(["run", str(EXAMPLES / "gauss.kc"), "-n", "5", "--tolerance", "2"]) == 1  # not in (0, 1)


def test_run_with_keyword_symbol_and_kernel_choice(capsys):
    assert main(["run", str(EXAMPLES / "knn.kc"), "-n", "20", "-d", "K=4", "--backend", "numpy"]) == 0
    assert "shape (20, 4)" in capsys.readouterr().out
    assert main(["run", str(EXAMPLES / "rownorm.kc"), "-n", "5"]) == 1  # three kernels: pick one
    assert main(["run", str(EXAMPLES / "rownorm.kc"), "-n", "5", "--kernel", "rmsnorm"]) == 0


def test_check_reports_errors_with_caret(tmp_path, capsys):
    bad = tmp_path / "bad.kc"
    bad.write_text("kernel f(x: f32[i], y: f32[j]) -> f32[i] {\n    return x * y\n}\n")
    assert main(["check", str(bad), str(EXAMPLES / "gauss.kc")]) == 1
    out = capsys.readouterr().out
    assert "line 2, column 12: this value depends on j" in out and "^" in out
    assert "ok" in out and "gauss(" in out
    assert main(["check", str(EXAMPLES / "gauss.kc")]) == 0


def test_explain_prints_ir(capsys):
    assert main(["explain", str(EXAMPLES / "gauss.kc")]) == 0
    out = capsys.readouterr().out
    assert "reduce sum[j]" in out and "param x : f32<D>[i]" in out


def test_backends_and_missing_file(capsys):
    assert main(["backends"]) == 0
    assert "numpy" in capsys.readouterr().out
    assert main(["check", "/nonexistent.kc"]) == 1


def test_console_script_entry_point():
    out = subprocess.run([sys.executable, "-m", "kernelc.cli", "explain", str(EXAMPLES / "gauss.kc")],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "kernel gauss" in out.stdout
