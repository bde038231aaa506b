"""How many threads backends use: KERNELC_NUM_THREADS, else every core."""

from __future__ import annotations

import os


def thread_count() -> int:
    env = os.environ.get("KERNELC_NUM_THREADS", "")
    return int(env) if env.isdigit() and int(env) > 0 else (os.cpu_count() or 1)
