"""`make demo` as a new user's first day: a quick backfill plus a few hours of live states.

The session's ``demo_backfilled_warehouse`` is built by the demo's own path
(``build_demo_warehouse(live_hours=6)``): HyperTracker's segment-metrics exports through the
production history client, archive and lake code, then the simulator's last six hours taken
live. These tests read what an analyst would: the marts in ``analytics.duckdb``.
"""

from __future__ import annotations

from datetime import timedelta
from itertools import pairwise
from pathlib import Path

import duckdb
import pytest

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def analytics(demo_backfilled_warehouse: Path) -> duckdb.DuckDBPyConnection:
    path = demo_backfilled_warehouse / "warehouse" / "analytics.duckdb"
    with duckdb.connect(str(path), read_only=True) as con:
        yield con


def test_history_is_backfilled_twice_a_day_then_live(analytics) -> None:
    states = analytics.execute(
        """select source, last_update from marts.fct_cohort_snapshots
        group by all order by last_update"""
    ).fetchall()
    backfilled = [t for s, t in states if s == "segment_metrics_export"]
    live = [t for s, t in states if s == "heatmap"]
    # The market began three days ago: its exports give the states in force at each 00:00
    # and 12:00 UTC since (4 to 6 of them), the latest one being a live state too.
    assert 4 <= len(backfilled) <= 6, backfilled
    assert len(live) >= 12, "six hours of 15-30 minute states, and the scheduled run's"
    assert max(backfilled) < min(live), "the backfill ends where live collection begins"
    for earlier, later in pairwise(backfilled):
        assert timedelta(hours=11) < later - earlier < timedelta(hours=13), backfilled
    assert {s for s, _ in states} == {"segment_metrics_export", "heatmap"}


def test_the_state_both_hold_is_the_live_one_and_they_agree(
    demo_backfilled_warehouse: Path, analytics
) -> None:
    lake = demo_backfilled_warehouse / "lake"
    with duckdb.connect() as con:
        matched = con.execute(
            f"""
            with backfilled as (
                select * from read_parquet('{lake}/backfill_cohorts/*/*.parquet')
            ),
            live as (select * from read_parquet('{lake}/heatmap_cohorts/*/*.parquet'))
            select
                count(*) as rows,
                count(*) filter (where b.count <> l.count or b.count_long <> l.count_long)
                    as count_differs,
                max(abs(b.total_value - l.total_value) / greatest(l.total_value, 1))
                    as worst_relative_usd
            from backfilled as b
            inner join live as l
                on abs(epoch(b.last_update) - epoch(l.last_update)) <= 300
                and b."window" = l."window"
                and b.coin = l.coin
                and b.segment_id = l.segment_id
            """
        ).fetchone()
        landed = con.execute(
            f"select count(distinct snapshot_id) from "
            f"read_parquet('{lake}/backfill_states/*/*.parquet')"
        ).fetchone()[0]
    rows, count_differs, worst = matched
    assert rows > 1000, "the export's latest state is the first live one"
    assert count_differs == 0
    assert worst < 1e-9
    in_marts = analytics.execute(
        """select count(distinct snapshot_id) from marts.fct_cohort_snapshots
        where source = 'segment_metrics_export'"""
    ).fetchone()[0]
    assert in_marts == landed - 1, "live wins where both hold a state"


def test_the_first_day_board_has_its_d_minus_1_from_the_backfill(analytics) -> None:
    """The day-over-day board is not grey on day one: every board coin's cohorts compare
    today's live close with yesterday's close. That close is the backfill's unless the
    demo's live hours reach back past midnight UTC (a demo started before ~06:35), when
    it is yesterday's last live state: either way, the source of D-1's last state."""
    rows = analytics.execute(
        """
        with board as (
            select distinct coin from marts.heatmap_board_latest where oi_rank <= 30
        ),
        today as (select max(snapshot_date) as d from marts.cohort_day_over_day),
        yesterday_close as (
            select source from marts.fct_cohort_snapshots
            where snapshot_date = (select d from today) - 1
            order by last_update desc
            limit 1
        )
        select
            count(*) as rows,
            count(*) filter (where d.has_previous_day) as with_previous,
            count(*) filter (
                where d.previous_close_source = (select source from yesterday_close)
            ) as previous_from_d_minus_1_close,
            count(*) filter (where d.close_source = 'heatmap') as close_live,
            (select count(*) from yesterday_close) as d_minus_1_states
        from marts.cohort_day_over_day as d
        inner join board using (coin)
        where d.snapshot_date = (select d from today)
            and d."window" = 'all'
            and d.is_reported
        """
    ).fetchone()
    total, with_previous, previous_from_close, close_live, d_minus_1_states = rows
    assert d_minus_1_states == 1, "the backfill reaches back days: D-1 has states"
    assert total > 30 * 8
    assert close_live == total
    # A cohort can be new today (no position yesterday): nearly all have a D-1.
    assert with_previous >= 0.95 * total
    assert previous_from_close == with_previous


def test_the_first_day_splits_flow_from_price_against_the_backfilled_close(analytics) -> None:
    """A backfilled close has no market of its own: its price is the hourly candle's close at
    its time, so the first day's changes split into flow and price effect all the same, for
    every coin the price history follows (the board's)."""
    total, priced, backfilled, by_candle, worst = analytics.execute(
        """
        with followed as (select distinct coin from marts.fct_price_candles_hourly)
        select
            count(*),
            count(*) filter (where f.has_prices),
            count(*) filter (where f.previous_close_source = 'segment_metrics_export'),
            count(*) filter (
                where f.previous_close_source = 'segment_metrics_export'
                    and f.previous_price_source = 'candle'
            ),
            max(abs(f.net_flow_usd + f.net_price_effect_usd - f.net_usd_change))
        from marts.cohort_flow_price_daily as f
        inner join followed using (coin)
        where f.snapshot_date = (select max(snapshot_date) from marts.cohort_flow_price_daily)
            and f."window" = 'all'
            and f.has_previous_day
        """
    ).fetchone()
    assert total > 30 * 8
    # A coin listed since yesterday's close had no price then: nearly all have both.
    assert priced >= 0.95 * total
    assert by_candle == backfilled
    assert worst < 0.01
