"""Crash-safe file writes: a file is either whole under its final name or absent.

Every write in the project goes through here. A writer fills a temporary sibling (same
folder, so the rename never crosses a file system), flushes it to disk, then renames it
over the final name; the folder is flushed too, so the rename itself survives a power cut.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

TMP_PREFIX = ".tmp-"


def fsync_dir(path: Path) -> None:
    """Flush a folder's entries (a rename or a new file) to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(final: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``final``; on success it is renamed onto ``final``.

    On any exception the temporary file is removed and ``final`` is untouched.
    """
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=TMP_PREFIX + final.name + ".", dir=final.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, final)
        fsync_dir(final.parent)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_bytes(final: Path, data: bytes) -> None:
    """Write ``data`` to ``final`` atomically."""
    with atomic_path(final) as tmp:
        tmp.write_bytes(data)


def write_with(final: Path, writer: Callable[[Path], object]) -> None:
    """Let ``writer`` fill a temporary path, then publish it atomically as ``final``."""
    with atomic_path(final) as tmp:
        writer(tmp)


def rename_dir(src: Path, dst: Path) -> None:
    """Move a finished folder into place in one rename (both sides flushed)."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    os.replace(src, dst)
    fsync_dir(dst.parent)
    fsync_dir(src.parent)


def remove_stale_temporaries(root: Path, *, older_than_s: float = 0.0) -> int:
    """Delete temporary files a killed writer left under ``root``; return how many.

    Only safe while no writer is at work (the run lock): a live writer's temporary file
    has the same name pattern. ``older_than_s`` spares younger ones, for a folder that a
    writer outside the run lock also uses (serve's state watch writes the quota ledger).
    """
    removed = 0
    now = time.time()
    if root.is_dir():
        for path in root.rglob(TMP_PREFIX + "*"):
            try:
                if not path.is_file() or now - path.stat().st_mtime < older_than_s:
                    continue
            except FileNotFoundError:  # renamed into place meanwhile
                continue
            path.unlink(missing_ok=True)
            removed += 1
    return removed
