import os
import tempfile

# Tests never touch the user's cache: one fresh cache folder per test session.
os.environ["KERNELC_CACHE_DIR"] = tempfile.mkdtemp(prefix="kernelc-test-cache-")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from hypothesis import HealthCheck, settings  # noqa: E402

import kernelc as kc  # noqa: E402
from kernelc.backends import runtime  # noqa: E402
from kernelc.backends.interface import Schedule  # noqa: E402
from kernelc.backends.registry import get  # noqa: E402

settings.register_profile("ci", max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("dev", max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("thorough", max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

# Small tiles force every reduction through many partial states merged with `combine`.
SMALL_TILES = Schedule.of("numpy", tile_outer=2, tile_inner=3, threads=2)


def run_with(kernel: kc.Kernel, schedule: Schedule, *args, **kwargs):
    """Call `kernel` on the NumPy backend with an explicit schedule."""
    bound = runtime.bind(kernel.ir, args, kwargs)
    call = runtime.allocate(kernel.ir, bound)
    get("numpy").compile(kernel.ir, schedule).run(call)
    return call.outputs[0] if len(call.outputs) == 1 else tuple(call.outputs)


@pytest.fixture(params=["numpy", "numpy-small-tiles", "llvm"])
def run(request):
    """Run a kernel on every backend (the NumPy one also with tiny tiles, so that partial
    states are merged): each must satisfy the same assertions."""
    if request.param == "numpy-small-tiles":
        return lambda k, *a, **kw: run_with(k, SMALL_TILES, *a, **kw)
    return lambda k, *a, **kw: k(*a, backend=request.param, **kw)


@pytest.fixture
def rng():
    return np.random.default_rng(1234)
