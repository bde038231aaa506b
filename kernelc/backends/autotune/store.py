"""Tuning results on disk: a small SQLite database in the cache folder.

One row per (kernel IR, backend and version, target machine, shape bucket): the chosen
schedule's knobs (without the dimensions, which come from each call), the chosen variant and
the report. SQLite serializes concurrent writers (WAL journal, busy timeout), so processes
tuning at once cannot corrupt it; a file that is not a readable database is moved aside with
one warning and a new one is started.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
import warnings
from pathlib import Path
from typing import Any

from kernelc.backends.cache import cache_dir

_SCHEMA = "CREATE TABLE IF NOT EXISTS tuning (key TEXT PRIMARY KEY, record TEXT NOT NULL, created REAL NOT NULL)"
_lock = threading.Lock()


def path() -> Path:
    return cache_dir() / "autotune.sqlite3"


def _connect() -> sqlite3.Connection:
    db = path()
    db.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(db, timeout=30, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(_SCHEMA)
        conn.execute("SELECT count(*) FROM tuning").fetchone()
    except sqlite3.DatabaseError:
        conn.close()
        raise
    return conn


def _open() -> sqlite3.Connection | None:
    """A connection, rebuilding a corrupt database once; None if the cache cannot be written."""
    with _lock:
        try:
            return _connect()
        except sqlite3.DatabaseError as err:
            aside = path().with_name(f"autotune.corrupt-{os.getpid()}-{int(time.time())}")
            warnings.warn(f"kernelc: the tuning database {path()} is unreadable ({err}); moved to {aside.name}, "
                          "starting a new one", RuntimeWarning, stacklevel=4)
            for suffix in ("", "-wal", "-shm"):
                try:
                    os.replace(f"{path()}{suffix}", f"{aside}{suffix}")
                except OSError:
                    pass
            try:
                return _connect()
            except (sqlite3.DatabaseError, OSError):
                return None
        except OSError:
            return None


def load(key: str) -> dict[str, Any] | None:
    if not path().exists():  # a lookup never creates the database
        return None
    conn = _open()
    if conn is None:
        return None
    try:
        row = conn.execute("SELECT record FROM tuning WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else None
    except (sqlite3.DatabaseError, ValueError):
        return None
    finally:
        conn.close()


def save(key: str, record: dict[str, Any]) -> None:
    conn = _open()
    if conn is None:
        return
    try:
        conn.execute("INSERT OR REPLACE INTO tuning (key, record, created) VALUES (?, ?, ?)",
                     (key, json.dumps(record), time.time()))
    except sqlite3.DatabaseError:
        pass  # a cache: losing one result only means tuning again
    finally:
        conn.close()


def count() -> int:
    conn = _open()
    if conn is None:
        return 0
    try:
        return int(conn.execute("SELECT count(*) FROM tuning").fetchone()[0])
    finally:
        conn.close()
