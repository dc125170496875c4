"""Operations: the schedule, the quota guard, no overlap, readers never blocked, rebuild,
a load killed mid-way (serving: test_serve.py)."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from datetime import timedelta
from pathlib import Path

import duckdb
import pytest

from flows.pipeline import elt_flow, rebuild_flow
from flows.quota import Ledger
from flows.serving import build_deployment
from flows.settings import Settings, get_settings
from flows.warehouse import wipe_warehouse

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("prefect_harness")]
ROOT = Path(__file__).resolve().parents[2]


def marts_content(db: Path) -> dict[str, list[tuple]]:
    """Every mart's rows, without load bookkeeping, in a stable order."""
    con = duckdb.connect(str(db), read_only=True)
    try:
        out = {}
        tables = con.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'marts' "
            "AND table_name <> 'about' ORDER BY 1"
        ).fetchall()
        for (name,) in tables:
            cols = [
                c
                for (c,) in con.execute(
                    "SELECT column_name FROM information_schema.columns "
                    "WHERE table_schema = 'marts' AND table_name = ? ORDER BY ordinal_position",
                    [name],
                ).fetchall()
                if not c.startswith("_")
            ]
            col_sql = ", ".join(f'"{c}"' for c in cols)
            out[name] = con.execute(f'SELECT {col_sql} FROM marts."{name}" ORDER BY ALL').fetchall()
        return out
    finally:
        con.close()


def fact_duplicates(db: Path) -> int:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute(
            'SELECT count(*) FROM (SELECT snapshot_id, "window", coin, segment_id, count(*) n '
            "FROM marts.fct_cohort_snapshots GROUP BY ALL HAVING n > 1)"
        ).fetchone()[0]
    finally:
        con.close()


def test_deployment_runs_the_elt_flow_on_the_configured_cron(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HT_SCHEDULE_CRON", "*/15 * * * *")
    deployment = build_deployment()
    assert deployment.name == "scheduled"
    assert deployment.flow_name == "hypertracker-elt"
    (schedule,) = deployment.schedules
    assert schedule.schedule.cron == "*/15 * * * *"


def test_no_new_state_ends_quickly_as_no_new_data(env: Path, sim) -> None:
    assert elt_flow().outcome == "published"
    sim.clear_request_log()
    second = elt_flow()
    assert second.outcome == "no new data"
    assert [r.path.rsplit("/", 1)[-1] for r in sim.request_log] == ["status"]


def test_quota_guard_refuses_a_run_that_would_exceed_the_daily_budget(
    env: Path, sim, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HT_REQUESTS_PER_DAY", "10")
    Ledger.open(get_settings()).record(6)  # 6 spent; a first run needs 7 (ladder included)
    sim.clear_request_log()
    summary = elt_flow()
    assert summary.outcome.startswith("skipped: daily API budget")
    assert "next run can start after" in summary.outcome
    assert sim.request_log == []
    assert not (env / "archive").exists() or not list((env / "archive").glob("date=*"))


def test_a_run_steps_aside_while_another_holds_the_lock(
    env: Path, sim, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HT_LOCK_TIMEOUT_S", "0.5")
    # Another process holds the lock (within one thread the lock is re-entrant).
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from pathlib import Path; from flows.runlock import run_lock\n"
            f"with run_lock(Path({str(get_settings().state_dir)!r}), timeout_s=1, "
            "what='a test holding the lock'):\n"
            "    print('held', flush=True); time.sleep(60)",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "held"
        summary = elt_flow()
    finally:
        holder.kill()
        holder.wait()
    assert summary.outcome.startswith("skipped:")
    assert "a test holding the lock" in summary.outcome
    assert sim.request_log == []


def test_two_overlapping_runs_corrupt_nothing(env: Path, sim) -> None:
    results: list[str] = []

    def run() -> None:
        results.append(elt_flow().outcome)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    # One run published; the other waited for the lock, then found the state stored.
    assert sorted(results) == ["no new data", "published"]
    settings = get_settings()
    assert fact_duplicates(settings.build_db_path) == 0


def test_a_reader_holding_analytics_open_sees_complete_states_and_blocks_nothing(
    env: Path, sim
) -> None:
    sim.advance(timedelta(hours=12))  # mid-day: the runs below all rebuild the same day
    assert elt_flow().outcome == "published"
    db = get_settings().analytics_db_path
    readers_files = view_files(db, "cohort_bias_daily")
    reader = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                f"""
                import duckdb, sys
                con = duckdb.connect({str(db)!r}, read_only=True)
                for line in sys.stdin:
                    snaps = con.execute(
                        "select count(distinct snapshot_id) from marts.fct_coin_snapshots"
                    ).fetchone()[0]
                    about = con.execute("select snapshot_count from marts.about").fetchone()[0]
                    # A daily mart: each publish below exports a new version of this day.
                    day = con.execute(
                        "select max(snapshot_count) from marts.cohort_bias_daily"
                    ).fetchone()[0]
                    print(snaps, about, day, flush=True)
                """
            ),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:

        def ask() -> tuple[int, ...]:
            assert reader.stdin
            assert reader.stdout
            reader.stdin.write("?\n")
            reader.stdin.flush()
            return tuple(int(x) for x in reader.stdout.readline().split())

        assert ask() == (1, 1, 1)
        for n in range(2, 5):
            sim.advance_to_next_state()
            summary = elt_flow()
            assert summary.outcome == "published"  # the open reader blocks no run
            assert summary.publish.deleted == 0  # clean-up ran; nothing past the grace period
            # The reader keeps its complete, consistent state: facts, daily marts and
            # metadata agree, though the files of its day were superseded since.
            assert ask() == (1, 1, 1)
            fresh = duckdb.connect(str(db), read_only=True)
            try:
                assert (
                    fresh.execute(
                        "select count(distinct snapshot_id) from marts.fct_coin_snapshots"
                    ).fetchone()[0]
                    == n
                )
                assert (
                    fresh.execute(
                        "select max(snapshot_count) from marts.cohort_bias_daily"
                    ).fetchone()[0]
                    == n
                )
            finally:
                fresh.close()
        # Every file the reader's daily view names was superseded, and is still there.
        assert not set(readers_files) & set(view_files(db, "cohort_bias_daily"))
        assert all(Path(f).exists() for f in readers_files)
    finally:
        reader.kill()
        reader.wait()
    analytics_matches_build(get_settings())


def analytics_matches_build(settings: Settings) -> None:
    """Every published mart holds exactly the build's rows (views and copies alike).

    Compared row by row with ``same_row``: a view computes its sums when read, and a sum's
    last bits depend on the order DuckDB adds its terms in.
    """
    con = duckdb.connect(str(settings.analytics_db_path), read_only=True)
    try:
        con.execute(f"ATTACH '{settings.build_db_path}' AS build (READ_ONLY)")
        marts = [
            t
            for (t,) in con.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_catalog = 'build' "
                "AND table_schema = 'marts' AND table_name NOT LIKE '%__dbt_%'"
            ).fetchall()
        ]
        assert marts
        for t in marts:
            published = con.execute(f"SELECT * FROM marts.{t} ORDER BY ALL").fetchall()
            built = con.execute(f"SELECT * FROM build.marts.{t} ORDER BY ALL").fetchall()
            assert len(published) == len(built), t
            for a, b in zip(published, built, strict=True):
                assert same_row(a, b), (t, a, b)
    finally:
        con.close()


def test_each_build_writes_only_the_days_it_rebuilt(env: Path, sim) -> None:
    settings = get_settings()
    daily = [
        "cohort_bias_daily",
        "coin_bias_daily",
        "cohort_day_over_day",
        "coin_day_over_day",
        "smart_retail_divergence_daily",
    ]
    assert elt_flow().outcome == "published"
    listed = {t: view_files(settings.analytics_db_path, t) for t in daily}
    days_seen = set()
    for step in range(3):  # the new snapshots span two days or more
        sim.advance(timedelta(hours=9))
        summary = elt_flow()
        assert summary.outcome == "published"
        sid = summary.snapshot.snapshot_id
        day = f"{sid[:4]}-{sid[4:6]}-{sid[6:8]}"
        days_seen.add(day)
        now = {t: view_files(settings.analytics_db_path, t) for t in daily}
        for t in daily:
            # One new snapshot: its day is the only one rewritten (the day after it, which
            # day over day also rebuilds, has no rows yet); every other day keeps its file.
            new = set(now[t]) - set(listed[t])
            assert {f.split("snapshot_date=")[1][:10] for f in new} == {day}, (step, t, new)
            assert len(new) == 1, (step, t, new)
            assert {f for f in listed[t] if f"snapshot_date={day}" not in f} <= set(now[t]), t
        listed = now
        analytics_matches_build(settings)
    assert len(days_seen) >= 2


def view_files(db: Path, view: str) -> list[str]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        sql = con.execute(
            "SELECT sql FROM duckdb_views() WHERE schema_name = 'marts' AND view_name = ?", [view]
        ).fetchone()[0]
    finally:
        con.close()
    return [part.split("'")[0] for part in sql.split("'")[1::2] if part.endswith(".parquet")]


def test_superseded_files_are_deleted_once_the_grace_period_has_passed(
    env: Path, sim, monkeypatch: pytest.MonkeyPatch
) -> None:
    sim.advance(timedelta(hours=12))  # mid-day: the second run rebuilds the first one's day
    assert elt_flow().outcome == "published"
    sim.advance_to_next_state()
    summary = elt_flow()
    assert summary.publish.retired >= 5  # the day's earlier version, one per daily mart
    marts_dir = get_settings().marts_dir
    on_disk = {p for p in marts_dir.glob("*/*/*.parquet")}
    monkeypatch.setenv("HT_PUBLISH_GRACE_HOURS", str(1 / 3600))
    time.sleep(1.5)
    sim.advance_to_next_state()
    summary = elt_flow()
    assert summary.publish.deleted > 0
    gone = on_disk - {p for p in marts_dir.glob("*/*/*.parquet")}
    assert len(gone) == summary.publish.deleted
    # What remains is exactly what the live analytics file names, plus what this run retired.
    named = {
        Path(f)
        for view in ("cohort_bias_daily", "coin_day_over_day")
        for f in view_files(get_settings().analytics_db_path, view)
    }
    assert not gone & named
    analytics_matches_build(get_settings())


def test_rebuild_after_deleting_the_warehouse_gives_identical_marts(env: Path, sim) -> None:
    for _ in range(3):
        assert elt_flow().outcome == "published"
        sim.advance(__import__("datetime").timedelta(hours=9))  # spread over two days
    settings = get_settings()
    before = marts_content(settings.analytics_db_path)
    assert sum(len(rows) for rows in before.values()) > 0
    wipe_warehouse(settings)
    settings.analytics_db_path.unlink()
    rebuild_flow()
    after = marts_content(settings.analytics_db_path)
    assert after.keys() == before.keys()
    for name in before:
        assert len(after[name]) == len(before[name]), name
        for old, new in zip(before[name], after[name], strict=True):
            assert same_row(old, new), (name, old, new)


def same_row(a: tuple, b: tuple) -> bool:
    """Equal, except that floats may differ in the last bits: a sum's rounding depends on the
    order DuckDB adds its terms in, which differs between an incremental and a full build
    (and between two parallel runs of the same query)."""
    if len(a) != len(b):
        return False
    for x, y in zip(a, b, strict=True):
        if isinstance(x, float) and isinstance(y, float):
            if not math.isclose(x, y, rel_tol=1e-12, abs_tol=1e-9):
                return False
        elif x != y:
            return False
    return True


def test_a_load_killed_before_it_commits_leaves_nothing_and_the_rerun_loads_once(
    env: Path, sim
) -> None:
    from flows.pipeline import snapshot_flow
    from flows.warehouse import load_lake

    for _ in range(2):
        snapshot_flow()
        sim.advance_to_next_state()
    script = textwrap.dedent(
        """
        import time, flows.warehouse as w
        real = w.day_of
        def slow_day_of(snapshot_id):
            print("loading", snapshot_id, flush=True)
            time.sleep(60)
            return real(snapshot_id)
        w.day_of = slow_day_of
        from flows.settings import get_settings
        w.load_lake(get_settings())
        """
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", script],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env={**os.environ},
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.startswith("loading"), line
    proc.send_signal(signal.SIGKILL)
    proc.wait()

    settings = get_settings()
    result = load_lake(settings)  # the rerun loads everything, once
    assert len(result.snapshot_ids) == 2
    assert load_lake(settings).load_id is None
    con = duckdb.connect(str(settings.build_db_path), read_only=True)
    try:
        loads = con.execute("select load_id, count(*) from lake.loads group by 1").fetchall()
    finally:
        con.close()
    assert loads == [(1, 2)]
