"""The public API for backend plugins: everything a backend may import from kernelc.

A plugin distribution declares an entry point in the group `kernelc.backends` whose object is a
`Backend` (or a zero-argument callable returning one) with an `api_version` of (major, minor).
kernelc accepts a plugin whose major version equals its own, whatever the minor (minor versions
only add optional members). Built-in backends are declared the same way in kernelc's own
pyproject.toml. The names exported here are stable within a major version; any other module of
kernelc is internal and may change. See docs/plugins.md.
"""

from __future__ import annotations

API_VERSION: tuple[int, int] = (1, 2)  # 1.1: re-exports the IR, stages, cache, threads; 1.2: clike records
ENTRY_POINT_GROUP = "kernelc.backends"


def parse_api_version(declared: object) -> tuple[int, int] | None:
    """(major, minor) from 1, (1, 0) or "1.0"; None if it cannot be read."""
    if isinstance(declared, bool):
        return None
    if isinstance(declared, int):
        return (declared, 0)
    if isinstance(declared, str):
        parts = declared.split(".")
        declared = tuple(parts)
    if isinstance(declared, tuple) and 1 <= len(declared) <= 2:
        try:
            major = int(declared[0])
            minor = int(declared[1]) if len(declared) == 2 else 0
        except (TypeError, ValueError):
            return None
        return (major, minor)
    return None


def api_mismatch(declared: object) -> str | None:
    """Why a plugin declaring `declared` cannot be used, or None if it can."""
    version = parse_api_version(declared)
    ours = f"{API_VERSION[0]}.{API_VERSION[1]}"
    if version is None:
        return f"its api_version {declared!r} is not (major, minor); kernelc provides plugin API {ours}"
    if version[0] != API_VERSION[0]:
        return (f"it targets kernelc plugin API {version[0]}.{version[1]}, this kernelc provides {ours}: "
                f"install a version of the plugin built for API {API_VERSION[0]}.x, or a kernelc for its API")
    return None


# --- the API surface (imported last: the modules below import API_VERSION from here) -----------
from kernelc.backends import cache  # noqa: E402  make_key / load / store / cache_dir
from kernelc.backends.interface import (  # noqa: E402
    Availability, Backend, Call, Executable, Schedule, Sizes, host_arrays_only)
from kernelc.backends.runtime import output_shapes  # noqa: E402
from kernelc.backends.threads import thread_count  # noqa: E402
from kernelc.errors import CompilationError, UnsupportedKernelError  # noqa: E402
from kernelc.ir.build import contains_reduction  # noqa: E402
from kernelc.ir.dims import Dim  # noqa: E402
from kernelc.ir.dtypes import DType  # noqa: E402
from kernelc.ir.nodes import Kernel, Node, Output, Param, Reduction, TensorType, reductions, walk  # noqa: E402
from kernelc.ir.ops import Op, ReduceKind  # noqa: E402
from kernelc.ir.passes.split_passes import Stage, split_passes  # noqa: E402
from kernelc.plugins import clike  # noqa: E402  records for C-family code generators (1.2)

__all__ = [
    "API_VERSION", "ENTRY_POINT_GROUP", "api_mismatch", "parse_api_version",
    "Availability", "Backend", "Call", "Executable", "Schedule", "Sizes", "host_arrays_only",
    "Kernel", "Node", "Output", "Param", "Reduction", "TensorType", "Dim", "DType", "Op", "ReduceKind",
    "walk", "reductions", "contains_reduction", "Stage", "split_passes", "output_shapes",
    "cache", "thread_count", "UnsupportedKernelError", "CompilationError", "clike",
]
