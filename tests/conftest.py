import os
import tempfile

# Tests never touch the user's cache: one fresh cache folder per test session.
os.environ["KERNELC_CACHE_DIR"] = tempfile.mkdtemp(prefix="kernelc-test-cache-")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from hypothesis import HealthCheck, settings  # noqa: E402


settings.register_profile("ci", max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("dev", max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("thorough", max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

from kernelc.testing.runners import SMALL_TILES, backend_runner, run_with  # noqa: E402,F401


@pytest.fixture(params=["numpy", "numpy-small-tiles", "llvm"])
def run(request):
    """Run a kernel on every backend (the NumPy one also with tiny tiles, so that partial
    states are merged): each must satisfy the same assertions."""
    return backend_runner(request.param)


@pytest.fixture
def rng():
    return np.random.default_rng(1234)
