"""Third-party backends: the API version they target and how they are found.

A plugin distribution declares an entry point in the group `kernelc.backends` whose object is a
`kernelc.backends.interface.Backend` (or a zero-argument callable returning one). Built-in
backends are declared the same way in kernelc's own pyproject.toml.
"""

from __future__ import annotations

API_VERSION = 1
ENTRY_POINT_GROUP = "kernelc.backends"
