"""Publishing: a new ``analytics.duckdb`` for analysts after every successful build.

Analysts keep read-only connections open for hours, and DuckDB lets no writer in while they
do, so the pipeline never writes the file they have open: each publish writes a new file
beside it and renames it into place. A reader who has the old file open keeps reading the
old state, whole; the next connection sees the new one.

The new file holds no copy of the data. It has the same schemas as the build database, and
in them:

* ``lake``: the lake views (``read_parquet`` over the lake's files), and the load ledger as
  it stood when the build was tested, so the published state holds exactly the snapshots
  that build tested, even while later ones land;
* ``staging``, ``intermediate``: the same views as the build database;
* ``marts``: each mart as its ``meta.publish`` says (dbt_project.yml): ``view`` is the same
  view (the facts over the lake, the daily marts over their Parquet files), ``table`` a copy
  (the small marts);
* ``seeds``: the cohort ladder; ``marts.about``: when this file was published.

Views bind their names inside the file that holds them, and the dbt project renders names
without the database, so the copied views read this file's own schemas. The cost of a
publish is a few hundred statements and the small marts, whatever the history.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import duckdb

from flows import atomic, mart_files
from flows.settings import Settings
from flows.warehouse import LOADS, PUBLISHES, connect, quote

log = logging.getLogger(__name__)

# Copied in this order: a view may only name what exists already.
VIEW_SCHEMAS = ("lake", "staging", "intermediate")
# The oldest DuckDB storage format that keeps every feature the file uses: clients of the
# 1.4 LTS line and newer open it (README, "For analysts").
STORAGE_VERSION = "v1.4.0"


@dataclass
class PublishResult:
    """What one publish wrote."""

    path: Path
    load_id: int  # the newest load the published state holds
    views: int
    tables: dict[str, int]  # marts and seeds copied: rows
    seconds: float
    retired: int = 0  # mart files no published state names any more
    deleted: int = 0  # retired files past the grace period, deleted


def publish_modes(settings: Settings) -> dict[str, str]:
    """Each mart's ``meta.publish`` (``view`` or ``table``), from dbt's manifest."""
    manifest = json.loads((settings.dbt_target_dir / "manifest.json").read_bytes())
    modes = {}
    for node in manifest["nodes"].values():
        if node["resource_type"] == "model" and node["schema"] == "marts":
            mode = (node["config"].get("meta") or {}).get("publish")
            if mode not in ("view", "table"):
                raise ValueError(
                    f"model {node['name']} has meta.publish {mode!r}: say `view` or `table` "
                    "in its config (dbt_project.yml sets `table` for the marts folder)"
                )
            modes[node["alias"]] = mode
    return modes


def _views(con: duckdb.DuckDBPyConnection, schema: str) -> list[tuple[str, str]]:
    """(name, CREATE VIEW statement) of the build database's views in ``schema``."""
    return con.execute(
        "SELECT view_name, sql FROM duckdb_views() WHERE database_name = current_database() "
        "AND schema_name = ? AND NOT internal ORDER BY view_name",
        [schema],
    ).fetchall()


def _create_view(con: duckdb.DuckDBPyConnection, schema: str, name: str, sql: str) -> None:
    con.execute(f'CREATE VIEW publish_target."{schema}"."{name}" AS {_view_body(sql)}')


def _view_body(sql: str) -> str:
    """The query of a ``CREATE VIEW ... AS <query>;`` statement.

    DuckDB keeps the statement a view was created with; dbt creates each view under a
    temporary name and renames it, so the statement is rebuilt around the view's own query.
    """
    head, sep, body = sql.partition(" AS ")
    if not sep or not head.upper().startswith("CREATE"):
        raise ValueError(f"not a CREATE VIEW statement: {sql[:80]!r}")
    return body.rstrip().rstrip(";")


def publish(settings: Settings, *, con: duckdb.DuckDBPyConnection | None = None) -> PublishResult:
    """Write a new ``analytics.duckdb`` from the build database and rename it into place.

    Then the daily marts' files that no published state names any more are retired, and
    retired files older than the grace period are deleted (:mod:`flows.mart_files`).
    """
    started = time.perf_counter()
    own = con is None
    con = con or connect(settings.build_db_path)
    try:
        modes = publish_modes(settings)
        row = con.execute(f"SELECT coalesce(max(load_id), 0) FROM {LOADS}").fetchone()
        load_id = int(row[0]) if row else 0
        target = settings.analytics_db_path
        tables: dict[str, int] = {}
        views = 0
        with atomic.atomic_path(target) as tmp:
            tmp.unlink()  # DuckDB must create the file itself
            con.execute(
                f"ATTACH {quote(str(tmp))} AS publish_target (STORAGE_VERSION '{STORAGE_VERSION}')"
            )
            try:
                # One transaction: a few hundred statements committed once.
                con.execute("BEGIN TRANSACTION")
                for schema in (*VIEW_SCHEMAS, "seeds", "marts"):
                    con.execute(f"CREATE SCHEMA publish_target.{schema}")
                # The load ledger as the build tested it, and the seed, before the views
                # that read them.
                tables.update(_copy_table(con, "lake", "loads"))
                tables.update(_copy_table(con, "seeds", "cohort_ladder"))
                for schema in VIEW_SCHEMAS:
                    for name, sql in _views(con, schema):
                        _create_view(con, schema, name, sql)
                        views += 1
                marts = dict(_views(con, "marts"))
                for name, mode in sorted(modes.items()):
                    if mode == "view":
                        _create_view(con, "marts", name, marts[name])
                        views += 1
                    else:
                        tables.update(_copy_table(con, "marts", name))
                _write_about(con, load_id)
                _copy_comments(con)
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise
            finally:
                con.execute("DETACH publish_target")
        con.execute(f"INSERT INTO {PUBLISHES} VALUES (?, now() AT TIME ZONE 'UTC')", [load_id])
        named = mart_files.files_named(con)
        mart_files.record_published(con, named)
        retired, deleted = mart_files.tidy(
            con, settings.marts_dir, named, grace_hours=settings.publish_grace_hours
        )
        result = PublishResult(
            target, load_id, views, tables, time.perf_counter() - started, retired, deleted
        )
        log.info("published %s (load %d) in %.2fs", target, load_id, result.seconds)
        return result
    finally:
        if own:
            con.close()


def _copy_table(con: duckdb.DuckDBPyConnection, schema: str, name: str) -> dict[str, int]:
    con.execute(f'CREATE TABLE publish_target.{schema}."{name}" AS SELECT * FROM {schema}."{name}"')
    row = con.execute(f'SELECT count(*) FROM publish_target.{schema}."{name}"').fetchone()
    return {f"{schema}.{name}": int(row[0]) if row else 0}


def _write_about(con: duckdb.DuckDBPyConnection, load_id: int) -> None:
    # One small table that tells an analyst what they are looking at and how fresh it is.
    con.execute(
        "CREATE TABLE publish_target.marts.about AS SELECT "
        f"{int(load_id)}::BIGINT AS published_load_id, "
        "(now() AT TIME ZONE 'UTC')::TIMESTAMP AS published_at, "
        "(SELECT max(last_update) FROM publish_target.staging.stg_hypertracker__snapshots) "
        "AS newest_snapshot_at, "
        f"(SELECT count(*) FROM {LOADS}) AS snapshot_count"
    )
    con.execute(
        "COMMENT ON TABLE publish_target.marts.about IS 'When this file was published, the "
        "newest load and snapshot it holds, and how many snapshots.'"
    )


def _copy_comments(con: duckdb.DuckDBPyConnection) -> None:
    """Carry dbt's descriptions (persisted as comments) over, so analysts see them in SQL."""
    published = set(
        con.execute(
            "SELECT schema_name, table_name, 'TABLE' FROM duckdb_tables() "
            "WHERE database_name = 'publish_target' UNION ALL "
            "SELECT schema_name, view_name, 'VIEW' FROM duckdb_views() "
            "WHERE database_name = 'publish_target'"
        ).fetchall()
    )
    kinds = {(schema, name): kind for schema, name, kind in published}
    statements = [
        f'COMMENT ON {kinds[(schema, name)]} publish_target.{schema}."{name}" IS {quote(text)}'
        for schema, name, text in con.execute(
            "SELECT schema_name, table_name, comment FROM duckdb_tables() "
            "WHERE database_name = current_database() AND comment IS NOT NULL UNION ALL "
            "SELECT schema_name, view_name, comment FROM duckdb_views() "
            "WHERE database_name = current_database() AND comment IS NOT NULL"
        ).fetchall()
        if (schema, name) in kinds
    ]
    statements += [
        f'COMMENT ON COLUMN publish_target.{schema}."{name}"."{column}" IS {quote(text)}'
        for schema, name, column, text in con.execute(
            "SELECT schema_name, table_name, column_name, comment FROM duckdb_columns() "
            "WHERE database_name = current_database() AND comment IS NOT NULL"
        ).fetchall()
        if (schema, name) in kinds
    ]
    if statements:  # one call for the few hundred statements: a round trip each adds up
        con.execute(";\n".join(statements))
