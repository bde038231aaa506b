"""The plugin is tested with kernelc's conformance kit, on the installed backend `c`."""

import os

os.environ.setdefault("KERNELC_TEST_BACKEND", "c")

from kernelc.testing.conftest import run  # noqa: E402,F401
