"""The second source over real HTTP: each snapshot's market (metaAndAssetCtxs per dex) and
the board's price history (candles, funding), against the simulated info API."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pyarrow.compute as pc
import pytest

from flows import pipeline, price_history, snapshot
from flows.hyperliquid.client import HyperliquidClient
from flows.lake import from_archive
from flows.lake.from_archive import archive_for
from flows.lake.parquet import read_lake_rows
from flows.lake.tables import MARKET_TABLES, PRICE_HISTORY_TABLES
from flows.pipeline import snapshot_flow
from flows.settings import get_settings
from simulator.faults import Fault

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("prefect_harness")]
DEXES = ["", "flx", "km", "vntl", "xyz"]


def lake(table: str) -> list[dict]:
    return read_lake_rows(get_settings().lake_dir, table).to_pylist()


def published(sql: str) -> list[tuple]:
    """Rows of ``sql`` in the published analytics.duckdb."""
    con = duckdb.connect(str(get_settings().analytics_db_path), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def update_prices() -> price_history.PriceHistoryOutcome:
    settings = get_settings()
    with HyperliquidClient(settings) as info:
        return price_history.update(info, archive_for(settings), settings)


def test_a_snapshot_lands_with_the_market_of_every_dex_it_needs(env: Path, sim) -> None:
    outcome = snapshot_flow()
    assert outcome.market.statuses == dict.fromkeys(DEXES, "ok")
    fetches = lake("market_fetches")
    assert [f["dex"] for f in fetches] == DEXES
    last_update = sim.last_update.replace(tzinfo=None)
    now = sim.now.replace(tzinfo=None)
    for f in fetches:
        assert f["status"] == "ok"
        assert f["snapshot_id"] == outcome.snapshot_id
        assert f["url"] == sim.info_url + "/info"
        # Fetched after the state, by the server's clock (whole seconds, end of the second).
        assert last_update <= now <= f["fetched_at"] < now + timedelta(seconds=1)
        assert f["coin_count"] > 0
        assert f["error"] is None
    contexts = lake("market_contexts")
    assert len(contexts) == sum(f["coin_count"] for f in fetches)
    by_coin = {c["coin"]: c for c in contexts}
    assert by_coin["xyz:GOLD"]["dex"] == "xyz"
    # Notional is size x mark: the heatmap's long value is open interest x mark (the mark
    # a few minutes after the state's, so within a few percent).
    coins = {r["coin"]: r for r in lake("heatmap_coins") if r["window"] == "all"}
    for coin in ("BTC", "ETH", "xyz:GOLD"):
        ctx = by_coin[coin]
        assert coins[coin]["total_long_value"] == pytest.approx(
            ctx["open_interest"] * ctx["mark_px"], rel=0.03
        )
    # The archive holds every body verbatim, with a manifest of every dex asked.
    (folder,) = (env / "archive" / "market").glob("date=*/snapshot_id=*")
    manifest = json.loads((folder / "manifest.json").read_text())
    assert [f["dex"] for f in manifest["fetches"]] == DEXES
    assert sorted(p.name for p in folder.glob("*.zst")) == [
        f"dex-{d or 'main'}.json.zst" for d in sorted(DEXES, key=lambda d: d or "main")
    ]


@pytest.mark.parametrize(
    ("fault", "status"),
    [
        (Fault("server_error", path="info", dex="xyz", status=503, times=100), "failed"),
        (Fault("malformed_json", path="info", dex="xyz"), "quarantined"),
        (Fault("bad_decimal", path="info", dex="xyz"), "quarantined"),
        (Fault("rate_limit", path="info", dex="xyz", retry_after=3600, times=100), "failed"),
        (Fault("slow", path="info", dex="xyz", delay_s=3.0, times=100), "failed"),
    ],
    ids=lambda f: getattr(f, "kind", None),
)
def test_a_market_that_fails_is_a_recorded_gap_and_the_heatmap_lands(
    env: Path, sim, fault: Fault, status: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HT_MAX_ATTEMPTS", "2")
    sim.inject(fault)
    outcome = snapshot_flow()
    assert outcome.stored
    assert outcome.market.statuses == {**dict.fromkeys(DEXES, "ok"), "xyz": status}
    (gap,) = [f for f in lake("market_fetches") if f["dex"] == "xyz"]
    assert gap["status"] == status
    assert gap["error"]
    assert "\n" not in gap["error"]
    assert gap["coin_count"] is None
    # No price for the dex that failed, never a made-up one; the others are there.
    dexes = {c["dex"] for c in lake("market_contexts")}
    assert dexes == set(DEXES) - {"xyz"}
    assert lake("heatmap_coins")
    if status == "quarantined":
        (folder,) = (env / "quarantine").glob("*-dex-xyz")
        assert (folder / "dex-xyz.json.zst").exists()
        assert json.loads((folder / "note.json").read_text())["dex"] == "xyz"


def test_a_snapshot_whose_market_was_never_captured_lands_as_not_captured(
    env: Path, sim, monkeypatch: pytest.MonkeyPatch
) -> None:
    def stopped(*args: object, **kwargs: object) -> None:
        raise OSError(28, "No space left on device")  # as a run stopped after the archive

    with monkeypatch.context() as patch:
        patch.setattr(snapshot, "with_market", stopped)
        with pytest.raises(OSError, match="No space left"):
            snapshot_flow()
    assert from_archive.land_missing(get_settings())  # the next run's catch-up
    fetches = lake("market_fetches")
    assert {f["status"] for f in fetches} == {"not_captured"}
    assert [f["dex"] for f in fetches] == DEXES
    assert lake("market_contexts") == []
    # A later run never fills the gap with a later price.
    sim.advance_to_next_state()
    snapshot_flow()
    assert {f["snapshot_id"] for f in lake("market_fetches") if f["status"] == "not_captured"} == {
        fetches[0]["snapshot_id"]
    }


def test_price_history_is_fetched_incrementally(env: Path, sim) -> None:
    snapshot_flow()
    sim.clear_request_log()
    first = update_prices()
    assert first.error is None
    assert first.coins == get_settings().top_coins == 30
    asked = sim.info_requests()
    assert len(asked) == first.requests == 60  # one candles and one funding page a coin
    assert all(not r["token_seen"] for r in asked)
    candles = lake("candles")
    assert {c["coin"] for c in candles} == {r["query"]["coin"] for r in asked}
    horizon = sim.last_update.replace(tzinfo=None)
    # Only closed candles: each closed before its answer, none reaching past the state.
    assert all(c["close_time"] < c["fetched_at"] for c in candles)
    assert max(c["open_time"] for c in candles) < horizon
    newest = {c["coin"]: c["open_time"] for c in candles}
    funding = {r["coin"]: r["time"] for r in lake("funding_rates")}

    # Two hours later: only what is new is asked for.
    two_hours_on = sim.last_update + timedelta(hours=2)
    while sim.last_update < two_hours_on:
        sim.advance_to_next_state()
    snapshot_flow()
    sim.clear_request_log()
    second = update_prices()
    assert second.error is None
    asked = sim.info_requests()
    by_coin = {(r["query"]["type"], r["query"]["coin"]): r["query"] for r in asked}
    for coin, open_time in newest.items():
        req = by_coin.get(("candleSnapshot", coin))
        if req is None:
            continue  # the coin left the board
        assert int(req["startTime"]) == ms(open_time + timedelta(hours=1))
        assert (
            int(funding_start := by_coin[("fundingHistory", coin)]["startTime"])
            == ms(funding[coin]) + 1
        ), funding_start
    rows = lake("candles")
    assert len(rows) == len({(r["coin"], r["open_time"]) for r in rows})  # nothing twice
    assert second.candles >= 30

    # No new state: nothing is asked.
    sim.clear_request_log()
    third = update_prices()
    assert third.requests == 0
    assert sim.info_requests() == []


def ms(naive: datetime) -> int:
    return int(naive.replace(tzinfo=UTC).timestamp() * 1000)


def test_the_weight_per_run_spreads_a_first_backfill(
    env: Path, sim, monkeypatch: pytest.MonkeyPatch
) -> None:
    snapshot_flow()
    monkeypatch.setenv("HT_PRICE_HISTORY_WEIGHT_PER_RUN", "300")
    first = update_prices()
    assert first.weight <= 300
    assert first.behind
    held = {c["coin"] for c in lake("candles")}
    second = update_prices()
    assert second.weight <= 300
    assert {c["coin"] for c in lake("candles")} > held


def test_rebuild_reproduces_the_market_and_price_tables(env: Path, sim) -> None:
    sim.inject(Fault("malformed_json", path="info", dex="km"))
    for _ in range(3):
        snapshot_flow()
        update_prices()
        for _ in range(3):
            sim.advance_to_next_state()
    settings = get_settings()
    tables = (*MARKET_TABLES, *PRICE_HISTORY_TABLES)
    original = {t: read_lake_rows(settings.lake_dir, t) for t in tables}
    assert "quarantined" in original["market_fetches"].column("status").to_pylist()
    shutil.rmtree(settings.lake_dir)
    assert from_archive.rebuild_lake(settings) == 3
    for table, rows in original.items():
        rebuilt = read_lake_rows(settings.lake_dir, table)
        assert rows.num_rows > 0
        assert rebuilt.equals(rows), table
    # One file per day for the price history, however many fetches landed in it.
    days = list((settings.lake_dir / "candles").glob("date=*"))
    assert all(len(list(d.iterdir())) == 1 for d in days)


def test_an_elt_run_publishes_when_the_info_api_is_down(
    env: Path, sim, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HT_MAX_ATTEMPTS", "2")
    sim.inject(Fault("server_error", path="info", status=502, p=1.0))
    summary = pipeline.elt_flow()
    assert summary.outcome == "published"
    assert set(summary.snapshot.market.statuses.values()) == {"failed"}
    assert summary.prices.error
    assert "502" in summary.prices.error
    assert "price history failed" in summary.to_markdown()
    assert lake("market_contexts") == []
    statuses = pc.unique(read_lake_rows(get_settings().lake_dir, "market_fetches")["status"])
    assert statuses.to_pylist() == ["failed"]
    # Back up: the next state has its market and the board its history.
    sim.clear_faults()
    sim.advance_to_next_state()
    summary = pipeline.elt_flow()
    assert summary.outcome == "published"
    assert summary.prices.error is None
    assert summary.prices.candles > 0
    assert all(not r["token_seen"] for r in sim.info_requests())


def test_an_elt_run_publishes_before_the_price_history_and_the_next_run_builds_it(
    env: Path, sim, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The price step finds the new state already published; its failure fails nothing.
    seen: list[list[tuple]] = []

    def too_slow(*args: object) -> price_history.PriceHistoryOutcome:
        seen.append(published("SELECT snapshot_id FROM lake.loads"))
        raise TimeoutError("candles took too long")

    with monkeypatch.context() as patch:
        patch.setattr(price_history, "update", too_slow)
        first = pipeline.elt_flow()
    assert first.outcome == "published"
    assert seen == [[(first.snapshot.snapshot_id,)]]
    assert list(first.timings)[-1] == "price history"
    assert "candles took too long" in first.prices.error
    assert "price history failed" in first.to_markdown()

    # The same state: nothing to build or publish, but the price history is fetched (up to
    # the newest snapshot); the published marts do not hold it yet.
    second = pipeline.elt_flow()
    assert second.outcome == "no new data"
    assert second.prices.error is None
    assert second.prices.candles > 0
    assert published("SELECT count(*) FROM marts.fct_price_candles_hourly") == [(0,)]

    # The next state's run builds and publishes what the run before it landed.
    sim.advance_to_next_state()
    third = pipeline.elt_flow()
    assert third.outcome == "published"
    ((candles,),) = published("SELECT count(*) FROM marts.fct_price_candles_hourly")
    assert candles >= second.prices.candles
    # The first state's returns read those candles: its entry (the first hourly close at or
    # after it) is priced exactly where the published history reaches that close.
    ((coins, priced, reached),) = published(
        f"""
        WITH known AS (
            SELECT coin, max(open_time) + INTERVAL 1 HOUR AS known_through
            FROM marts.fct_price_candles_hourly WHERE is_closed GROUP BY coin
        )
        SELECT count(*), count(r.entry_price), count(*) FILTER (k.known_through >= r.entry_at)
        FROM marts.fct_forward_returns AS r LEFT JOIN known AS k USING (coin)
        WHERE r.snapshot_id = '{first.snapshot.snapshot_id}'
        """
    )
    assert coins > 0
    assert priced == reached


def test_the_warehouse_flow_publishes_with_the_price_history_at_once(env: Path, sim) -> None:
    snapshot_flow()
    result = pipeline.warehouse_flow()
    assert result["prices"].error is None
    assert result["prices"].candles > 0
    assert published("SELECT count(*) FROM marts.fct_price_candles_hourly") == [
        (result["prices"].candles,)
    ]
