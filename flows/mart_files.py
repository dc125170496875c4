"""The daily marts' Parquet files: which a published state names, and when one may go.

dbt's ``daily_parquet`` materialization (dbt_project/macros/daily_parquet.sql) writes each
rebuilt day as a new file under ``warehouse/marts/<model>/`` and keeps the ledger
``_marts.files`` (in the build database): ``is_current`` marks the file of each day that the
build's views read. A replaced file may still be named by an ``analytics.duckdb`` a reader
holds open, so after each publish:

* a file neither current nor already retired is retired now (``_marts.retired``): the
  file just published no longer names it, the one before may have;
* a file on disk that the ledger does not know (a build that stopped between writing and
  recording, or a build database since deleted) is retired the same way;
* a retired file is deleted once it has been retired for the grace period.
"""

from __future__ import annotations

import contextlib
import logging
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb

log = logging.getLogger(__name__)

FILES = "_marts.files"
RETIRED = "_marts.retired"
PUBLISHED = "_marts.published"


def _ensure(con: duckdb.DuckDBPyConnection) -> None:
    con.execute("CREATE SCHEMA IF NOT EXISTS _marts")
    con.execute(
        f"CREATE TABLE IF NOT EXISTS {RETIRED} "
        "(path VARCHAR PRIMARY KEY, retired_at TIMESTAMP NOT NULL)"
    )
    con.execute(f"CREATE TABLE IF NOT EXISTS {PUBLISHED} (path VARCHAR PRIMARY KEY)")


def record_published(con: duckdb.DuckDBPyConnection, named: set[str]) -> None:
    """Remember the files the new analytics file names (see :func:`roll_back`)."""
    _ensure(con)
    con.execute(f"DELETE FROM {PUBLISHED}")
    if named:
        con.executemany(f"INSERT INTO {PUBLISHED} VALUES (?)", [(p,) for p in sorted(named)])


def roll_back(con: duckdb.DuckDBPyConnection) -> None:
    """Make the published files the current ones again, after a build whose tests failed.

    The next build then rewrites, from the published state, exactly the days of the loads
    still unpublished; a file that build wrote is retired like any replaced file.
    """
    _ensure(con)
    con.execute(f"UPDATE {FILES} SET is_current = path IN (SELECT path FROM {PUBLISHED})")


def files_named(con: duckdb.DuckDBPyConnection) -> set[str]:
    """The files the build's daily-mart views read (what a publish hands to analysts)."""
    known = con.execute(
        "SELECT count(*) FROM duckdb_tables() WHERE database_name = current_database() "
        "AND schema_name = '_marts' AND table_name = 'files'"
    ).fetchone()
    if not known or not known[0]:
        return set()
    return {r[0] for r in con.execute(f"SELECT path FROM {FILES} WHERE is_current").fetchall()}


def _on_disk(marts_dir: Path) -> set[str]:
    return (
        {str(p.resolve()) for p in marts_dir.glob("*/**/*.parquet")}
        if marts_dir.is_dir()
        else set()
    )


def tidy(
    con: duckdb.DuckDBPyConnection, marts_dir: Path, named: set[str], *, grace_hours: float
) -> tuple[int, int]:
    """Retire what the published state no longer names; delete what is past the grace period.

    Returns (files retired now, files deleted now).
    """
    _ensure(con)
    now = datetime.now(UTC).replace(tzinfo=None)
    retired = {r[0] for r in con.execute(f"SELECT path FROM {RETIRED}").fetchall()}
    newly = sorted(_on_disk(marts_dir) - named - retired)
    if newly:
        con.executemany(f"INSERT INTO {RETIRED} VALUES (?, ?)", [(p, now) for p in newly])
    cutoff = now - timedelta(hours=grace_hours)
    expired = [
        r[0]
        for r in con.execute(
            f"SELECT path FROM {RETIRED} WHERE retired_at <= ?", [cutoff]
        ).fetchall()
        if r[0] not in named
    ]
    for path in expired:
        Path(path).unlink(missing_ok=True)
        _remove_empty_parent(Path(path))
    if expired:
        con.execute(f"DELETE FROM {RETIRED} WHERE list_contains(?, path)", [expired])
        con.execute(f"DELETE FROM {FILES} WHERE list_contains(?, path)", [expired])
        log.info("deleted %d mart files retired more than %g h ago", len(expired), grace_hours)
    return len(newly), len(expired)


def _remove_empty_parent(path: Path) -> None:
    # A day's folder (snapshot_date=...) goes once its last file has.
    with contextlib.suppress(OSError):
        os.rmdir(path.parent)
