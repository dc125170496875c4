"""History rows grouped into states, and those states equal to the simulator's heatmaps."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from flows.backfill.states import group_states, heatmap_rows, match_live
from flows.cohorts import SEGMENT_IDS, SIZE_LADDER
from flows.hypertracker.client import HyperTrackerClient
from flows.hypertracker.history import HistoryClient
from flows.hypertracker.history_payload import (
    MetricRow,
    parse_position_metrics,
    parse_segment_export,
)
from flows.settings import Settings
from simulator import SimulatedApi

TOKEN = "states-token-42"
START = datetime(2026, 11, 1, tzinfo=UTC)
NOW = START + timedelta(days=1, hours=3)
WINDOWS = ("24h", "7d", "30d", "all")
T0 = datetime(2026, 11, 5, 12, 0, tzinfo=UTC)


def row(at: datetime, coin: str = "BTC", seg: int = 1, window: str = "all", **kw) -> MetricRow:
    values = {"count": 3, "count_long": 2, "total_value": 300.0, "total_long_value": 200.0}
    values.update(kw)
    return MetricRow(created_at=at, coin=coin, segment_id=seg, window=window, **values)


# --- grouping, pure ----------------------------------------------------------------------------


def test_rows_of_one_refresh_form_one_state_stamped_with_the_latest() -> None:
    rows = [row(T0 - timedelta(seconds=s), seg=i + 1) for i, s in enumerate((19, 5, 0, 12))]
    rows += [row(T0 + timedelta(minutes=17, seconds=-3), seg=1)]
    grouping = group_states(rows)
    assert [len(s.rows) for s in grouping.states] == [4, 1]
    first = grouping.states[0]
    assert first.last_update == T0
    assert first.spread == timedelta(seconds=19)
    assert first.snapshot_id == "20261105T120000000Z"
    assert grouping.unfit == []


def test_a_cluster_wider_than_a_refresh_is_reported_not_guessed() -> None:
    rows = [row(T0 + timedelta(minutes=4 * i), seg=i + 1) for i in range(3)]  # 8 min, chained
    grouping = group_states(rows)
    assert grouping.states == []
    assert len(grouping.unfit) == 3
    assert "cannot tell the states apart" in grouping.unfit[0].reason


def test_duplicates_kept_once_when_equal_reported_when_not() -> None:
    same = [row(T0), row(T0 - timedelta(seconds=2))]
    clash = [row(T0, seg=2), row(T0, seg=2, count=4)]
    grouping = group_states(same + clash)
    (state,) = grouping.states
    assert [(r.segment_id, r.count) for r in state.rows] == [(1, 3)]
    assert {u.row.segment_id for u in grouping.unfit} == {2}
    assert "2 different rows for BTC cohort 2 window all" in grouping.unfit[0].reason


def test_export_and_position_metrics_of_one_state_merge() -> None:
    export = MetricRow(T0, "BTC", 1, "all", 3, 2, 300.0, 200.0, bias=0.667, source="x")
    pm = row(T0 - timedelta(seconds=8), total_size=3.0, total_long_size=2.0)
    (state,) = group_states([export, pm]).states
    (kept,) = state.rows
    assert kept.total_size == 3.0  # position-metrics preferred: it carries more


def test_match_live_by_nearest_time_within_the_gap() -> None:
    states = group_states([row(T0), row(T0 + timedelta(hours=1))]).states
    live = [T0 + timedelta(seconds=15), T0 + timedelta(hours=2)]
    assert match_live(states, live) == {
        states[0].snapshot_id: live[0],
        states[1].snapshot_id: None,
    }


def test_heatmap_rows_follow_the_vendor_mapping_and_flag_derived_totals() -> None:
    rows = [
        row(
            T0, seg=SIZE_LADDER[0], count=3, count_long=2, total_value=300.0, total_long_value=200.0
        ),
        row(T0, seg=SIZE_LADDER[1], count=1, count_long=0, total_value=50.0, total_long_value=0.0),
        row(T0, seg=13, count=4, count_long=2, total_value=350.0, total_long_value=200.0),
        row(T0, seg=5, count=0, count_long=0, total_value=0.0, total_long_value=0.0),
    ]
    (state,) = group_states(rows).states
    out = heatmap_rows(state)
    assert [c["segment_id"] for c in out.cohorts] == sorted({SIZE_LADDER[0], SIZE_LADDER[1], 13})
    first = next(c for c in out.cohorts if c["segment_id"] == SIZE_LADDER[0])
    assert first["total_short_value"] == 100.0
    assert first["count_short"] == 1
    assert first["bias"] == 0.667
    assert first["last_update"].tzinfo is None
    (coin,) = out.coins
    assert coin["totals_derived"] is True
    assert coin["segment_count"] == 3
    assert (coin["count"], coin["total_value"], coin["total_long_value"]) == (4, 350.0, 200.0)


# --- against the simulator ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def api() -> Iterator[SimulatedApi]:
    with SimulatedApi(seed=7, token=TOKEN, start=START, now=NOW, history_days=1) as server:
        yield server


@pytest.fixture(scope="module")
def history(api: SimulatedApi) -> Iterator[HistoryClient]:
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        api_token=TOKEN,
        base_url=api.base_url,
        requests_per_minute=100_000,
    )
    with HyperTrackerClient(settings) as client, HistoryClient(client) as hc:
        yield hc


def _pm_rows(history: HistoryClient, coin: str, start: datetime, end: datetime) -> list[MetricRow]:
    rows: list[MetricRow] = []
    for window in WINDOWS:
        for seg in sorted(SEGMENT_IDS):
            for page in history.position_metrics_pages(coin, seg, window, start, end):
                rows += parse_position_metrics(
                    page.fetched, coin=coin, segment_id=seg, window=window
                ).rows
    return rows


def _assert_equals_heatmap(api: SimulatedApi, rows: list[MetricRow], coin: str) -> int:
    grouping = group_states(rows)
    assert grouping.unfit == []
    market = api.market
    for state in grouping.states:
        k = market.state_index_at(state.last_update + timedelta(minutes=1))
        assert abs(market.state_time(k) - state.last_update) < timedelta(seconds=21)
        out = heatmap_rows(state)
        for window in WINDOWS:
            live = next((c for c in market.heatmap(k, window) if c["coin"] == coin), None)
            mine = [c for c in out.cohorts if c["window"] == window]
            if live is None:
                assert mine == []
                continue
            assert [c["segment_id"] for c in mine] == [s["segmentId"] for s in live["segments"]]
            for got, seg in zip(mine, live["segments"], strict=True):
                assert got["count"] == seg["count"]
                assert got["count_long"] == seg["countLong"]
                assert got["count_short"] == seg["countShort"]
                assert got["total_value"] == seg["totalValue"]
                assert got["total_long_value"] == seg["totalLongValue"]
                assert got["total_short_value"] == pytest.approx(seg["totalShortValue"], rel=1e-9)
                assert got["bias"] == seg["bias"]
            (total,) = [c for c in out.coins if c["window"] == window]
            size = [s for s in live["segments"] if s["segmentId"] in SIZE_LADDER]
            assert total["count"] == sum(s["count"] for s in size) <= live["count"]
            assert total["total_value"] == pytest.approx(sum(s["totalValue"] for s in size))
            # A few unassigned positions short of the heatmap's total (none in a small window).
            assert total["total_value"] <= live["totalValue"] * (1 + 1e-12)
            assert total["segment_count"] == len(live["segments"])
    return len(grouping.states)


@pytest.mark.parametrize("coin", ["BTC", "xyz:GOLD", "LDO"])
def test_position_metrics_rebuild_the_heatmap_of_each_state(
    api: SimulatedApi, history: HistoryClient, coin: str
) -> None:
    start = START + timedelta(hours=20)
    states = _assert_equals_heatmap(
        api, _pm_rows(history, coin, start, start + timedelta(hours=1)), coin
    )
    assert 2 <= states <= 4  # an hour of 15-30 minute states


def test_the_export_rebuilds_the_heatmap_of_its_states(
    api: SimulatedApi, history: HistoryClient
) -> None:
    rows: list[MetricRow] = []
    for window in WINDOWS:
        fetched = history.segment_metrics_export("ETH", window)
        rows += parse_segment_export(fetched, coin="ETH", window=window)
    # 00:00 and 12:00 of the market's first day, 00:00 of the second, and the latest.
    assert _assert_equals_heatmap(api, rows, "ETH") == 4
