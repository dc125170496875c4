"""The warehouse: load the Parquet lake into DuckDB's ``raw`` schema, publish for analysts.

Two DuckDB files, because DuckDB allows one writing process per file and analysts keep
read-only connections open for hours:

* ``build.duckdb`` is private to the pipeline: the loader appends to ``raw``, dbt builds
  ``staging``, ``intermediate`` and ``marts`` in it.
* ``analytics.duckdb`` is what analysts open. Each publish writes a new file beside it and
  renames it over the old one. A reader who has the old file open keeps reading the old
  inode, whole and consistent; the next connection sees the new state. A run never waits
  on a reader and a reader never sees half a build.

Publishing copies the marts, except the snapshot-grain facts (dbt ``meta.publish:
append``): those are exported once, append-only, as one Parquet file per load under
``published/<table>/``, and the analytics file holds a view over them bounded by the
publish's load id. So a publish costs the new rows plus the small daily marts, not the
whole history again, and no file a reader may still be using is ever rewritten.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pyarrow as pa

from flows import atomic
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


def _sql_list(paths: Iterable[Path]) -> str:
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
        f"FROM read_parquet({_sql_list(files)}, union_by_name = true)"
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


# --------------------------------------------------------------------------- publishing


@dataclass
class PublishResult:
    path: Path
    tables: dict[str, int]
    appended: dict[str, int]
    seconds: float


def _mart_publish_modes(settings: Settings) -> dict[str, str]:
    """Each mart's publish mode from dbt's manifest: 'append' for meta.publish, else 'copy'."""
    manifest = settings.dbt_target_dir / "manifest.json"
    modes: dict[str, str] = {}
    if manifest.exists():
        nodes = json.loads(manifest.read_bytes())["nodes"].values()
        for node in nodes:
            if node.get("resource_type") == "model" and node.get("schema") == "marts":
                meta = node.get("config", {}).get("meta", {}) or node.get("meta", {})
                modes[node["alias"]] = "append" if meta.get("publish") == "append" else "copy"
    return modes


def publish(settings: Settings, *, con: duckdb.DuckDBPyConnection | None = None) -> PublishResult:
    """Write a new ``analytics.duckdb`` from the marts and rename it into place."""
    started = time.perf_counter()
    own = con is None
    con = con or connect(settings.build_db_path)
    try:
        modes = _mart_publish_modes(settings)
        marts = [
            r[0]
            for r in con.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = 'marts' "
                "ORDER BY table_name"
            ).fetchall()
        ]
        watermark = con.execute(
            f"SELECT coalesce(max(load_id), 0) FROM {LOADS} WHERE status = 'completed'"
        ).fetchone()[0]  # type: ignore[index]
        appended = {
            t: _export_new_loads(con, settings.published_dir / t, t)
            for t in marts
            if modes.get(t) == "append"
        }
        target = settings.analytics_db_path
        copied: dict[str, int] = {}
        with atomic.atomic_path(target) as tmp:
            tmp.unlink()  # DuckDB must create the file itself
            con.execute(f"ATTACH '{tmp}' AS publish_target")
            try:
                con.execute("CREATE SCHEMA publish_target.marts")
                for t in marts:
                    exported = settings.published_dir / t
                    if modes.get(t) == "append" and any(exported.glob("load_*.parquet")):
                        # Absolute path: analysts open the file from anywhere.
                        glob = str(exported.resolve() / "load_*.parquet")
                        con.execute(
                            f"CREATE VIEW publish_target.marts.{t} AS SELECT * FROM "
                            f"read_parquet('{glob}') WHERE _load_id <= {int(watermark)}"
                        )
                    else:
                        con.execute(
                            f"CREATE TABLE publish_target.marts.{t} AS SELECT * FROM marts.{t}"
                        )
                        copied[t] = con.execute(f"SELECT count(*) FROM marts.{t}").fetchone()[0]  # type: ignore[index]
                _copy_about(con, watermark)
                _copy_comments(con, marts)
            finally:
                con.execute("DETACH publish_target")
        result = PublishResult(target, copied, appended, time.perf_counter() - started)
        log.info("published %s in %.2fs", target, result.seconds)
        return result
    finally:
        if own:
            con.close()


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _copy_comments(con: duckdb.DuckDBPyConnection, marts: list[str]) -> None:
    """Carry dbt's descriptions (persisted as comments) over, so analysts see them in SQL."""
    for name, kind, comment in con.execute(
        "SELECT table_name, 'TABLE', comment FROM duckdb_tables() "
        "WHERE database_name = current_database() AND schema_name = 'marts' AND comment IS NOT NULL"
    ).fetchall():
        target_kind = "VIEW" if _is_view(con, name) else kind
        con.execute(f"COMMENT ON {target_kind} publish_target.marts.{name} IS {_quote(comment)}")
    for table, column, comment in con.execute(
        "SELECT table_name, column_name, comment FROM duckdb_columns() "
        "WHERE database_name = current_database() AND schema_name = 'marts' AND comment IS NOT NULL"
    ).fetchall():
        if table in marts:
            con.execute(
                f'COMMENT ON COLUMN publish_target.marts.{table}."{column}" IS {_quote(comment)}'
            )


def _is_view(con: duckdb.DuckDBPyConnection, name: str) -> bool:
    return bool(
        con.execute(
            "SELECT count(*) FROM duckdb_views() WHERE database_name = 'publish_target' "
            "AND schema_name = 'marts' AND view_name = ?",
            [name],
        ).fetchone()[0]  # type: ignore[index]
    )


def _copy_about(con: duckdb.DuckDBPyConnection, watermark: int) -> None:
    # One small table that tells an analyst what they are looking at and how fresh it is.
    con.execute(
        "CREATE TABLE publish_target.marts.about AS SELECT "
        f"{int(watermark)}::BIGINT AS published_load_id, "
        "(now() AT TIME ZONE 'UTC')::TIMESTAMP AS published_at, "
        "(SELECT max(last_update) FROM raw.snapshots) AS newest_snapshot_at, "
        "(SELECT count(DISTINCT snapshot_id) FROM raw.snapshots) AS snapshot_count"
    )


def _export_new_loads(con: duckdb.DuckDBPyConnection, folder: Path, table: str) -> int:
    """Export the rows of loads not yet exported to ``folder/load_<id>.parquet``, once each."""
    folder.mkdir(parents=True, exist_ok=True)
    done = sorted(int(p.stem.split("_")[1]) for p in folder.glob("load_*.parquet"))
    newest = done[-1] if done else 0
    load_ids = [
        r[0]
        for r in con.execute(
            f"SELECT DISTINCT _load_id FROM marts.{table} WHERE _load_id > ? ORDER BY 1", [newest]
        ).fetchall()
    ]
    rows = 0
    for load_id in load_ids:
        final = folder / f"load_{load_id:09d}.parquet"
        with atomic.atomic_path(final) as tmp:
            rel = con.sql(f"SELECT * FROM marts.{table} WHERE _load_id = {int(load_id)}")
            rel.write_parquet(str(tmp), compression="zstd")
        rows += con.execute(
            f"SELECT count(*) FROM marts.{table} WHERE _load_id = ?", [load_id]
        ).fetchone()[0]  # type: ignore[index]
    return rows


def wipe_warehouse(settings: Settings) -> None:
    """Remove the build database and the published exports (the archive is never touched)."""
    for path in (settings.build_db_path, Path(str(settings.build_db_path) + ".wal")):
        path.unlink(missing_ok=True)
    if settings.published_dir.exists():
        shutil.rmtree(settings.published_dir)
