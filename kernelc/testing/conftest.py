"""Fixtures of the conformance kit (see kernelc/testing/__init__.py)."""

import os
import tempfile

import pytest

os.environ.setdefault("KERNELC_CACHE_DIR", tempfile.mkdtemp(prefix="kernelc-conformance-cache-"))

from kernelc.testing.runners import backend_runner, selected_backends  # noqa: E402


@pytest.fixture(params=selected_backends())
def run(request):
    return backend_runner(request.param)
