"""Publishing the marts for analysts: a new ``analytics.duckdb`` per run, at a flat cost.

Publishing must cost the same with a year of history as with a day, and must never touch
what a reader may be using. So the marts that grow with history are not copied: they are
exported to Parquet under ``published/<table>/`` and the analytics file holds, for each, a
view over the exact list of files that make up its current state.

* The snapshot-grain facts (dbt ``meta.publish: append``) are append-only by load: each
  new load is exported once; a closed day's small load files are later merged into one.
* The daily marts (incremental delete+insert by ``snapshot_date``) are exported by day:
  only the days the runs since the last publish rebuilt (found by ``_max_load_id``, see
  :func:`_plan_daily`), as a new version of that day; a closed month becomes one file.
* The small marts (dims, the board, ``about``) are copied whole.

A file is written once under a name no other file had, and never rewritten. A superseded
file leaves the view lists of new analytics files at once, but is deleted only after
``HT_PUBLISH_GRACE_HOURS``, so a reader holding an older analytics file keeps reading a
complete, consistent state. The ledger of which file is current lives in ``build.duckdb``
(schema ``_publish``).
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import duckdb

from flows import atomic
from flows.settings import Settings
from flows.warehouse import LOADS, connect, sql_list

log = logging.getLogger(__name__)

#
# Marts published as views (see the module docstring) live under published/<table>/:
#
#   fact (meta.publish: append)   load-<id>.s<seq>.parquet          one load's rows
#                                 day-<YYYY-MM-DD>.s<seq>.parquet   a closed day's small loads
#                                 load_<id>.parquet                 the pre-ledger layout, adopted
#   daily (delete+insert by day)  day-<YYYY-MM-DD>.s<seq>.parquet   one day, as of publish <seq>
#                                 month-<YYYY-MM>.s<seq>.parquet    a closed month
#
# <seq> numbers the publish that wrote the file and is never reused, so a name is written
# once and a file is never rewritten. The ledger (schema _publish in build.duckdb) lists each
# file: 'current' (named by the live analytics.duckdb) or 'retired' (superseded, with the
# time it stopped being current). Retired files are deleted after ``publish_grace_hours``.

LEDGER = "_publish"
RUNS = f"{LEDGER}.runs"
VIEWS = f"{LEDGER}.views"
FILES = f"{LEDGER}.files"
# Months a daily mart keeps as one file: a month is closed once the newest day is two days
# past its end (a day is rebuilt with the day after it; one more day of slack).
MONTH_CLOSED_AFTER = timedelta(days=2)
LEGACY_LOAD_FILE = re.compile(r"^load_(\d+)\.parquet$")


@dataclass
class PublishResult:
    path: Path
    tables: dict[str, int]  # marts copied whole: rows
    appended: dict[str, int]  # facts: rows of loads exported by this publish
    seconds: float
    exported: dict[str, list[str]] = field(default_factory=dict)  # view marts: parts written
    retired: int = 0  # files superseded by this publish (deleted after the grace period)
    deleted: int = 0  # retired files whose grace period had passed, deleted


@dataclass
class _File:
    """One Parquet file behind a published view, as the ledger records it."""

    path: str  # relative to published_dir: "<table>/<name>"
    part: str  # what it holds: load-<id>, day-<date>, month-<YYYY-MM>
    rows: int
    min_date: date | None
    max_date: date | None
    load_ids: list[int] | None = None  # facts only: the loads it holds, whole


@dataclass
class _Export:
    file: _File
    select: str  # the rows, read from the build database


@dataclass
class _ViewPlan:
    """What one publish does to one view mart: keep, retire, write."""

    table: str
    mode: str  # 'append' or 'daily'
    columns: str
    watermark: int
    keep: list[_File]
    retire: list[str]
    exports: list[_Export]
    adopted: list[_File] = field(default_factory=list)
    appended_rows: int = 0

    def files(self) -> list[_File]:
        written = [e.file for e in self.exports if e.file.rows > 0]
        # Facts in load order, daily marts in day order: readers scan files in list order.
        return sorted(
            self.keep + written,
            key=lambda f: (min(f.load_ids or [0]), f.min_date or date.min, f.path),
        )


@dataclass
class _ViewMeta:
    mode: str
    columns: str
    watermark: int


def _mart_publish_modes(settings: Settings) -> dict[str, str]:
    """Each mart's publish mode, from dbt's manifest.

    'append': ``meta.publish: append`` (the snapshot-grain facts, append-only by load);
    'daily': incremental delete+insert on ``snapshot_date`` (the daily marts); else 'copy'.
    ``meta.publish: copy`` forces a copy. Read from the manifest, so no model has to say it.
    """
    manifest = settings.dbt_target_dir / "manifest.json"
    modes: dict[str, str] = {}
    if manifest.exists():
        nodes = json.loads(manifest.read_bytes())["nodes"].values()
        for node in nodes:
            if node.get("resource_type") == "model" and node.get("schema") == "marts":
                config = node.get("config", {}) or {}
                meta = config.get("meta", {}) or node.get("meta", {}) or {}
                if meta.get("publish") in ("append", "copy"):
                    modes[node["alias"]] = meta["publish"]
                elif (
                    config.get("materialized") == "incremental"
                    and config.get("incremental_strategy") == "delete+insert"
                    and config.get("unique_key") == "snapshot_date"
                ):
                    modes[node["alias"]] = "daily"
                else:
                    modes[node["alias"]] = "copy"
    return modes


# The columns each view mode relies on; a mart without them is copied whole instead.
MODE_COLUMNS = {"append": {"_load_id"}, "daily": {"snapshot_date", "_max_load_id"}}


def _describe(con: duckdb.DuckDBPyConnection, select: str) -> str:
    """Column names and types of a query, as one string: a schema to compare."""
    return ", ".join(
        f'"{name}" {kind}' for name, kind, *_ in con.execute(f"DESCRIBE {select}").fetchall()
    )


def _utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def _ensure_ledger(con: duckdb.DuckDBPyConnection) -> None:
    # In build.duckdb, beside the marts it mirrors: `ht rebuild` deletes the build and the
    # ledger with it, and the next publish exports the new build whole (the old files,
    # unknown to the new ledger, are retired and deleted after the grace period).
    con.execute(f"CREATE SCHEMA IF NOT EXISTS {LEDGER}")
    con.execute(
        f"""CREATE TABLE IF NOT EXISTS {RUNS} (
            seq BIGINT NOT NULL,
            started_at TIMESTAMP NOT NULL,
            finished_at TIMESTAMP,
            status VARCHAR NOT NULL
        )"""
    )
    con.execute(
        f"""CREATE TABLE IF NOT EXISTS {VIEWS} (
            table_name VARCHAR NOT NULL,
            mode VARCHAR NOT NULL,
            columns VARCHAR NOT NULL,
            watermark BIGINT NOT NULL
        )"""
    )
    con.execute(
        f"""CREATE TABLE IF NOT EXISTS {FILES} (
            path VARCHAR NOT NULL,
            table_name VARCHAR NOT NULL,
            part VARCHAR,
            seq BIGINT,
            row_count BIGINT,
            min_date DATE,
            max_date DATE,
            load_ids BIGINT[],
            state VARCHAR NOT NULL,
            retired_at TIMESTAMP
        )"""
    )


def _begin_publish(con: duckdb.DuckDBPyConnection) -> int:
    """Number this publish (never reused, even if it fails) and note interrupted ones."""
    interrupted = con.execute(f"SELECT seq FROM {RUNS} WHERE status = 'running'").fetchall()
    if interrupted:
        # Its files, if any, are unknown to the ledger: the clean-up retires them.
        log.warning("publish %s was interrupted; this publish completes it", interrupted[-1][0])
        con.execute(
            f"UPDATE {RUNS} SET status = 'interrupted', finished_at = ? WHERE status = 'running'",
            [_utcnow()],
        )
    seq = int(con.execute(f"SELECT coalesce(max(seq), 0) + 1 FROM {RUNS}").fetchone()[0])  # type: ignore[index]
    con.execute(
        f"INSERT INTO {RUNS} (seq, started_at, status) VALUES (?, ?, 'running')",
        [seq, _utcnow()],
    )
    return seq


def _current_files(con: duckdb.DuckDBPyConnection) -> dict[str, list[_File]]:
    out: dict[str, list[_File]] = {}
    for path, table, part, rows, lo, hi, loads in con.execute(
        f"SELECT path, table_name, part, row_count, min_date, max_date, load_ids FROM {FILES} "
        "WHERE state = 'current'"
    ).fetchall():
        out.setdefault(table, []).append(_File(path, part, rows, lo, hi, loads))
    return out


def _view_metas(con: duckdb.DuckDBPyConnection) -> dict[str, _ViewMeta]:
    return {
        t: _ViewMeta(mode, cols, wm)
        for t, mode, cols, wm in con.execute(
            f"SELECT table_name, mode, columns, watermark FROM {VIEWS}"
        ).fetchall()
    }


def _file_name(table: str, part: str, seq: int) -> str:
    return f"{table}/{part}.s{seq:07d}.parquet"


def _month_end(day: date) -> date:
    first_next = (day.replace(day=1) + timedelta(days=32)).replace(day=1)
    return first_next - timedelta(days=1)


def _plan_daily(
    con: duckdb.DuckDBPyConnection,
    table: str,
    columns: str,
    meta: _ViewMeta | None,
    current: list[_File],
    seq: int,
    *,
    resync: bool = False,
) -> _ViewPlan:
    """Export the days the runs since the last publish rebuilt, and nothing else.

    The daily marts are incremental delete+insert on ``snapshot_date``: a run deletes and
    re-inserts the days that received a snapshot from a load newer than the model's
    ``max(_max_load_id)`` (and, for the day-over-day marts, the day after each). Every row
    it inserts carries ``_max_load_id`` >= that new load: the day's newest load, or for
    the day after, the greater of its own and the previous day's. Rows it does not touch
    keep their older value. So the days rebuilt since the last publish are exactly the
    days with a row whose ``_max_load_id`` is above the watermark that publish recorded
    (this table's max), and the query reads only the newest row groups (zone maps).
    A full refresh (``ht rebuild``) starts a new build and ledger, so everything is
    exported; a row count that does not add up, or changed columns, re-export the table.
    """
    fresh = resync or meta is None or meta.mode != "daily" or meta.columns != columns
    since = 0 if fresh else meta.watermark  # type: ignore[union-attr]
    where = "" if fresh else f"WHERE _max_load_id > {int(since)}"
    changed = con.execute(
        f"SELECT snapshot_date, max(_max_load_id) FROM marts.{table} {where} GROUP BY 1"
    ).fetchall()
    keep = [] if fresh else list(current)
    plan = _ViewPlan(
        table,
        "daily",
        columns,
        max([since] + [int(m) for _, m in changed if m is not None]),
        keep,
        [f.path for f in current] if fresh else [],
        [],
    )
    days = {d for d, _ in changed if d is not None}
    newest = max(days | {f.max_date for f in keep if f.max_date}, default=None)
    if newest is None:
        return plan

    def partition(day: date) -> tuple[str, date, date]:
        # Days of a closed month are kept as one file, so a view lists ~one file per month
        # plus the open month's days, not one per day of history.
        if _month_end(day) + MONTH_CLOSED_AFTER <= newest:
            return f"month-{day:%Y-%m}", day.replace(day=1), _month_end(day)
        return f"day-{day.isoformat()}", day, day

    dirty = {partition(d) for d in days}
    # Day files of a month that has closed since: rewritten as the month's file.
    dirty |= {
        partition(f.min_date)
        for f in keep
        if f.min_date and f.part.startswith("day-") and partition(f.min_date)[0] != f.part
    }
    for part, lo, hi in sorted(dirty, key=lambda p: p[1]):
        for f in list(keep):
            if f.min_date is None or f.max_date is None:
                continue
            inside = lo <= f.min_date and f.max_date <= hi
            if inside:
                keep.remove(f)
                plan.retire.append(f.path)
            elif f.min_date <= hi and lo <= f.max_date:  # partly overlapping: not our layout
                return _plan_daily(con, table, columns, meta, current, seq, resync=True)
        plan.exports.append(
            _Export(
                _File(_file_name(table, part, seq), part, 0, lo, hi),
                f"SELECT * FROM marts.{table} "
                f"WHERE snapshot_date BETWEEN DATE '{lo.isoformat()}' AND DATE '{hi.isoformat()}'",
            )
        )
    return plan


def _plan_append(
    con: duckdb.DuckDBPyConnection,
    published_dir: Path,
    table: str,
    columns: str,
    meta: _ViewMeta | None,
    current: list[_File],
    seq: int,
    *,
    resync: bool = False,
) -> _ViewPlan:
    """Export each new load once; fold a closed day's small load files into one file.

    Loads are append-only (``_load_id`` is the model's watermark), so new rows are the
    loads above the newest exported one. Compaction merges whole load files only (never
    part of one), so no row is ever in two files of the same view.
    """
    fresh = resync or meta is None or meta.mode != "append" or meta.columns != columns
    date_col = "snapshot_date" if '"snapshot_date" DATE' in columns else "NULL::DATE"
    stats = f"SELECT _load_id, count(*), min({date_col}), max({date_col}) FROM marts.{table}"
    keep = [] if fresh else list(current)
    plan = _ViewPlan(
        table, "append", columns, 0, keep, [f.path for f in current] if fresh else [], []
    )
    if fresh:
        loads = con.execute(f"{stats} GROUP BY 1 ORDER BY 1").fetchall()
        if meta is None and not resync:
            plan.adopted = _adopt_legacy(con, published_dir, table, columns, loads)
            keep.extend(plan.adopted)
        covered = {i for f in keep for i in f.load_ids or []}
        new = [r for r in loads if r[0] not in covered]
    else:
        since = int(meta.watermark)  # type: ignore[union-attr]
        new = con.execute(f"{stats} WHERE _load_id > {since} GROUP BY 1 ORDER BY 1").fetchall()
    plan.watermark = max(
        [0 if fresh else meta.watermark]  # type: ignore[union-attr]
        + [i for f in keep for i in f.load_ids or []]
        + [r[0] for r in new]
    )
    plan.appended_rows = sum(r[1] for r in new)
    units: list[tuple[_File | None, list[int], int, date | None, date | None]] = [
        (f, f.load_ids or [], f.rows, f.min_date, f.max_date) for f in keep
    ] + [(None, [int(i)], int(n), lo, hi) for i, n, lo, hi in new]
    newest = max((u[4] for u in units if u[4] is not None), default=None)
    # A closed day: the newest snapshot is on a later day. Files spanning more than two days
    # (a first load of a long history) are big already and stay as they are.
    groups: dict[date, list[tuple[_File | None, list[int], int, date | None, date | None]]] = {}
    for u in units:
        lo, hi = u[3], u[4]
        if newest and lo and hi and hi < newest and (hi - lo).days <= 1:
            groups.setdefault(hi, []).append(u)
    grouped: set[int] = set()
    merged_existing = False
    for day, members in sorted(groups.items()):
        if all(f is not None for f, *_ in members):
            if len(members) < 2 or merged_existing:
                # One file already: nothing to merge. Or a day was merged in this publish
                # already: one day's rewrite (the costly part of a publish, once a day) at
                # a time, so days left over (after downtime) never pile onto one run.
                continue
            merged_existing = True
        load_ids = sorted(i for u in members for i in u[1])
        for f, *_ in members:
            if f is not None:
                keep.remove(f)
                plan.retire.append(f.path)
        grouped.update(i for f, ids, *_ in members if f is None for i in ids)
        part = f"day-{day.isoformat()}"
        plan.exports.append(
            _Export(
                _File(
                    _file_name(table, part, seq),
                    part,
                    sum(u[2] for u in members),
                    min(u[3] for u in members if u[3]),
                    day,
                    load_ids,
                ),
                f"SELECT * FROM marts.{table} WHERE _load_id BETWEEN {load_ids[0]} AND "
                f"{load_ids[-1]} AND _load_id IN ({', '.join(map(str, load_ids))})",
            )
        )
    for load_id, rows, lo, hi in new:
        if load_id not in grouped:
            part = f"load-{int(load_id):09d}"
            plan.exports.append(
                _Export(
                    _File(_file_name(table, part, seq), part, int(rows), lo, hi, [int(load_id)]),
                    f"SELECT * FROM marts.{table} WHERE _load_id = {int(load_id)}",
                )
            )
    return plan


def _adopt_legacy(
    con: duckdb.DuckDBPyConnection,
    published_dir: Path,
    table: str,
    columns: str,
    loads: list[tuple],
) -> list[_File]:
    """Take over the per-load files of the pre-ledger layout rather than export them again.

    Only a file that is this build's load: same load id and row count, same columns, and
    written after the load committed (a file left by a build since deleted is older).
    """
    folder = published_dir / table
    legacy = {
        int(m.group(1)): p
        for p in (folder.iterdir() if folder.is_dir() else [])
        if (m := LEGACY_LOAD_FILE.match(p.name))
    }
    if not legacy:
        return []
    files = sorted(legacy.values())
    if _describe(con, f"SELECT * FROM read_parquet({sql_list(files)}, union_by_name = true)") != (
        columns
    ):
        return []
    counts = dict(
        con.execute(
            f"SELECT file_name, num_rows FROM parquet_file_metadata({sql_list(files)})"
        ).fetchall()
    )
    finished = dict(
        con.execute(
            f"SELECT load_id, finished_at FROM {LOADS} WHERE status = 'completed'"
        ).fetchall()
    )
    by_load = {int(r[0]): r for r in loads}
    adopted = []
    for load_id, path in sorted(legacy.items()):
        row = by_load.get(load_id)
        done = finished.get(load_id)
        written = datetime.fromtimestamp(path.stat().st_mtime, UTC).replace(tzinfo=None)
        if row and done and written >= done and counts.get(str(path)) == row[1]:
            adopted.append(
                _File(
                    f"{table}/{path.name}", f"load-{load_id:09d}", row[1], row[2], row[3], [load_id]
                )
            )
    return adopted


def _plan(
    con: duckdb.DuckDBPyConnection,
    published_dir: Path,
    mode: str,
    table: str,
    columns: str,
    meta: _ViewMeta | None,
    current: list[_File],
    seq: int,
    *,
    resync: bool = False,
) -> _ViewPlan:
    if mode == "daily":
        return _plan_daily(con, table, columns, meta, current, seq, resync=resync)
    return _plan_append(con, published_dir, table, columns, meta, current, seq, resync=resync)


def _write_parquet(
    con: duckdb.DuckDBPyConnection, select: str, final: Path, *, level: int = 3
) -> int:
    """Write a query's rows to ``final`` (temporary name, then rename); return the count."""
    with atomic.atomic_path(final) as tmp:
        count = con.execute(
            f"COPY ({select}) TO {_quote(str(tmp))} "
            f"(FORMAT parquet, COMPRESSION zstd, COMPRESSION_LEVEL {int(level)})"
        ).fetchone()[0]  # type: ignore[index]
    return int(count)


def _export(con: duckdb.DuckDBPyConnection, published_dir: Path, plan: _ViewPlan) -> bool:
    """Write the plan's files; False if the view would not hold the mart's rows exactly."""
    ok = True
    for export in plan.exports:
        final = published_dir / export.file.path
        # The files each run writes (a day, a load) get zstd's fastest level: a third less
        # time for 3% more bytes. Months and compacted days, written once, the default.
        merged = export.file.part.startswith("month-") or len(export.file.load_ids or []) > 1
        rows = _write_parquet(con, export.select, final, level=3 if merged else 1)
        if export.file.load_ids is not None and rows != export.file.rows:
            ok = False
        export.file.rows = rows
        if rows == 0:  # nothing there (cannot happen with the models as written): no file
            final.unlink()
    # The cheap guard behind the watermark reasoning: the files must add up to the table.
    total = con.execute(f"SELECT count(*) FROM marts.{plan.table}").fetchone()[0]  # type: ignore[index]
    return ok and total == sum(f.rows for f in plan.files())


def publish(settings: Settings, *, con: duckdb.DuckDBPyConnection | None = None) -> PublishResult:
    """Write a new ``analytics.duckdb`` from the marts and rename it into place.

    Steps, each safe to interrupt: export the new Parquet files (new names only); write
    the analytics file under a temporary name and rename it over the old one (readers see
    the old state or the new one, whole); record the new state in the ledger; retire what
    it superseded and delete retired files past the grace period. An interrupted publish
    leaves the previous analytics file and every file it names untouched; the next publish
    exports again from the ledger's last recorded state and retires the orphans.
    """
    started = time.perf_counter()
    own = con is None
    con = con or connect(settings.build_db_path)
    published_dir = settings.published_dir
    try:
        _ensure_ledger(con)
        seq = _begin_publish(con)
        modes = _mart_publish_modes(settings)
        marts = [
            r[0]
            for r in con.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = 'marts' "
                "AND table_catalog = current_database() ORDER BY table_name"
            ).fetchall()
        ]
        watermark = con.execute(
            f"SELECT coalesce(max(load_id), 0) FROM {LOADS} WHERE status = 'completed'"
        ).fetchone()[0]  # type: ignore[index]
        current = _current_files(con)
        metas = _view_metas(con)
        plans: dict[str, _ViewPlan] = {}
        for t in marts:
            mode = modes.get(t, "copy")
            if mode not in MODE_COLUMNS:
                continue
            columns = _describe(con, f"SELECT * FROM marts.{t}")
            if not all(f'"{c}"' in columns for c in MODE_COLUMNS[mode]):
                log.warning("%s lacks %s: copied whole", t, sorted(MODE_COLUMNS[mode]))
                continue
            meta, files = metas.get(t), current.get(t, [])
            # A file the live state names but that is gone (removed by hand): export the
            # mart again rather than publish a view that cannot be read. A stat per file.
            missing = [f.path for f in files if not (published_dir / f.path).exists()]
            if missing:
                log.warning(
                    "%s: %d published files are missing; exporting it whole", t, len(missing)
                )
            plan = _plan(
                con, published_dir, mode, t, columns, meta, files, seq, resync=bool(missing)
            )
            if not _export(con, published_dir, plan):
                log.warning("%s: published files disagree with the mart; exporting it whole", t)
                plan = _plan(con, published_dir, mode, t, columns, meta, files, seq, resync=True)
                if not _export(con, published_dir, plan):
                    raise RuntimeError(f"{t}: exported rows do not add up to the mart's rows")
            plans[t] = plan

        target = settings.analytics_db_path
        copied: dict[str, int] = {}
        with atomic.atomic_path(target) as tmp:
            tmp.unlink()  # DuckDB must create the file itself
            con.execute(f"ATTACH {_quote(str(tmp))} AS publish_target")
            try:
                # One transaction: ~300 statements (views, tables, a comment per column)
                # autocommitted one by one cost ~1 s; committed once, a fraction of it.
                con.execute("BEGIN TRANSACTION")
                con.execute("CREATE SCHEMA publish_target.marts")
                for t in marts:
                    files = plans[t].files() if t in plans else []
                    if files:
                        # Absolute paths, the exact files of this state: analysts open the
                        # database from anywhere, and files added, compacted or deleted
                        # later are never picked up by an older analytics file.
                        paths = [published_dir.resolve() / f.path for f in files]
                        con.execute(
                            f"CREATE VIEW publish_target.marts.{t} AS SELECT * FROM "
                            f"read_parquet({sql_list(paths)}, hive_partitioning = false)"
                        )
                    else:
                        con.execute(
                            f"CREATE TABLE publish_target.marts.{t} AS SELECT * FROM marts.{t}"
                        )
                        copied[t] = con.execute(f"SELECT count(*) FROM marts.{t}").fetchone()[0]  # type: ignore[index]
                _copy_about(con, watermark)
                _copy_comments(con, marts)
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise
            finally:
                con.execute("DETACH publish_target")
        retired = _commit(con, seq, plans)
        deleted = _clean_up(con, published_dir, settings.publish_grace_hours)
        result = PublishResult(
            target,
            copied,
            {t: p.appended_rows for t, p in plans.items() if p.mode == "append"},
            time.perf_counter() - started,
            {t: [e.file.part for e in p.exports if e.file.rows] for t, p in plans.items()},
            retired,
            deleted,
        )
        log.info("published %s in %.2fs", target, result.seconds)
        return result
    finally:
        if own:
            con.close()


def _commit(con: duckdb.DuckDBPyConnection, seq: int, plans: dict[str, _ViewPlan]) -> int:
    """Record the state the new analytics file names, in one transaction; return retired."""
    now = _utcnow()
    con.execute("BEGIN TRANSACTION")
    try:
        rows = [
            (f.path, plan.table, f.part, seq, f.rows, f.min_date, f.max_date, f.load_ids)
            for plan in plans.values()
            for f in plan.adopted + [e.file for e in plan.exports if e.file.rows]
        ]
        if rows:
            con.executemany(
                f"INSERT INTO {FILES} VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'current', NULL)", rows
            )
        retire = [p for plan in plans.values() for p in plan.retire]
        # A mart no longer published as a view (copied now, or gone) retires its files too.
        retired = con.execute(
            f"UPDATE {FILES} SET state = 'retired', retired_at = ? WHERE state = 'current' "
            "AND (list_contains(?, path) OR NOT list_contains(?, table_name))",
            [now, retire, list(plans)],
        ).fetchone()[0]  # type: ignore[index]
        con.execute(f"DELETE FROM {VIEWS}")
        if plans:
            con.executemany(
                f"INSERT INTO {VIEWS} VALUES (?, ?, ?, ?)",
                [(p.table, p.mode, p.columns, p.watermark) for p in plans.values()],
            )
        con.execute(
            f"UPDATE {RUNS} SET status = 'published', finished_at = ? WHERE seq = ?", [now, seq]
        )
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    return int(retired)


def _clean_up(con: duckdb.DuckDBPyConnection, published_dir: Path, grace_hours: float) -> int:
    """Retire files the ledger does not know; delete retired files past the grace period.

    Unknown files are what an interrupted publish wrote (or a build since deleted): an
    analytics file may still name them, so they get the same grace period, counted from now.
    Returns the number of files deleted.
    """
    now = _utcnow()
    known = {r[0] for r in con.execute(f"SELECT path FROM {FILES}").fetchall()}
    unknown = []
    if published_dir.is_dir():
        for folder in published_dir.iterdir():
            if folder.is_dir():
                for entry in os.scandir(folder):
                    path = f"{folder.name}/{entry.name}"
                    if entry.is_file() and path not in known:
                        unknown.append((path, folder.name, now))
    if unknown:
        log.info("retiring %d published files no analytics state names", len(unknown))
        con.executemany(
            f"INSERT INTO {FILES} (path, table_name, state, retired_at) "
            "VALUES (?, ?, 'retired', ?)",
            unknown,
        )
    cutoff = now - timedelta(hours=grace_hours)
    expired = [
        r[0]
        for r in con.execute(
            f"SELECT path FROM {FILES} WHERE state = 'retired' AND retired_at <= ?", [cutoff]
        ).fetchall()
    ]
    for path in expired:
        (published_dir / path).unlink(missing_ok=True)
    if expired:
        con.execute(
            f"DELETE FROM {FILES} WHERE state = 'retired' AND list_contains(?, path)", [expired]
        )
        log.info("deleted %d published files retired more than %s h ago", len(expired), grace_hours)
    # The publish history is only for diagnosis: keep the grace period's worth.
    con.execute(
        f"DELETE FROM {RUNS} WHERE finished_at <= ? AND seq < (SELECT max(seq) FROM {RUNS})",
        [cutoff],
    )
    return len(expired)


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _copy_comments(con: duckdb.DuckDBPyConnection, marts: list[str]) -> None:
    """Carry dbt's descriptions (persisted as comments) over, so analysts see them in SQL."""
    views = {
        r[0]
        for r in con.execute(
            "SELECT view_name FROM duckdb_views() WHERE database_name = 'publish_target' "
            "AND schema_name = 'marts'"
        ).fetchall()
    }
    statements = [
        f"COMMENT ON {'VIEW' if name in views else 'TABLE'} publish_target.marts.{name} "
        f"IS {_quote(comment)}"
        for name, comment in con.execute(
            "SELECT table_name, comment FROM duckdb_tables() WHERE database_name = "
            "current_database() AND schema_name = 'marts' AND comment IS NOT NULL"
        ).fetchall()
    ]
    statements += [
        f'COMMENT ON COLUMN publish_target.marts.{table}."{column}" IS {_quote(comment)}'
        for table, column, comment in con.execute(
            "SELECT table_name, column_name, comment FROM duckdb_columns() WHERE database_name = "
            "current_database() AND schema_name = 'marts' AND comment IS NOT NULL"
        ).fetchall()
        if table in marts
    ]
    if statements:  # one call for the ~250 statements: a round trip each adds up
        con.execute(";\n".join(statements))


def _copy_about(con: duckdb.DuckDBPyConnection, watermark: int) -> None:
    # One small table that tells an analyst what they are looking at and how fresh it is.
    con.execute(
        "CREATE TABLE publish_target.marts.about AS SELECT "
        f"{int(watermark)}::BIGINT AS published_load_id, "
        "(now() AT TIME ZONE 'UTC')::TIMESTAMP AS published_at, "
        "(SELECT max(last_update) FROM raw.snapshots) AS newest_snapshot_at, "
        "(SELECT count(DISTINCT snapshot_id) FROM raw.snapshots) AS snapshot_count"
    )
