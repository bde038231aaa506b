import atexit
import os
import shutil
import sys
import tempfile
from pathlib import Path

# Tests never touch the user's cache: one fresh cache folder per test process, removed at its exit.
os.environ["KERNELC_CACHE_DIR"] = tempfile.mkdtemp(prefix="kernelc-test-cache-")
atexit.register(shutil.rmtree, os.environ["KERNELC_CACHE_DIR"], ignore_errors=True)

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from hypothesis import HealthCheck, settings  # noqa: E402


settings.register_profile("ci", max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("dev", max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("thorough", max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

from kernelc.testing.runners import backend_runner  # noqa: E402

# The example plugin (examples/plugins/kernelc-c) is tested from its source, uninstalled.
C_PLUGIN = Path(__file__).parents[1] / "examples" / "plugins" / "kernelc-c"
sys.path.insert(0, str(C_PLUGIN))
import kernelc_c  # noqa: E402

from kernelc.backends import registry  # noqa: E402
from kernelc.backends.cuda import emulate  # noqa: E402

BACKENDS = ["numpy", "numpy-small-tiles", "llvm"] + (["kernelc_c:backend"] if kernelc_c.backend.available() else [])
# The CUDA backend's source run on CPU threads, and on a GPU where there is one.
BACKENDS += ["kernelc.backends.cuda.emulate:backend", "kernelc.backends.cuda.emulate:split_backend"] \
    if emulate.backend.available() else []
BACKENDS += ["cuda"] if registry.availability(registry.registry()["cuda"]).ok else []


_IDS = {"kernelc.backends.cuda.emulate:backend": "cuda-emulated",
        "kernelc.backends.cuda.emulate:split_backend": "cuda-emulated-split"}


@pytest.fixture(params=BACKENDS, ids=lambda name: _IDS.get(name, name.split(":")[0]))
def run(request):
    """Run a kernel on every backend (the NumPy one also with tiny tiles, so that partial
    states are merged; the example C plugin when a C compiler is here; the CUDA backend's code
    emulated on the CPU, and on the GPU when there is one): each must satisfy the same assertions."""
    return backend_runner(request.param)


@pytest.fixture
def rng():
    return np.random.default_rng(1234)
