"""``ht backfill`` against the simulated API over HTTP: a deep backfill equals live
collection of the same states; a SIGKILLed backfill resumes without refetching a stored
page; the pre-signed file never sees the token; the scheduled runs keep their budget.

One simulator and one live + backfilled data folder are shared by the module (small spans,
pages of at most 200 states: the simulator is slow on big pages).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pytest
from rich.console import Console

from flows.backfill.archive import HistoryArchive
from flows.backfill.run import BackfillRefused, Options, Outcome, run_backfill
from flows.lake.parquet import read_lake_rows
from flows.quota import Ledger, requests_per_run
from flows.settings import get_settings
from simulator.server import SimulatedApi
from tests.conftest import SIM_START, SIM_TOKEN

DAY2 = SIM_START + timedelta(days=1)  # the backfill starts at this UTC midnight
SPAN = timedelta(hours=1, minutes=30)
COINS = ("BTC", "ETH")
WINDOWS = "all,24h"
QUIET = Console(quiet=True)


def _env(sim: SimulatedApi, data_dir: Path, **extra: str) -> dict[str, str]:
    env = {
        "HT_BASE_URL": sim.base_url,
        "HT_HYPERLIQUID_URL": sim.info_url,
        "HT_HYPERLIQUID_WEIGHT_PER_MINUTE": "1000000",
        "HT_PRICE_HISTORY_WEIGHT_PER_RUN": "1000000",
        "HT_API_TOKEN": SIM_TOKEN,
        "HT_DATA_DIR": str(data_dir),
        "HT_BACKOFF_BASE_S": "0.01",
        "HT_MAX_RETRY_WAIT_S": "5",
        "HT_REQUESTS_PER_MINUTE": "100000",
        "HT_READ_TIMEOUT_S": "20",
        "HT_WINDOWS": WINDOWS,
    }
    env.update(extra)
    return env


@pytest.fixture(scope="module")
def sim() -> Iterator[SimulatedApi]:
    api = SimulatedApi(seed=11, token=SIM_TOKEN, start=SIM_START, history_days=2)
    api.start()
    api.set_time(DAY2)
    try:
        yield api
    finally:
        api.stop()


@pytest.fixture(scope="module")
def use_env(sim: SimulatedApi) -> Iterator[callable]:
    saved = dict(os.environ)

    def point(data_dir: Path, **extra: str) -> None:
        for key in [k for k in os.environ if k.startswith("HT_")]:
            del os.environ[key]
        os.environ.update(_env(sim, data_dir, **extra))

    yield point
    os.environ.clear()
    os.environ.update(saved)


def _backfill(options: Options, *, build: bool = False, force: bool = False) -> Outcome:
    from flows.pipeline import backfill_build_flow

    return run_backfill(
        get_settings(),
        options,
        console=QUIET,
        progress_console=QUIET,
        confirm=None,
        force=force,
        build=backfill_build_flow if build else lambda: None,
    )


@pytest.fixture(scope="module")
def collected(
    prefect_harness: None, sim: SimulatedApi, use_env, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, Outcome, float]:
    """Live snapshots of every state for SPAN, then a deep backfill of the same span."""
    from flows.pipeline import snapshot_flow

    data_dir = tmp_path_factory.mktemp("backfill") / "data"
    use_env(data_dir)
    sim.set_time(DAY2)
    while sim.now < DAY2 + SPAN:
        snapshot_flow()
        sim.advance_to_next_state()
    sim.clear_request_log()
    started = time.perf_counter()
    outcome = _backfill(
        Options(depth="deep", coins=COINS, top=None, windows=None, start=DAY2, page_limit=200),
        build=True,
    )
    return data_dir, outcome, time.perf_counter() - started


def test_deep_backfill_equals_live_collection_row_for_row(collected, sim: SimulatedApi) -> None:
    data_dir, outcome, seconds = collected
    lake = data_dir / "lake"
    # The first live state (in force at DAY2) was published before the backfill's start.
    naive_start = DAY2.replace(tzinfo=None)
    live = [
        r
        for r in read_lake_rows(lake, "heatmap_cohorts").to_pylist()
        if r["last_update"] >= naive_start
    ]
    back = read_lake_rows(lake, "backfill_cohorts").to_pylist()
    live_ids = sorted({r["snapshot_id"] for r in live})
    back_ids = sorted({r["snapshot_id"] for r in back})
    # The live run stops at the state in force at DAY2 + SPAN; the backfill ends at `now`.
    assert len(back_ids) >= len(live_ids) >= 3
    cmp = outcome.comparison
    assert cmp.matched_states == len(live_ids)
    assert cmp.mismatched_rows == 0
    assert cmp.missing_rows == 0
    # Row for row: every live cohort row of the two coins has its backfilled twin.
    keyed = {(r["last_update"], r["window"], r["coin"], r["segment_id"]) for r in back}
    ours = [r for r in live if r["coin"] in COINS]
    nearest = {}
    back_times = sorted({r["last_update"] for r in back})
    for t in {r["last_update"] for r in ours}:
        nearest[t] = min(back_times, key=lambda b: abs(b - t))
        assert abs(nearest[t] - t) <= timedelta(seconds=20)
    missing = [
        r
        for r in ours
        if (nearest[r["last_update"]], r["window"], r["coin"], r["segment_id"]) not in keyed
    ]
    assert missing == []
    assert cmp.compared_rows >= len(ours)
    # Calls: one per series (a page holds every state of the span), all counted.
    api_calls = [r for r in sim.request_log if "/position-metrics/" in r.path]
    assert len(api_calls) == outcome.plan.series == 2 * 16 * 2
    assert Ledger.open(get_settings()).day_count >= len(api_calls)
    print(f"deep backfill + build: {seconds:.1f}s, {len(api_calls)} calls")


def test_the_marts_carry_the_source_and_live_wins(collected) -> None:
    data_dir, _, _ = collected
    db = data_dir / "warehouse" / "analytics.duckdb"
    with duckdb.connect(str(db), read_only=True) as con:
        sources = dict(
            con.execute(
                "select source, count(distinct snapshot_id) from marts.fct_cohort_snapshots "
                "group by source"
            ).fetchall()
        )
        assert set(sources) == {"heatmap", "position_metrics"}
        # No state twice: a backfilled state a live snapshot holds is left out.
        (dupes,) = con.execute(
            """select count(*) from (
                select a.snapshot_id from (select distinct snapshot_id, last_update, source
                    from marts.fct_cohort_snapshots) as a
                join (select distinct snapshot_id, last_update, source
                    from marts.fct_cohort_snapshots) as b
                    on a.source = 'heatmap' and b.source <> 'heatmap'
                    and abs(epoch(a.last_update) - epoch(b.last_update)) <= 300)"""
        ).fetchone()
        assert dupes == 0


def test_a_rebuild_of_a_fresh_lake_lands_the_backfilled_states_again(collected) -> None:
    from flows.pipeline import rebuild_flow

    data_dir, _, _ = collected
    lake = data_dir / "lake"
    before = read_lake_rows(lake, "backfill_cohorts")
    rebuild_flow(lake_only=True, fresh_lake=True)
    after = read_lake_rows(lake, "backfill_cohorts")
    assert after.num_rows == before.num_rows > 0
    assert after.sort_by("snapshot_id").equals(before.sort_by("snapshot_id"))


def test_a_killed_backfill_resumes_without_refetching_a_stored_page(
    prefect_harness: None, sim: SimulatedApi, use_env, tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    env = {**os.environ, **_env(sim, data_dir, HT_REQUESTS_PER_MINUTE="1200", HT_WINDOWS="all")}
    sim.set_time(DAY2 + SPAN)
    sim.clear_request_log()
    args = [
        sys.executable, "-m", "flows.cli", "backfill", "--depth", "deep", "--coins", "BTC",
        "--start", f"{DAY2:%Y-%m-%d}", "--page-limit", "2", "--yes",
    ]  # fmt: skip
    proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    archive = HistoryArchive(data_dir / "archive", data_dir / "quarantine")
    deadline = time.monotonic() + 300  # a busy machine starts the command slowly
    root = archive.root / "position_metrics"
    while time.monotonic() < deadline and proc.poll() is None:
        if len(list(root.rglob("*.meta.json"))) >= 12:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    said = proc.stdout.read().decode(errors="replace") if proc.stdout else ""
    # Stored = covered by its series' checkpoint. A page written by the killed process
    # but not yet checkpointed (its series' first: no checkpoint at all) is fetched again
    # by design, the same cursor giving the same page.
    stored = {}
    for meta in root.rglob("*.meta.json"):
        m = json.loads(meta.read_bytes())
        checkpoint = meta.parent / "checkpoint.json"
        cp = json.loads(checkpoint.read_bytes()) if checkpoint.exists() else {"pages": 0}
        if int(meta.name[:5]) <= cp["pages"]:
            stored[(meta.parent.name, m["cursor"])] = m["url"]
    assert len(stored) >= 12, said[-2000:]
    assert SIM_TOKEN not in said
    before = len(sim.request_log)
    use_env(data_dir, HT_WINDOWS="all")
    outcome = _backfill(
        Options(depth="deep", coins=("BTC",), top=None, windows=None, start=DAY2, page_limit=2)
    )
    assert outcome.paused is None
    assert outcome.problems == []
    resumed = [r for r in sim.request_log[before:] if "/position-metrics/" in r.path]
    asked = {(f"segment={r.path.rsplit('/', 1)[1]}", r.query.get("nextCursor")) for r in resumed}
    assert asked.isdisjoint(stored)
    assert outcome.landed.states >= 4


def test_quick_backfill_file_never_sees_the_token_and_runs_keep_their_budget(
    prefect_harness: None, sim: SimulatedApi, use_env, tmp_path: Path
) -> None:
    from flows.pipeline import snapshot_flow

    data_dir = tmp_path / "data"
    settings_env = {"HT_WINDOWS": "all"}
    use_env(data_dir, **settings_env)
    settings = get_settings()
    # A daily cap with room for the runs' share and 1 export more: the backfill pauses.
    plan_reserve = _backfill_reserve(settings)
    os.environ["HT_REQUESTS_PER_DAY"] = str(plan_reserve + 1)
    with pytest.raises(BackfillRefused):
        _backfill(Options(depth="quick", coins=COINS, top=None, windows=None, start=None))
    outcome = _backfill(
        Options(depth="quick", coins=COINS, top=None, windows=None, start=None), force=True
    )
    assert outcome.paused
    assert "resumes where it stopped" in outcome.paused
    files = sim.history.file_requests()
    assert files
    assert not any(f["token_seen"] for f in files)
    ledger = Ledger.open(get_settings())
    ledger.check(get_settings(), requests_per_run(get_settings(), with_segments=True))
    assert snapshot_flow().snapshot_id


def _backfill_reserve(settings) -> int:
    from flows.backfill.plan import plan_backfill

    plan = plan_backfill(
        settings, Ledger.open(settings), depth="quick", coins=COINS, now=datetime.now(UTC)
    )
    return plan.scheduled_rest_of_today
