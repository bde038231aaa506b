"""Fixtures of the conformance kit (see kernelc/testing/__init__.py)."""

import atexit
import os
import shutil
import tempfile

import pytest

if "KERNELC_CACHE_DIR" not in os.environ:  # a fresh cache for the kit's run, removed at its exit
    os.environ["KERNELC_CACHE_DIR"] = tempfile.mkdtemp(prefix="kernelc-conformance-cache-")
    atexit.register(shutil.rmtree, os.environ["KERNELC_CACHE_DIR"], ignore_errors=True)

from kernelc.testing.runners import backend_runner, selected_backends  # noqa: E402


@pytest.fixture(params=selected_backends())
def run(request):
    return backend_runner(request.param)
