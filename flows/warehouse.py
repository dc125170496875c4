"""The warehouse: load the Parquet lake into DuckDB's ``raw`` schema, publish for analysts.

Two DuckDB files, because DuckDB allows one writing process per file and analysts keep
read-only connections open for hours:

* ``build.duckdb`` is private to the pipeline: the loader appends to ``raw``, dbt builds
  ``staging``, ``intermediate`` and ``marts`` in it.
* ``analytics.duckdb`` is what analysts open. Each publish writes a new file beside it and
  renames it over the old one. A reader who has the old file open keeps reading the old
  inode, whole and consistent; the next connection sees the new state. A run never waits
  on a reader and a reader never sees half a build.

Publishing lives in :mod:`flows.publish`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pyarrow as pa

from flows.lake.parquet import lake_path
from flows.lake.tables import SNAPSHOT_TABLES, TABLES, select_from_lake
from flows.settings import Settings

log = logging.getLogger(__name__)

RAW = "raw"
LOADS = f"{RAW}._loads"
ARROW_TO_DUCKDB = {
    pa.string(): "VARCHAR",
    pa.timestamp("ms"): "TIMESTAMP",
    pa.float64(): "DOUBLE",
    pa.int64(): "BIGINT",
    pa.int32(): "INTEGER",
    pa.int16(): "SMALLINT",
    pa.bool_(): "BOOLEAN",
}


def connect(path: Path, *, read_only: bool = False) -> duckdb.DuckDBPyConnection:
    path.parent.mkdir(parents=True, exist_ok=True)
    return duckdb.connect(str(path), read_only=read_only)


def _ddl(table: str, schema: pa.Schema) -> str:
    cols = [
        f'"{f.name}" {ARROW_TO_DUCKDB[f.type]}{"" if f.nullable else " NOT NULL"}' for f in schema
    ]
    cols.append('"_load_id" BIGINT NOT NULL')
    return f"CREATE TABLE IF NOT EXISTS {RAW}.{table} ({', '.join(cols)})"


def ensure_raw_schema(con: duckdb.DuckDBPyConnection) -> None:
    """Create the ``raw`` tables (lake columns + ``_load_id``) and the loads ledger."""
    con.execute(f"CREATE SCHEMA IF NOT EXISTS {RAW}")
    for table, schema in TABLES.items():
        con.execute(_ddl(table, schema))
    con.execute(
        f"""CREATE TABLE IF NOT EXISTS {LOADS} (
            load_id BIGINT PRIMARY KEY,
            started_at TIMESTAMP NOT NULL,
            finished_at TIMESTAMP,
            status VARCHAR NOT NULL,
            snapshot_count INTEGER,
            row_count BIGINT,
            snapshot_ids VARCHAR[],
            error VARCHAR
        )"""
    )


@dataclass
class LoadResult:
    """What one load added to ``raw``."""

    load_id: int | None
    snapshot_ids: list[str] = field(default_factory=list)
    rows: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def row_count(self) -> int:
        return sum(self.rows.values())


def complete_lake_snapshots(lake_dir: Path) -> list[str]:
    """Snapshot ids whose three lake files are all in place.

    The lake writes ``snapshots`` last, so its file marks a landed snapshot; the other two
    are checked too, in case a file was removed by hand.
    """
    ids = sorted(p.stem for p in (lake_dir / "snapshots").glob("date=*/*.parquet"))
    return [
        sid
        for sid in ids
        if all(lake_path(lake_dir, t, sid).exists() for t in SNAPSHOT_TABLES if t != "snapshots")
    ]


def sql_list(paths: Iterable[Path]) -> str:
    return "[" + ", ".join("'" + str(p).replace("'", "''") + "'" for p in paths) + "]"


def _mark_interrupted(con: duckdb.DuckDBPyConnection) -> None:
    # A load that was killed leaves its 'running' row behind and none of its data (the data
    # transaction rolled back): say so, so status shows it and nobody wonders.
    con.execute(
        f"UPDATE {LOADS} SET status = 'interrupted', error = 'process ended before commit' "
        "WHERE status = 'running'"
    )


def load_lake(settings: Settings, *, con: duckdb.DuckDBPyConnection | None = None) -> LoadResult:
    """Append every landed snapshot (and ladder fetch) not yet in ``raw``, in one transaction.

    Idempotent: a snapshot already in ``raw.snapshots`` is never loaded again, so running
    the load twice adds no row. The cost is the new files, not the history.
    """
    started = time.perf_counter()
    own = con is None
    con = con or connect(settings.build_db_path)
    try:
        ensure_raw_schema(con)
        _mark_interrupted(con)
        loaded = {
            r[0]
            for r in con.execute(f"SELECT DISTINCT snapshot_id FROM {RAW}.snapshots").fetchall()
        }
        new_ids = [s for s in complete_lake_snapshots(settings.lake_dir) if s not in loaded]
        seg_files = _new_segment_files(con, settings.lake_dir)
        if not new_ids and not seg_files:
            return LoadResult(load_id=None, seconds=time.perf_counter() - started)

        load_id = (
            con.execute(f"SELECT coalesce(max(load_id), 0) + 1 FROM {LOADS}").fetchone() or [1]
        )[0]
        now = datetime.now(UTC).replace(tzinfo=None)
        con.execute(
            f"INSERT INTO {LOADS} (load_id, started_at, status, snapshot_ids) "
            "VALUES (?, ?, 'running', ?)",
            [load_id, now, new_ids],
        )
        result = LoadResult(load_id=load_id, snapshot_ids=new_ids)
        con.execute("BEGIN TRANSACTION")
        try:
            for table in SNAPSHOT_TABLES:
                files = [lake_path(settings.lake_dir, table, s) for s in new_ids]
                result.rows[table] = _insert(con, table, files, load_id)
            result.rows["segments"] = _insert(con, "segments", seg_files, load_id)
            con.execute(
                f"UPDATE {LOADS} SET status = 'completed', finished_at = ?, snapshot_count = ?, "
                "row_count = ? WHERE load_id = ?",
                [datetime.now(UTC).replace(tzinfo=None), len(new_ids), result.row_count, load_id],
            )
            con.execute("COMMIT")
        except BaseException as exc:
            con.execute("ROLLBACK")
            con.execute(
                f"UPDATE {LOADS} SET status = 'failed', finished_at = ?, error = ? "
                "WHERE load_id = ?",
                [datetime.now(UTC).replace(tzinfo=None), str(exc)[:500], load_id],
            )
            raise
        result.seconds = time.perf_counter() - started
        log.info(
            "load %s: %d snapshots, %d rows in %.2fs",
            load_id,
            len(new_ids),
            result.row_count,
            result.seconds,
        )
        return result
    finally:
        if own:
            con.close()


def _insert(con: duckdb.DuckDBPyConnection, table: str, files: list[Path], load_id: int) -> int:
    if not files:
        return 0
    # Files are read in the order given (snapshot order), so rows land in time order and
    # DuckDB's zone maps let incremental models skip old row groups.
    cols = ", ".join(f'"{f.name}"' for f in TABLES[table])
    before = con.execute(f"SELECT count(*) FROM {RAW}.{table}").fetchone()[0]  # type: ignore[index]
    # The lake stores totalValue as a residual (lake/tables.py); raw holds the API's value.
    con.execute(
        f"INSERT INTO {RAW}.{table} ({cols}, _load_id) "
        f"SELECT {select_from_lake(table)}, {int(load_id)} "
        f"FROM read_parquet({sql_list(files)}, union_by_name = true)"
    )
    after = con.execute(f"SELECT count(*) FROM {RAW}.{table}").fetchone()[0]  # type: ignore[index]
    return int(after - before)


def _new_segment_files(con: duckdb.DuckDBPyConnection, lake_dir: Path) -> list[Path]:
    files = sorted((lake_dir / "segments").glob("date=*/*.parquet"))
    if not files:
        return []
    loaded = {
        r[0]
        for r in con.execute(
            f"SELECT DISTINCT strftime(fetched_at, '%Y%m%dT%H%M%S%gZ') FROM {RAW}.segments"
        ).fetchall()
    }
    return [f for f in files if f.stem not in loaded]


def wipe_warehouse(settings: Settings) -> None:
    """Remove the build database (the archive is never touched).

    The published Parquet files stay: a reader may hold the current ``analytics.duckdb``,
    whose views name them. The next publish finds them unknown to the (new) ledger, exports
    the new build whole, and deletes the old files once the grace period has passed.
    """
    for path in (settings.build_db_path, Path(str(settings.build_db_path) + ".wal")):
        path.unlink(missing_ok=True)
