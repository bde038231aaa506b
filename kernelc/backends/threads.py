"""How many threads backends use: KERNELC_NUM_THREADS, else every core."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

_pools: dict[int, ThreadPoolExecutor] = {}


def thread_count() -> int:
    env = os.environ.get("KERNELC_NUM_THREADS", "")
    return int(env) if env.isdigit() and int(env) > 0 else (os.cpu_count() or 1)


def pool(threads: int) -> ThreadPoolExecutor:
    """One long-lived pool per thread count: creating threads per call costs ~0.3 ms."""
    if threads not in _pools:
        _pools[threads] = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="kernelc")
    return _pools[threads]
