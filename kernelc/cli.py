"""The `kernelc` command: run a kernel on random data, type-check a file, or explain its IR."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Sequence

import numpy as np
from rich.console import Console
from rich.table import Table

import kernelc as kc
from kernelc.api import Kernel
from kernelc.backends import registry
from kernelc.explain import random_arguments
from kernelc.ir.dtypes import DType


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="kernelc", description="Compile and run kernel operators.")
    sub = p.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run a kernel on random data and time it")
    run.add_argument("file")
    run.add_argument("--kernel", help="which kernel of the file (default: the only one)")
    run.add_argument("-n", type=int, default=1000, help="size of the i range (default 1000)")
    run.add_argument("-m", type=int, default=None, help="size of the j range (default: n)")
    run.add_argument("-d", "--dim", action="append", default=[], metavar="SYM=VALUE",
                     help="value of a dimension symbol, e.g. -d D=3 -d K=10 (default 3 each)")
    run.add_argument("--backend", default=None, help="a backend name, or auto (default: $KERNELC_BACKEND or auto)")
    run.add_argument("--seed", type=int, default=0)
    run.add_argument("--rows", type=int, default=5, help="how many output rows to print")
    run.add_argument("--tolerance", type=float, default=None,
                     help="as kc.kernel(..., tolerance=): lower-precision variants within it may run")
    check = sub.add_parser("check", help="type-check files and print errors with carets")
    check.add_argument("files", nargs="+")
    explain = sub.add_parser("explain", help="print the typed IR of a file's kernels, the optimizer's passes, "
                                             "the schedule and generated code")
    explain.add_argument("file")
    explain.add_argument("--kernel")
    explain.add_argument("--passes", action="store_true", help="the IR after each optimizer pass, with its cost")
    explain.add_argument("--backend", default=None, help="compile for this backend (on random data of -n x -m) "
                                                          "and show its schedule")
    explain.add_argument("--code", action="store_true", help="also print the backend's generated code")
    explain.add_argument("-n", type=int, default=64)
    explain.add_argument("-m", type=int, default=None)
    explain.add_argument("-d", "--dim", action="append", default=[], metavar="SYM=VALUE")
    explain.add_argument("--tolerance", type=float, default=None, help="as kc.kernel(..., tolerance=)")
    explain.add_argument("--no-optimize", action="store_true", help="as kc.kernel(..., optimize=False)")
    tune = sub.add_parser("tune", help="autotune a kernel for a shape ahead of time and store the choice")
    tune.add_argument("file")
    tune.add_argument("--kernel")
    tune.add_argument("-n", type=int, default=10000)
    tune.add_argument("-m", type=int, default=None)
    tune.add_argument("-d", "--dim", action="append", default=[], metavar="SYM=VALUE")
    tune.add_argument("--backend", default=None)
    tune.add_argument("--budget", type=float, default=10.0, help="seconds of timing in all (default 10)")
    tune.add_argument("--tolerance", type=float, default=None, help="also try precision variants within it")
    sub.add_parser("backends", help="list backends and whether they can run here")
    cache = sub.add_parser("cache", help="the on-disk cache of compiled kernels")
    cache.add_argument("action", choices=["info", "clear"])
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    console = Console(highlight=False)
    try:
        return _COMMANDS[args.command](args, console)
    except kc.KernelcError as err:
        Console(stderr=True, highlight=False).print(f"[bold red]{type(err).__name__}[/]: {err}", markup=True,
                                                    soft_wrap=True)
        return 1


def _escape(text: str) -> str:
    return text.replace("[", "\\[")


def _cmd_check(args: argparse.Namespace, console: Console) -> int:
    status = 0
    for path in args.files:
        try:
            module = kc.load(path)
        except kc.KernelcError as err:
            console.print(f"[red]{type(err).__name__}[/]: {_escape(str(err))}", soft_wrap=True)
            status = 1
            continue
        for k in module:
            console.print(f"[green]ok[/] {_escape(path)}: {_escape(k.signature)}", soft_wrap=True)
    return status


def _pick(module: kc.Module, name: str | None) -> list[Kernel]:
    kernels = list(module)
    if name is not None:
        return [module[name]] if name in [k.name for k in kernels] else _no_kernel(module, name)
    return kernels


def _no_kernel(module: kc.Module, name: str) -> list[Kernel]:
    raise kc.KernelArgumentError("--kernel", f"no kernel named '{name}'",
                                 hint=f"kernels in the file: {', '.join(k.name for k in module)}")


def _cmd_explain(args: argparse.Namespace, console: Console) -> int:
    module = kc.load(args.file, tolerance=args.tolerance, optimize=False if args.no_optimize else None)
    dims = _parse_dims(args.dim)
    for k in _pick(module, args.kernel):
        text = k.explain(passes=args.passes, backend=args.backend, code=args.code, n=args.n, m=args.m, dims=dims)
        console.print(_escape(text), soft_wrap=True)
    return 0


def _cmd_tune(args: argparse.Namespace, console: Console) -> int:
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    kernels = _pick(kc.load(args.file, tolerance=args.tolerance), args.kernel)
    n, m = args.n, args.m if args.m is not None else args.n
    for k in kernels:
        inputs = random_arguments(k, n, m, _parse_dims(args.dim))
        with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                      TimeElapsedColumn(), console=console, transient=True) as bar:
            task = bar.add_task(f"tuning {k.name}", total=None)

            def progress(what: str, done: int, total: int) -> None:
                bar.update(task, description=f"{k.name}: {_escape(what)[:70]}", completed=done, total=total)

            result = k.tune(backend=args.backend, budget=args.budget, progress=progress, **inputs)
        table = Table("variant", "schedule", "median ms", "spread", "GFLOP/s", "error", "status",
                      title=f"{k.name}, N={n}, M={m} ({result.bucket}): tuned in {result.seconds:.1f} s")
        for row in result.rows:
            fmt = (lambda v, f: "-" if v is None else format(v, f))
            table.add_row(row.variant, _escape(row.schedule), fmt(row.median_s and row.median_s * 1e3, ".3g"),
                          fmt(row.spread, ".0%"), fmt(row.gflops, ".3g"), fmt(row.error, ".1e"),
                          ("[bold green]chosen[/]" if row.chosen else _escape(row.status)))
        Console(highlight=False, width=max(console.width, 150)).print(table)
    return 0


def _cmd_backends(args: argparse.Namespace, console: Console) -> int:
    table = Table("backend", "from", "priority", "status", "about")
    for info in kc.backends():
        status = "[green]available[/]" if info.available else f"[red]unavailable[/]: {_escape(info.reason)}"
        table.add_row(info.name, _escape(f"{info.distribution} {info.version}"), str(info.priority), status,
                      _escape(info.description))
    console.print(table)
    return 0


def _parse_dims(items: list[str]) -> dict[str, int]:
    dims = {}
    for item in items:
        name, _, value = item.partition("=")
        if not name or not value.strip().isdigit():
            raise kc.KernelArgumentError("--dim", f"expected SYM=VALUE such as D=3, got {item!r}")
        dims[name.strip()] = int(value)
    return dims


REPEAT_BELOW_S = 5.0  # `run` times a second call (compiled) when the first took less than this


def _duration(seconds: float) -> str:
    return f"{seconds * 1e3:.2f} ms" if seconds < 1 else f"{seconds:.3f} s"


def _cmd_run(args: argparse.Namespace, console: Console) -> int:
    t0 = time.perf_counter()
    module = kc.load(args.file, tolerance=args.tolerance)
    t_check = time.perf_counter() - t0
    kernels = _pick(module, args.kernel)
    if len(kernels) > 1:
        raise kc.KernelArgumentError("--kernel", f"{args.file} defines {len(kernels)} kernels",
                                     hint=f"pick one: {', '.join(k.name for k in kernels)}")
    kernel = kernels[0]
    n, m = args.n, args.m if args.m is not None else args.n
    if n < 0 or m < 0:
        raise kc.KernelArgumentError("-n/-m", "sizes must be at least 0")
    dims = _parse_dims(args.dim)
    inputs = random_arguments(kernel, n, m, dims, args.seed)
    t0 = time.perf_counter()
    result = kernel(**inputs, backend=args.backend)
    t_first = time.perf_counter() - t0
    t_run = None  # a second call, compiled already: the rate a program calling it again sees
    if t_first < REPEAT_BELOW_S:
        t0 = time.perf_counter()
        kernel(**inputs, backend=args.backend)
        t_run = time.perf_counter() - t0
    outs = result if isinstance(result, tuple) else (result,)
    shown_dims = ", ".join(f"{s}={_symbol_value(kernel, s, inputs)}" for s in kernel.ir.symbols)
    console.print(f"kernel [bold]{_escape(kernel.signature)}[/]", soft_wrap=True)
    asked = args.backend or registry.default_name()
    console.print(f"backend {kernel.last_backend}{' (auto)' if asked == 'auto' else ''}, N={n}, M={m}"
                  + (f", {shown_dims}" if shown_dims else ""))
    uses_pairs = any(len(node.deps) == 2 for o in kernel.ir.outputs for node in _walk(o.value))
    timed = t_run if t_run is not None else t_first
    rate = f" ({n * m / timed:.3g} pairs/s)" if uses_pairs and timed > 0 else ""
    if t_run is None:
        console.print(f"parse + type-check: {t_check * 1e3:.1f} ms;  compile + run: {t_first:.3f} s{rate}",
                      soft_wrap=True)
    else:
        console.print(f"parse + type-check: {t_check * 1e3:.1f} ms;  compile + first call: {t_first:.3f} s;  "
                      f"next call: {_duration(t_run)}{rate}", soft_wrap=True)
    chosen = next((r for r in kernel.variant_report if r.chosen), None)
    if chosen is not None:
        error = "not measured" if chosen.error is None else f"measured error {chosen.error:.2g}"
        console.print(f"precision variant: {chosen.name} ({error}, tolerance {args.tolerance:g})")
    for k, (out, spec) in enumerate(zip(outs, kernel.ir.outputs)):
        console.print(f"output {k}: {_escape(str(spec.type))}, shape {out.shape}, dtype {out.dtype}")
        console.print(_output_table(out, args.rows))
    return 0


def _symbol_value(kernel: Kernel, sym: str, inputs: dict[str, object]) -> int:
    if sym in inputs:
        return int(inputs[sym])  # type: ignore[arg-type]
    for p in kernel.ir.params:
        if p.type.dim is not None and sym in p.type.dim.symbols:
            return int(np.shape(inputs[p.name])[-1])
    return 0


def _walk(node):
    from kernelc.ir.nodes import walk

    return walk([node])


def _output_table(out: np.ndarray, rows: int) -> Table:
    table = Table()
    if out.ndim == 0:
        table.add_column("value")
        table.add_row(_fmt(out[()]))
        return table
    flat = out.reshape(out.shape[0], -1) if out.ndim > 1 else out.reshape(-1, 1)
    cols = min(flat.shape[1], 8)
    table.add_column("row", justify="right")
    for c in range(cols):
        table.add_column(f"[{c}]" if flat.shape[1] > 1 else "value", justify="right")
    for r in range(min(rows, flat.shape[0])):
        table.add_row(str(r), *(_fmt(v) for v in flat[r, :cols]))
    return table


def _fmt(v: object) -> str:
    if isinstance(v, (np.floating, float)) or (hasattr(v, "dtype") and DType.from_numpy(v.dtype) in
                                               (DType.BF16, DType.F16)):
        return f"{float(v):.6g}"
    return str(v)


def _cmd_cache(args: argparse.Namespace, console: Console) -> int:
    from kernelc.backends import cache

    if args.action == "clear":
        console.print(f"removed {cache.clear()} entries from {cache.cache_dir()}")
        return 0
    info = cache.info()
    console.print(f"cache folder: {info.folder}\nentries: {info.entries}\nsize: {info.bytes / 1024:.1f} KiB")
    return 0


_COMMANDS = {"run": _cmd_run, "check": _cmd_check, "explain": _cmd_explain, "tune": _cmd_tune, "backends": _cmd_backends,
             "cache": _cmd_cache}

if __name__ == "__main__":
    sys.exit(main())
