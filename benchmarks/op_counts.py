"""Operations per pair before and after the optimizer, on the examples and the LANGUAGE.md programs.

    python benchmarks/op_counts.py [--dim D=3 --dim K=10] [--json out.json]

Columns: the typed IR; after the default pipeline (simplify, cse: bit-identical results);
after hoisting inner-index-only values (what the llvm backend runs when N, M >= 8); and the
cheapest variant under a tolerance (fast math, expanded sqdist, f32 for f64 kernels), whose
use is decided at the first call by its measured error. "ops" counts every operation once per
vector component; "weighted" ranks them (division 4, exp/log 10, f64 twice f32; ir/passes/cost.py).
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

from rich.console import Console
from rich.table import Table

import kernelc as kc
from kernelc.ir.passes import cost, hoist, precision

ROOT = Path(__file__).resolve().parents[1]
# Programs that LANGUAGE.md gives as snippets rather than whole kernels.
SNIPPETS = {
    "§3 fused row softmax": "kernel rs(a: f32[i, j]) -> f32[i, j] { return exp(a - logsumexp[j](a)) }",
    "§6 nearest neighbour": "kernel nn(x: f32[i, D], y: f32[j, D]) -> (f32[i], i64[i]) "
                            "{ d = sqdist(x, y); return min[j](d), argmin[j](d) }",
    "§6 Nadaraya-Watson": "kernel nw(x: f32[i, D], y: f32[j, D], t: f32[j], h: f32) -> f32[i] "
                          "{ w = exp(-sqdist(x, y) / (h * h)); num = sum[j](w * t); den = sum[j](w); "
                          "return num / den }",
    "§6 neighbour count": "kernel cnt(x: f32[i, D], y: f32[j, D], r: f32) -> i64[i] "
                          "{ return sum[j](sqdist(x, y) < r * r) }",
    "§6 Sinkhorn step": "kernel sk(x: f32[i, D], y: f32[j, D], g: f32[j], eps: f32) -> f32[i] "
                        "{ return -eps * logsumexp[j]((g - sqdist(x, y) / 2) / eps) }",
    "Matern-5/2, vector lengthscales": "kernel mv(x: f32[i, D], y: f32[j, D], ell: f32[D], b: f32[j]) -> f32[i] "
                                       "{ r = sqrt(sqdist(x / ell, y / ell)); "
                                       "return sum[j]((1 + sqrt(5) * r + 5 * r * r / 3) * exp(-sqrt(5) * r) * b) }",
}


def programs() -> list[tuple[str, kc.Kernel]]:
    found = []
    for path in sorted((ROOT / "examples").glob("*.kc")):
        found += [(f"examples/{path.name}:{k.name}", k) for k in kc.load(path)]
    spec = (ROOT / "docs" / "LANGUAGE.md").read_text()
    for code in re.findall(r"```\w*\n(.*?)```", spec, flags=re.S):
        if "kernel" in code and "{" in code and "STATEMENTS" not in code and code.lstrip().startswith(("kernel", "#")):
            found += [(f"LANGUAGE.md:{k.name}", k) for k in kc.compile(code)]
    found += [(f"LANGUAGE.md {name}", kc.kernel(src)) for name, src in SNIPPETS.items()]
    return found


def counts(k: kc.Kernel, bindings: dict[str, int]) -> dict[str, int]:
    b = {s: bindings.get(s, 3) for s in k.ir.symbols}
    hoisted = hoist.run(k.optimized)[-1].kernel
    variants = [hoist.run(v)[-1].kernel for _, v in precision.variants(k.optimized)] + [hoisted]
    best = min(variants, key=lambda v: cost.ops_per_pair(v, b, weighted=True))
    return {
        "typed": cost.ops_per_pair(k.ir, b), "typed_w": cost.ops_per_pair(k.ir, b, weighted=True),
        "optimized": cost.ops_per_pair(k.optimized, b), "optimized_w": cost.ops_per_pair(k.optimized, b, weighted=True),
        "hoisted": cost.ops_per_pair(hoisted, b), "hoisted_w": cost.ops_per_pair(hoisted, b, weighted=True),
        "tolerance": cost.ops_per_pair(best, b), "tolerance_w": cost.ops_per_pair(best, b, weighted=True),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dim", action="append", default=[], metavar="SYM=VALUE")
    parser.add_argument("--json", help="write the counts here")
    args = parser.parse_args()
    bindings = {s: int(v) for s, _, v in (d.partition("=") for d in args.dim)}
    table = Table("program", "typed IR", "default passes", "+ hoist", "under tolerance",
                  title=f"operations per pair, ops (weighted); symbols = 3 unless {bindings or 'set'}")
    rows = {}
    for name, k in programs():
        c = counts(k, bindings)
        rows[name] = c
        table.add_row(name, *(f"{c[key]} ({c[key + '_w']})" for key in ("typed", "optimized", "hoisted", "tolerance")))
    Console(width=160).print(table)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
