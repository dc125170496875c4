"""Publishing, on a small hand-made build database: what is exported, what readers keep.

The marts here mimic the real ones' contracts without dbt (fast, and every case can be
staged): a fact appended by load (``_load_id``), a daily mart rebuilt by day
(``_max_load_id`` = the day's newest load) and a day-over-day mart that rebuilds a day and
the day after it. The integration tests run the same code on the real models.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from datetime import date, timedelta
from pathlib import Path

import duckdb
import pytest

import flows.publish as pub
import flows.warehouse as wh
from flows.settings import Settings, get_settings

ROOT = Path(__file__).resolve().parents[2]
DAILY = ("daily_x", "dod_x")
VIEWS = ("fct_x", *DAILY)


class Build:
    """A build database with three view marts and one small copied mart, and its loads."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.grace_hours = 24.0
        s = self.settings()
        con = wh.connect(s.build_db_path)
        try:
            wh.ensure_raw_schema(con)
            con.execute("CREATE SCHEMA marts")
            con.execute(
                "CREATE TABLE marts.fct_x (snapshot_id VARCHAR, snapshot_date DATE, "
                "coin VARCHAR, v DOUBLE, _load_id BIGINT)"
            )
            con.execute(
                "CREATE TABLE marts.daily_x (snapshot_date DATE, coin VARCHAR, close DOUBLE, "
                "n BIGINT, _max_load_id BIGINT)"
            )
            con.execute(
                "CREATE TABLE marts.dod_x (snapshot_date DATE, coin VARCHAR, change DOUBLE, "
                "_max_load_id BIGINT)"
            )
            con.execute("CREATE TABLE marts.dim_x (coin VARCHAR, note VARCHAR)")
            con.execute("INSERT INTO marts.dim_x VALUES ('BTC', 'big'), ('ETH', 'also')")
            con.execute("COMMENT ON TABLE marts.daily_x IS 'one row per day and coin'")
            con.execute("COMMENT ON COLUMN marts.daily_x.close IS 'the day''s last value'")
        finally:
            con.close()
        incremental = {"materialized": "incremental", "incremental_strategy": "delete+insert"}
        nodes = {
            "fct_x": {"materialized": "incremental", "meta": {"publish": "append"}},
            "daily_x": {**incremental, "unique_key": "snapshot_date"},
            "dod_x": {**incremental, "unique_key": "snapshot_date"},
            "dim_x": {"materialized": "table"},
        }
        manifest = {
            "nodes": {
                f"model.x.{name}": {
                    "resource_type": "model",
                    "schema": "marts",
                    "alias": name,
                    "config": {"meta": {}, **config},
                }
                for name, config in nodes.items()
            }
        }
        s.dbt_target_dir.mkdir(parents=True)
        (s.dbt_target_dir / "manifest.json").write_text(json.dumps(manifest))
        self.loads = 0

    def settings(self) -> Settings:
        return get_settings(data_dir=self.data_dir, publish_grace_hours=self.grace_hours)

    def con(self, read_only: bool = False) -> duckdb.DuckDBPyConnection:
        return wh.connect(self.settings().build_db_path, read_only=read_only)

    def load(self, *days: date, coins: tuple[str, ...] = ("BTC", "ETH")) -> int:
        """One load with a snapshot on each of ``days``; the daily marts rebuilt as dbt would."""
        self.loads += 1
        load_id = self.loads
        con = self.con()
        try:
            con.execute(
                "INSERT INTO raw._loads (load_id, started_at, finished_at, status) "
                "VALUES (?, now()::TIMESTAMP, (now() AT TIME ZONE 'UTC')::TIMESTAMP, 'completed')",
                [load_id],
            )
            for day in days:
                for i, coin in enumerate(coins):
                    con.execute(
                        "INSERT INTO marts.fct_x VALUES (?, ?, ?, ?, ?)",
                        [f"{day}#{load_id}", day, coin, load_id * 10.0 + i, load_id],
                    )
            touched = sorted(set(days))
            days_sql = ", ".join(f"DATE '{d}'" for d in touched)
            con.execute(f"DELETE FROM marts.daily_x WHERE snapshot_date IN ({days_sql})")
            con.execute(
                "INSERT INTO marts.daily_x SELECT snapshot_date, coin, arg_max(v, snapshot_id), "
                "count(*), max(max(_load_id)) OVER (PARTITION BY snapshot_date) FROM marts.fct_x "
                f"WHERE snapshot_date IN ({days_sql}) GROUP BY snapshot_date, coin"
            )
            # Day over day: the touched days and the day after each, where that day exists.
            after = sorted(set(touched) | {d + timedelta(days=1) for d in touched})
            after_sql = ", ".join(f"DATE '{d}'" for d in after)
            con.execute(f"DELETE FROM marts.dod_x WHERE snapshot_date IN ({after_sql})")
            con.execute(
                "INSERT INTO marts.dod_x SELECT cur.snapshot_date, cur.coin, "
                "cur.close - prev.close, greatest(cur._max_load_id, prev._max_load_id) "
                "FROM marts.daily_x AS cur LEFT JOIN marts.daily_x AS prev "
                "ON prev.coin = cur.coin AND prev.snapshot_date = cur.snapshot_date - 1 "
                f"WHERE cur.snapshot_date IN ({after_sql})"
            )
        finally:
            con.close()
        return load_id

    def publish(self) -> pub.PublishResult:
        return pub.publish(self.settings())

    def ledger(self, state: str = "current") -> dict[str, list[str]]:
        con = self.con(read_only=True)
        try:
            out: dict[str, list[str]] = {}
            for table, path in con.execute(
                f"SELECT table_name, path FROM {pub.FILES} WHERE state = ? ORDER BY path", [state]
            ).fetchall():
                out.setdefault(table, []).append(path)
            return out
        finally:
            con.close()

    def files_on_disk(self) -> set[str]:
        root = self.settings().published_dir
        return {str(p.relative_to(root)) for p in root.glob("*/*") if p.is_file()}


@pytest.fixture
def build(tmp_path: Path) -> Build:
    return Build(tmp_path / "data")


def content(con: duckdb.DuckDBPyConnection, prefix: str = "") -> dict[str, list[tuple]]:
    """Every view mart's rows and the copied mart's, in a stable order."""
    return {
        t: con.execute(f"SELECT * FROM {prefix}marts.{t} ORDER BY ALL").fetchall()
        for t in (*VIEWS, "dim_x")
    }


def published_content(settings: Settings) -> dict[str, list[tuple]]:
    con = duckdb.connect(str(settings.analytics_db_path), read_only=True)
    try:
        return content(con)
    finally:
        con.close()


def assert_published_equals_build(build: Build) -> None:
    con = build.con(read_only=True)
    try:
        expected = content(con)
    finally:
        con.close()
    assert published_content(build.settings()) == expected


def view_files(settings: Settings, table: str) -> list[str]:
    """The files a published view reads, relative to published/, in its order."""
    con = duckdb.connect(str(settings.analytics_db_path), read_only=True)
    try:
        sql = con.execute(
            "SELECT sql FROM duckdb_views() WHERE schema_name = 'marts' AND view_name = ?",
            [table],
        ).fetchone()[0]
    finally:
        con.close()
    root = str(settings.published_dir.resolve()) + "/"
    return [p.split("'")[0] for p in sql.split(root)[1:]]


D1, D2, D3 = date(2026, 3, 10), date(2026, 3, 11), date(2026, 3, 12)


def test_each_publish_exports_only_the_days_and_loads_its_runs_rebuilt(build: Build) -> None:
    build.load(D1)
    build.load(D2)
    first = build.publish()
    assert first.exported["daily_x"] == [f"day-{D1}", f"day-{D2}"]
    assert first.exported["fct_x"] == [f"day-{D1}", "load-000000002"]  # D1 is closed
    assert_published_equals_build(build)

    build.load(D3)
    before = {t: view_files(build.settings(), t) for t in VIEWS}
    second = build.publish()
    # One new day: one file per daily mart; the fact gets the new load only.
    assert second.exported == {
        "daily_x": [f"day-{D3}"],
        "dod_x": [f"day-{D3}"],
        "fct_x": ["load-000000003"],
    }
    assert second.appended == {"fct_x": 2}
    after = {t: view_files(build.settings(), t) for t in VIEWS}
    for t in DAILY:  # the other days' files are the very same files
        assert after[t][:2] == before[t]
    assert_published_equals_build(build)

    build.load(D3)  # the same day again: a new version of that day, nothing else
    third = build.publish()
    assert third.exported["daily_x"] == [f"day-{D3}"]
    assert third.retired >= 2  # the superseded D3 versions
    assert_published_equals_build(build)

    build.load(D1)  # a late snapshot: D1 and, for day over day, the day after it
    late = build.publish()
    assert late.exported["daily_x"] == [f"day-{D1}"]
    assert late.exported["dod_x"] == [f"day-{D1}", f"day-{D2}"]
    assert_published_equals_build(build)

    again = build.publish()  # nothing new: nothing exported, the same state
    assert again.exported == {"fct_x": [], "daily_x": [], "dod_x": []}
    assert again.retired == 0
    assert_published_equals_build(build)


def test_comments_and_the_small_marts_are_published(build: Build) -> None:
    build.load(D1)
    result = build.publish()
    assert result.tables == {"dim_x": 2}
    con = duckdb.connect(str(build.settings().analytics_db_path), read_only=True)
    try:
        assert con.execute(
            "SELECT comment FROM duckdb_views() WHERE view_name = 'daily_x'"
        ).fetchone() == ("one row per day and coin",)
        assert con.execute(
            "SELECT comment FROM duckdb_columns() WHERE table_name = 'daily_x' "
            "AND column_name = 'close'"
        ).fetchone() == ("the day's last value",)
        assert con.execute("SELECT published_load_id FROM marts.about").fetchone() == (1,)
    finally:
        con.close()


def test_a_closed_day_of_the_fact_becomes_one_file(build: Build) -> None:
    for _ in range(3):
        build.load(D1)
    build.publish()
    assert len(view_files(build.settings(), "fct_x")) == 3  # D1 still open
    build.load(D2)
    result = build.publish()
    assert result.exported["fct_x"] == [f"day-{D1}", "load-000000004"]
    files = view_files(build.settings(), "fct_x")
    assert [Path(f).name.split(".")[0] for f in files] == [f"day-{D1}", "load-000000004"]
    assert_published_equals_build(build)
    assert len(build.ledger("retired")["fct_x"]) == 3  # the three load files, kept a while


def test_a_closed_month_of_a_daily_mart_becomes_one_file(build: Build) -> None:
    jan30, jan31, feb1, feb2 = (date(2026, 1, 30) + timedelta(days=i) for i in range(4))
    for day in (jan30, jan31, feb1):
        build.load(day)
    build.publish()
    assert len(view_files(build.settings(), "daily_x")) == 3
    build.load(feb2)  # two days past January's end: January is closed
    result = build.publish()
    assert result.exported["daily_x"] == ["month-2026-01", f"day-{feb2}"]
    files = [Path(f).name.split(".")[0] for f in view_files(build.settings(), "daily_x")]
    assert files == ["month-2026-01", f"day-{feb1}", f"day-{feb2}"]
    assert_published_equals_build(build)
    build.load(jan31)  # a late snapshot in a closed month: the month is exported again
    late = build.publish()
    assert late.exported["daily_x"] == ["month-2026-01"]
    assert late.exported["dod_x"] == ["month-2026-01", f"day-{feb1}"]
    assert_published_equals_build(build)


class Reader:
    """Another process holding ``analytics.duckdb`` open read-only, as an analyst does."""

    def __init__(self, db: Path) -> None:
        script = textwrap.dedent(
            f"""
            import duckdb, json, sys
            con = duckdb.connect({str(db)!r}, read_only=True)
            for line in sys.stdin:
                try:
                    out = {{t: con.execute(f"select * from marts.{{t}} order by all").fetchall()
                           for t in {list(VIEWS)!r}}}
                except Exception as exc:
                    out = {{"error": str(exc)}}
                print(json.dumps(out, default=str), flush=True)
            """
        )
        self.proc = subprocess.Popen(
            [sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )

    def read(self) -> dict:
        assert self.proc.stdin
        assert self.proc.stdout
        self.proc.stdin.write("?\n")
        self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline())

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()


def test_a_reader_of_an_old_analytics_file_reads_it_through_publishes_and_clean_up(
    build: Build,
) -> None:
    build.load(D1)
    build.load(D1)
    build.publish()
    reader = Reader(build.settings().analytics_db_path)
    try:
        seen = reader.read()
        assert "error" not in seen
        assert len(seen["fct_x"]) == 4
        # Several publishes that supersede every file the reader's views name: a new version
        # of D1, then D1's fact loads compacted once D2 starts, then more.
        for day in (D1, D2, D2, D3):
            build.load(day)
            build.publish()
        assert build.ledger("retired")  # superseded, but inside the grace period: kept
        assert reader.read() == seen
        assert_published_equals_build(build)
    finally:
        reader.close()


def test_retired_files_are_deleted_after_the_grace_period_and_not_before(build: Build) -> None:
    build.load(D1)
    build.publish()
    build.load(D1)
    build.load(D2)
    build.publish()
    retired = build.ledger("retired")
    assert retired
    retired_paths = {p for paths in retired.values() for p in paths}
    assert retired_paths <= build.files_on_disk()  # kept: a reader may still use them

    build.grace_hours = 1 / 3600  # one second
    time.sleep(1.2)
    result = build.publish()
    assert result.deleted == len(retired_paths)
    assert not retired_paths & build.files_on_disk()
    current = {p for paths in build.ledger().values() for p in paths}
    assert build.files_on_disk() == current
    assert_published_equals_build(build)


def test_an_interrupted_publish_leaves_the_old_state_and_the_next_one_completes_it(
    build: Build, monkeypatch: pytest.MonkeyPatch
) -> None:
    build.load(D1)
    build.publish()
    db = build.settings().analytics_db_path
    old = published_content(build.settings())
    old_inode = db.stat().st_ino
    build.load(D1)
    build.load(D2)

    real = pub._write_parquet
    written: list[Path] = []

    def fail_after_two(con, select, final, **kw):  # type: ignore[no-untyped-def]
        if len(written) == 2:
            raise OSError("disk full")
        written.append(final)
        return real(con, select, final, **kw)

    monkeypatch.setattr(pub, "_write_parquet", fail_after_two)
    with pytest.raises(OSError, match="disk full"):
        build.publish()
    monkeypatch.setattr(pub, "_write_parquet", real)
    # The analytics file and every file it names are untouched.
    assert db.stat().st_ino == old_inode
    assert published_content(build.settings()) == old
    assert all(p.exists() for p in written)  # orphans, unknown to the ledger

    result = build.publish()
    assert_published_equals_build(build)
    orphans = {str(p.relative_to(build.settings().published_dir)) for p in written}
    retired = {p for paths in build.ledger("retired").values() for p in paths}
    assert orphans <= retired  # retired, kept for the grace period, then deleted
    assert result.exported["daily_x"] == [f"day-{D1}", f"day-{D2}"]


def test_a_publish_killed_after_the_rename_is_completed_and_its_files_kept(
    build: Build, monkeypatch: pytest.MonkeyPatch
) -> None:
    build.load(D1)
    build.publish()
    build.load(D2)

    def crash(*args: object) -> int:
        raise KeyboardInterrupt  # after the new analytics file is in place, before the ledger

    monkeypatch.setattr(pub, "_commit", crash)
    with pytest.raises(KeyboardInterrupt):
        build.publish()
    monkeypatch.undo()
    # The interrupted publish's state is live and readers may hold it: its files must stay.
    assert_published_equals_build(build)
    reader = Reader(build.settings().analytics_db_path)
    try:
        seen = reader.read()
        build.load(D2)
        build.publish()
        build.load(D3)
        build.publish()
        assert reader.read() == seen
    finally:
        reader.close()
    assert_published_equals_build(build)


def test_a_publish_killed_mid_export_is_completed_by_the_next(build: Build) -> None:
    build.load(D1)
    build.publish()
    build.load(D2)
    script = textwrap.dedent(
        f"""
        import time, flows.publish as w
        from flows.settings import get_settings
        real = w._write_parquet
        def slow(con, select, final, **kw):
            n = real(con, select, final, **kw)
            print("wrote", final, flush=True)
            time.sleep(60)
            return n
        w._write_parquet = slow
        w.publish(get_settings(data_dir={str(build.data_dir)!r}))
        """
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, cwd=ROOT
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.startswith("wrote"), line
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    con = build.con(read_only=True)
    try:
        assert con.execute(f"SELECT status FROM {pub.RUNS} ORDER BY seq").fetchall() == [
            ("published",),
            ("running",),
        ]
    finally:
        con.close()

    build.publish()
    assert_published_equals_build(build)
    con = build.con(read_only=True)
    try:
        assert con.execute(f"SELECT status FROM {pub.RUNS} ORDER BY seq").fetchall() == [
            ("published",),
            ("interrupted",),
            ("published",),
        ]
    finally:
        con.close()
    orphan = line.split()[1]
    assert os.path.exists(orphan)
    assert str(Path(orphan).relative_to(build.settings().published_dir)) in {
        p for paths in build.ledger("retired").values() for p in paths
    }


def test_files_that_disagree_with_the_mart_are_replaced(build: Build) -> None:
    build.load(D1)
    build.load(D2)
    build.publish()
    con = build.con()
    try:  # a change behind the watermark (as a hand-run full refresh could make)
        con.execute(f"DELETE FROM marts.daily_x WHERE snapshot_date = DATE '{D1}' AND coin = 'BTC'")
    finally:
        con.close()
    result = build.publish()
    assert result.exported["daily_x"] == [f"day-{D1}", f"day-{D2}"]
    assert_published_equals_build(build)


def test_a_published_file_removed_by_hand_is_exported_again(build: Build) -> None:
    build.load(D1)
    build.load(D2)
    build.publish()
    (build.settings().published_dir / view_files(build.settings(), "dod_x")[0]).unlink()
    result = build.publish()
    assert result.exported["dod_x"] == [f"day-{D1}", f"day-{D2}"]
    assert result.exported["daily_x"] == []
    assert_published_equals_build(build)


def test_a_changed_schema_exports_the_mart_again(build: Build) -> None:
    build.load(D1)
    build.load(D2)
    build.publish()
    con = build.con()
    try:
        con.execute("ALTER TABLE marts.daily_x ADD COLUMN extra INTEGER DEFAULT 7")
    finally:
        con.close()
    result = build.publish()
    assert result.exported["daily_x"] == [f"day-{D1}", f"day-{D2}"]
    assert result.exported["dod_x"] == []
    assert_published_equals_build(build)


def test_the_per_load_files_of_the_old_layout_are_adopted(build: Build) -> None:
    for day in (D1, D1, D2):
        build.load(day)
    root = build.settings().published_dir / "fct_x"
    root.mkdir(parents=True)
    con = build.con()
    try:  # what the previous publish wrote: load_<id>.parquet, one per load
        for load_id in (1, 2, 3):
            con.execute(
                f"COPY (SELECT * FROM marts.fct_x WHERE _load_id = {load_id}) "
                f"TO '{root}/load_{load_id:09d}.parquet' (FORMAT parquet)"
            )
    finally:
        con.close()
    stale = root / "load_000000003.parquet"
    os.utime(stale, (0, 0))  # written before its load committed: another build's
    result = build.publish()
    # Loads 1 and 2 (closed day D1) were taken over and compacted; load 3 exported anew.
    assert result.exported["fct_x"] == [f"day-{D1}", "load-000000003"]
    assert build.ledger("retired")["fct_x"] == [
        "fct_x/load_000000001.parquet",
        "fct_x/load_000000002.parquet",
        "fct_x/load_000000003.parquet",
    ]
    assert_published_equals_build(build)


def test_wiping_the_build_keeps_the_files_an_open_reader_uses(build: Build) -> None:
    build.load(D1)
    build.publish()
    before = build.files_on_disk()
    wh.wipe_warehouse(build.settings())
    assert not build.settings().build_db_path.exists()
    assert build.files_on_disk() == before


def test_a_backlog_of_closed_days_is_merged_one_day_per_publish(build: Build) -> None:
    for day in (D1, D1, D2, D2, D3):
        build.load(day)
    root = build.settings().published_dir / "fct_x"
    root.mkdir(parents=True)
    con = build.con()
    try:  # an upgrade from the per-load layout: five small files, two closed days
        for load_id in range(1, 6):
            con.execute(
                f"COPY (SELECT * FROM marts.fct_x WHERE _load_id = {load_id}) "
                f"TO '{root}/load_{load_id:09d}.parquet' (FORMAT parquet)"
            )
    finally:
        con.close()
    first = build.publish()
    assert first.exported["fct_x"] == [f"day-{D1}"]  # D2 waits: one day's rewrite per run
    assert_published_equals_build(build)
    second = build.publish()
    assert second.exported["fct_x"] == [f"day-{D2}"]
    assert [Path(f).name.split(".")[0] for f in view_files(build.settings(), "fct_x")] == [
        f"day-{D1}",
        f"day-{D2}",
        "load_000000005",
    ]
    assert_published_equals_build(build)
