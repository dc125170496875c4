"""One writer at a time: an OS file lock around every run that writes.

DuckDB allows one writing process per file, and two runs landing and loading at once would
race. ``fcntl.flock`` is released by the kernel when the holder dies, even by SIGKILL, so a
crashed run never leaves a stale lock behind. A second run waits up to a timeout, then
steps aside with a message that says who holds the lock. Within one process the lock is
re-entrant: a flow that holds it may run another flow that takes it too.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path


class RunLocked(RuntimeError):
    """Another run holds the lock and did not finish within the wait."""


# How deep this thread holds the lock, per state folder: flock conflicts between two open
# files even of one process, so a nested holder must not open the file again. Per thread,
# so that two runs in two threads of one process still take turns.
_local = threading.local()


@contextlib.contextmanager
def run_lock(state_dir: Path, *, timeout_s: float, what: str) -> Iterator[None]:
    """Hold the run lock for the block; wait up to ``timeout_s`` for it."""
    state_dir.mkdir(parents=True, exist_ok=True)
    key = state_dir.resolve()
    held: dict[Path, int] = _local.__dict__.setdefault("held", {})
    if held.get(key):
        held[key] += 1
        try:
            yield
        finally:
            held[key] -= 1
        return
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
        held[key] = 1
        try:
            yield
        finally:
            held.pop(key, None)
            fh.seek(0)
            fh.truncate()
            fh.flush()
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
