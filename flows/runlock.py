"""One writer at a time: an OS file lock around every run that writes.

DuckDB allows one writing process per file, and two runs landing and loading at once would
race. ``fcntl.flock`` is released by the kernel when the holder dies, even by SIGKILL, so a
crashed run never leaves a stale lock behind. A second run waits up to a timeout, then
steps aside with a message that says who holds the lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path


class RunLocked(RuntimeError):
    """Another run holds the lock and did not finish within the wait."""


@contextlib.contextmanager
def run_lock(state_dir: Path, *, timeout_s: float, what: str) -> Iterator[None]:
    """Hold the run lock for the block; wait up to ``timeout_s`` for it."""
    state_dir.mkdir(parents=True, exist_ok=True)
    path = state_dir / "run.lock"
    with open(path, "a+") as fh:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    fh.seek(0)
                    holder = fh.read().strip() or "another run"
                    raise RunLocked(
                        f"{what} did not start: {holder} is still running and did not finish "
                        f"within {timeout_s:.0f}s; this run steps aside (nothing was written)"
                    ) from None
                time.sleep(0.2)
        fh.seek(0)
        fh.truncate()
        fh.write(f"{what} (pid {os.getpid()}, since {datetime.now(UTC):%Y-%m-%d %H:%M:%S} UTC)")
        fh.flush()
        try:
            yield
        finally:
            fh.seek(0)
            fh.truncate()
            fh.flush()
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
