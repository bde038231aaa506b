"""The autotuner: for a kernel, a backend and a shape bucket, find the fastest correct
(variant, schedule), remember it on disk, and use it.

Candidates are each precision variant (under a tolerance) crossed with the backend's
`candidates(kernel, sizes)`. Each is validated on sampled rows against the NumPy backend (a
wrong one is discarded and reported), then timed: a warm-up, repeats within a time budget,
median and spread; the best few are timed again, and near-ties (within 2%) go to the earlier
candidate, the backend's default first. Results are keyed by the optimized IR, backend and its
version, target machine, tolerance and shape bucket (powers of two of N, M and the dimensions).

KERNELC_AUTOTUNE (or `autotune=` on kernel/compile/load): `off` never tunes or looks up;
`cached` (default) uses a stored result, else the default schedule, so a first call never
waits; `on` tunes at the first call of a shape bucket without a stored result; `force` tunes
again once per process and bucket. `kernelc tune FILE -n N -m M` tunes ahead of time.
"""

from __future__ import annotations

import os

from kernelc.errors import KernelArgumentError

MODES = ("off", "cached", "on", "force")


def mode(explicit: str | None) -> str:
    chosen = explicit if explicit is not None else (os.environ.get("KERNELC_AUTOTUNE", "").strip() or "cached")
    if chosen not in MODES:
        where = "autotune" if explicit is not None else "KERNELC_AUTOTUNE"
        raise KernelArgumentError(where, f"expected one of {', '.join(MODES)}, got {chosen!r}")
    return chosen
