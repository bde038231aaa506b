"""kernelc's conformance kit: the rules of LANGUAGE.md §6 and generated programs."""

from kernelc.testing.test_generated import *  # noqa: F401,F403
from kernelc.testing.test_rules import *  # noqa: F401,F403
