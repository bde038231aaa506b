"""The conformance kit shipped in kernelc.testing, run here on every built-in backend and the
example C plugin (the `run` fixture of tests/conftest.py)."""

from kernelc.testing.test_generated import *  # noqa: F401,F403
from kernelc.testing.test_rules import *  # noqa: F401,F403
