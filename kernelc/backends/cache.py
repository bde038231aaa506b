"""The on-disk cache of compiled code, shared by backends.

Entries are files named by a key (a SHA-256 of everything the code depends on); each starts
with a header holding the key and a checksum of the payload, so a truncated, corrupt or
foreign file is detected, ignored and rebuilt, never trusted. Writes go to a temporary file
in the same folder, then are renamed over the entry (atomic on POSIX). Nothing is unpickled.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

_MAGIC = b"KERNELC-CACHE-1\n"


def cache_dir() -> Path:
    """$KERNELC_CACHE_DIR, else $XDG_CACHE_HOME/kernelc, else ~/.cache/kernelc."""
    env = os.environ.get("KERNELC_CACHE_DIR")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "kernelc"


def make_key(*parts: str) -> str:
    h = hashlib.sha256()
    for part in parts:
        data = part.encode()
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)
    return h.hexdigest()


@lru_cache(maxsize=8)
def source_fingerprint(folder: str) -> str:
    """A hash of the Python sources of a code generator's folder, for its cache keys: object
    code written by an edited generator is never loaded, even where nobody bumped a version
    (stale objects with another argument list had crashed the interpreter)."""
    h = hashlib.sha256()
    for path in sorted(Path(folder).glob("*.py")):
        h.update(path.name.encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def _path(key: str, suffix: str) -> Path:
    return cache_dir() / f"{key}.{suffix}"


def load(key: str, suffix: str) -> bytes | None:
    """The payload stored under `key`, or None if absent or not exactly what was stored."""
    try:
        data = _path(key, suffix).read_bytes()
    except OSError:
        return None
    header_len = len(_MAGIC) + 65 + 65
    if len(data) < header_len or not data.startswith(_MAGIC):
        return None
    stored_key = data[len(_MAGIC):len(_MAGIC) + 64].decode("ascii", "replace")
    digest = data[len(_MAGIC) + 65:len(_MAGIC) + 129].decode("ascii", "replace")
    payload = data[header_len:]
    if stored_key != key or hashlib.sha256(payload).hexdigest() != digest:
        return None
    return payload


def store(key: str, suffix: str, payload: bytes) -> None:
    """Write atomically; a cache that cannot be written is silently skipped (it is a cache)."""
    folder = cache_dir()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        header = _MAGIC + key.encode() + b"\n" + hashlib.sha256(payload).hexdigest().encode() + b"\n"
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=f".{suffix}")
        with os.fdopen(fd, "wb") as f:
            f.write(header + payload)
        os.replace(tmp, _path(key, suffix))
    except OSError:
        try:
            os.unlink(tmp)  # type: ignore[possibly-undefined]
        except (OSError, NameError):
            pass


@dataclass(frozen=True)
class CacheInfo:
    folder: Path
    entries: int
    bytes: int


def info() -> CacheInfo:
    folder = cache_dir()
    files = [p for p in folder.glob("*") if p.is_file() and not p.name.startswith(".tmp-")] if folder.is_dir() else []
    return CacheInfo(folder, len(files), sum(p.stat().st_size for p in files))


def clear() -> int:
    """Remove every entry; returns how many files were removed."""
    folder = cache_dir()
    removed = 0
    if folder.is_dir():
        for p in folder.glob("*"):
            if p.is_file():
                p.unlink(missing_ok=True)
                removed += 1
    return removed
