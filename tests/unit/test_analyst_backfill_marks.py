"""The report marks backfilled states: what the page's data says of each day's closes and of
each history point, read from the marts (an in-memory warehouse) and encoded by the payload."""

from __future__ import annotations

import datetime as dt

import duckdb
import pytest

from flows.analyst import charts, data, payload
from flows.analyst.data import DayCell, History, HistoryGrid
from flows.analyst.scale import LADDER_ORDER

EXPORT = "segment_metrics_export"
DAYS = [dt.date(2026, 11, 23), dt.date(2026, 11, 24)]


def held(
    day_sources: dict[tuple[dt.date, str], tuple[str | None, str | None]],
    *,
    sources: dict[tuple[str, str], list[str | None]] | None = None,
    snapshot_source: str | None = data.LIVE,
) -> payload.Held:
    """One coin, window all, two days: the first backfilled, the second the snapshot's."""
    cells = {(d, "all", "BTC", s): DayCell(0.5, 1e6, 10, 1.0, 0.0, None) for d in DAYS
             for s in LADDER_ORDER}  # fmt: skip
    grid = HistoryGrid(
        start=dt.datetime(2026, 11, 23),
        bucket_minutes=720,
        points=4,
        first_at=dt.datetime(2026, 11, 23, 11, 50),
        last_at=dt.datetime(2026, 11, 24, 15, 30),
        bias={("all", "BTC"): {s: [0.25, 0.5, None, 0.75] for s in LADDER_ORDER}},
        spread_pp={("all", "BTC"): [10.0, 20.0, None, -5.0]},
        closes={},
        sources=sources or {},
    )
    return payload.Held(
        windows=["all"],
        default_window="all",
        default_coin="BTC",
        coins=["BTC"],
        snapshot_id="20261124T153000000Z",
        as_of=dt.datetime(2026, 11, 24, 15, 30),
        is_latest=True,
        days=DAYS,
        snapshot_boards={},
        day_cells=cells,
        day_oi={},
        divergence={},
        history=grid,
        market=None,
        flow_price=None,
        notes={},
        day_sources=day_sources,
        snapshot_source=snapshot_source,
    )


def test_each_day_says_where_its_close_and_the_previous_close_came_from() -> None:
    document = payload.document(
        held({(DAYS[0], "all"): (EXPORT, None), (DAYS[1], "all"): (data.LIVE, EXPORT)})
    )
    first, second = document["boards"]["all"]
    assert (first["cs"], first["ps"]) == ("e", ".")  # a backfilled close, no day before it
    assert (second["cs"], second["ps"]) == ("h", "e")  # live, compared with a backfilled close
    assert "bs" not in first  # the board of a past day is its close
    assert document["backfill"]["e"] == "backfilled: 12-hourly export"
    assert set(document["backfill"]) == set(document["backfill_notes"]) == {"e", "p"}


def test_the_snapshots_own_board_takes_the_snapshots_source() -> None:
    day_sources = {(DAYS[1], "all"): (data.LIVE, data.LIVE)}
    live = held(day_sources)
    board = payload.document(
        payload.Held(**{**live.__dict__, "snapshot_boards": {"all": _snapshot_board()}})
    )["boards"]["all"][1]
    assert board["bs"] == "h"
    backfilled = held(day_sources, snapshot_source=EXPORT)
    board = payload.document(
        payload.Held(**{**backfilled.__dict__, "snapshot_boards": {"all": _snapshot_board()}})
    )["boards"]["all"][1]
    assert (board["bs"], board["cs"]) == ("e", "h")


def _snapshot_board() -> data.Board:
    cells = {("BTC", s): data.Cell("BTC", s, 0.5, 1e6, 5e5, 5e5, 10) for s in LADDER_ORDER}
    return data.Board("bias", "all", ["BTC"], {"BTC": 1e6}, cells)


def test_nothing_is_marked_where_the_warehouse_does_not_say() -> None:
    # An analytics file published before the marts had close_source: every day is live.
    old = payload.document(held({}))
    assert [(b["cs"], b["ps"]) for b in old["boards"]["all"]] == [("h", "h"), ("h", "h")]
    # A day the marts have no row for is unknown ("."), never live; an unknown source is "?".
    partial = payload.document(held({(DAYS[1], "all"): ("something_new", data.LIVE)}))
    assert [(b["cs"], b["ps"]) for b in partial["boards"]["all"]] == [(".", "."), ("?", "h")]


def test_backfilled_periods_run_through_points_without_a_state() -> None:
    e, p, h = EXPORT, "position_metrics", data.LIVE
    assert payload.bands([e, None, None, e, None, h, None, e]) == [[0, 3, "e"], [7, 7, "e"]]
    assert payload.bands([None, p, p, e, e]) == [[1, 2, "p"], [3, 4, "e"]]
    assert payload.bands([h, None, h, "something_new"]) == []  # unknown is never backfilled
    assert payload.bands([]) == []


def test_history_bands_per_window_and_coin_and_none_for_live_data() -> None:
    document = payload.document(
        held({}, sources={("all", "BTC"): [EXPORT, EXPORT, None, data.LIVE]})
    )
    assert document["history"]["bands"] == {"all": {"BTC": [[0, 1, "e"]]}}
    live = payload.document(
        held({}, sources={("all", "BTC"): [data.LIVE, None, data.LIVE, data.LIVE]})
    )
    assert live["history"]["bands"] == {"all": {}}
    assert payload.document(held({}))["history"]["bands"] == {"all": {}}


# --------------------------------------------------------------------------- from the marts


@pytest.fixture
def marts() -> duckdb.DuckDBPyConnection:
    """The marts' columns the loaders read, with two export states and two live snapshots."""
    con = duckdb.connect()
    con.execute("create schema marts")
    states = [
        ("E1", "2026-11-23 11:50:00", EXPORT),
        ("E2", "2026-11-23 23:50:00", EXPORT),
        ("L1", "2026-11-24 14:00:00", data.LIVE),
        ("L2", "2026-11-24 15:30:00", data.LIVE),
    ]
    con.execute(
        'create table marts.fct_cohort_snapshots (snapshot_id varchar, "window" varchar, '
        "coin varchar, segment_id smallint, last_update timestamp, bias double, "
        "long_usd double, total_usd double, source varchar)"
    )
    con.execute(
        'create table marts.fct_coin_snapshots (snapshot_id varchar, "window" varchar, '
        "coin varchar, last_update timestamp, total_usd double, source varchar)"
    )
    for sid, at, source in states:
        for seg in LADDER_ORDER:
            con.execute(
                "insert into marts.fct_cohort_snapshots values (?, 'all', 'BTC', ?, ?, 0.5, "
                "1, 2, ?)",
                [sid, seg, at, source],
            )
        con.execute(
            "insert into marts.fct_coin_snapshots values (?, 'all', 'BTC', ?, 32, ?)",
            [sid, at, source],
        )
    con.execute(
        'create table marts.smart_retail_divergence_daily (snapshot_date date, "window" varchar, '
        "coin varchar, smart_minus_retail_pp double)"
    )
    con.execute(
        'create table marts.coin_bias_daily (snapshot_date date, "window" varchar, '
        "coin varchar, close_at timestamp)"
    )
    con.execute(
        'create table marts.coin_day_over_day (snapshot_date date, "window" varchar, '
        "coin varchar, close_source varchar, previous_close_source varchar)"
    )
    con.execute(
        "insert into marts.coin_day_over_day values "
        f"('2026-11-23', 'all', 'BTC', '{EXPORT}', null), "
        f"('2026-11-23', 'all', 'ETH', '{EXPORT}', null), "
        f"('2026-11-24', 'all', 'BTC', 'heatmap', '{EXPORT}')"
    )
    return con


def test_the_history_grid_reads_each_points_source(marts: duckdb.DuckDBPyConnection) -> None:
    grid = data.load_history_grid(
        marts, ["BTC"], ["all"], until=dt.datetime(2026, 11, 24, 15, 30), days=2,
        max_points=200, market=False,
    )  # fmt: skip
    sources = grid.sources[("all", "BTC")]
    assert len(sources) == grid.points
    held_at = {i: s for i, s in enumerate(sources) if s is not None}
    assert list(held_at.values()) == [EXPORT, EXPORT, data.LIVE, data.LIVE]
    # The export's states are 12 hours apart: the points between them hold no state.
    first, second = list(held_at)[:2]
    assert (second - first) * grid.bucket_minutes == 12 * 60
    history = data.load_history(
        marts, "BTC", "all", until=dt.datetime(2026, 11, 24, 15, 30), days=2
    )
    assert history.sources == [EXPORT, EXPORT, data.LIVE, data.LIVE]


def test_day_sources_come_from_the_daily_mart(marts: duckdb.DuckDBPyConnection) -> None:
    got = data.load_day_sources(marts, DAYS, ["all"])
    assert got == {(DAYS[0], "all"): (EXPORT, None), (DAYS[1], "all"): (data.LIVE, EXPORT)}
    assert data.snapshot_source(marts, "E2") == EXPORT
    marts.execute("alter table marts.coin_day_over_day drop column previous_close_source")
    assert data.load_day_sources(marts, DAYS, ["all"]) == {}  # an older warehouse: unknown


def test_the_price_line_reads_candles_where_no_market_snapshot_is(
    marts: duckdb.DuckDBPyConnection,
) -> None:
    """A backfilled state has no market snapshot: its price is the hourly candle's close."""
    marts.execute(
        "create table marts.fct_market_snapshots (snapshot_at timestamp, coin varchar, "
        "mark_price double, has_market boolean)"
    )
    marts.execute(
        "insert into marts.fct_market_snapshots values "
        "('2026-11-24 14:00:00', 'BTC', null, false), ('2026-11-24 15:30:00', 'BTC', 100, true)"
    )
    marts.execute(
        "create table marts.fct_price_candles_hourly (coin varchar, close_time timestamp, "
        "close_price double, is_closed boolean)"
    )
    marts.execute(
        "insert into marts.fct_price_candles_hourly values "
        "('BTC', '2026-11-23 11:59:59.999', 90, true), "
        "('BTC', '2026-11-23 23:59:59.999', 91, true), "
        "('BTC', '2026-11-24 13:59:59.999', 95, true), "
        "('BTC', '2026-11-24 15:29:00', 998, false), "  # still open: never drawn
        "('BTC', '2026-11-24 16:59:59.999', 999, true)"  # after the report's snapshot
    )
    grid = data.load_history_grid(
        marts, ["BTC"], ["all"], until=dt.datetime(2026, 11, 24, 15, 30), days=2,
        max_points=200, market=True,
    )  # fmt: skip
    assert grid.bucket_minutes == 30
    assert grid.start == dt.datetime(2026, 11, 23, 11, 30)
    price = grid.price["BTC"]
    assert len(price) == grid.points == 57
    # The export's states (points 0 and 24): the candle that closed in the hour before.
    assert price[0] == 90
    assert price[1] == 90  # 12:00-12:30: that candle is still within the hour
    assert price[2] is None  # 12:30-13:00: none within the hour, never carried further
    assert price[24] == 91
    assert price[53] == 95  # a live snapshot without a market: the candle
    assert price[56] == 100  # the market snapshot's mark, over any candle
    assert 998 not in price
    assert 999 not in price
    held = {i for i, v in enumerate(price) if v is not None}
    assert held == {0, 1, 24, 25, 52, 53, 56}


def test_history_png_shades_the_backfilled_span() -> None:
    times = [dt.datetime(2026, 11, 23, 11, 50), dt.datetime(2026, 11, 23, 23, 50),
             dt.datetime(2026, 11, 24, 14, 0), dt.datetime(2026, 11, 24, 15, 30)]  # fmt: skip
    history = History(
        "BTC",
        "all",
        times,
        {s: [0.25, 0.5, 0.5, 0.75] for s in LADDER_ORDER},
        [1.0, 2.0, 3.0, 4.0],
        sources=[EXPORT, EXPORT, data.LIVE, data.LIVE],
    )
    assert charts.backfilled_spans(history) == [(times[0], times[1], EXPORT)]
    live = History("BTC", "all", times, history.bias, history.spread_pp, sources=[data.LIVE] * 4)
    assert charts.backfilled_spans(live) == []
    assert charts.history_png(history, "t")[:8] == b"\x89PNG\r\n\x1a\n"
