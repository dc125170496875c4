"""What the report shows, read from the published ``analytics.duckdb`` (read-only, schema marts).

Never the build database: analysts' tools and the report read the same published file, and a
report never blocks (or is blocked by) a pipeline run. Every query names its mart and columns
so that a renamed column fails here with DuckDB's own message.
"""

from __future__ import annotations

import bisect
import contextlib
import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from flows.analyst.scale import LADDER_ORDER, RETAIL_SEGMENTS, SMART_SEGMENTS, top_coins
from flows.settings import WINDOWS

OI_WINDOW = "all"  # open interest = every open position: the board's coins are ranked on it
# The marts' `source`: a live snapshot, or a state `ht backfill` reconstructed from HyperTracker's
# history endpoints (every state, or the export's 12-hourly ones).
LIVE = "heatmap"
BACKFILLED = ("position_metrics", "segment_metrics_export")


class ReportDataError(RuntimeError):
    """The analytics database is missing or does not hold what the report asks for."""


@contextlib.contextmanager
def connect(path: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    """A read-only connection to the published analytics database."""
    if not path.exists():
        raise ReportDataError(
            f"{path} does not exist yet: run `make demo` (simulated data) or `make run` "
            "(your token) first, then make the report again"
        )
    con = duckdb.connect(str(path), read_only=True)
    try:
        yield con
    finally:
        con.close()


# --------------------------------------------------------------------------- shapes


@dataclass(frozen=True)
class Cell:
    """One coin x cohort cell of a board."""

    coin: str
    segment_id: int
    bias: float | None  # long share of USD value; None = the cohort holds nothing here
    total_usd: float
    long_usd: float
    short_usd: float
    positions: int
    # day-over-day boards only
    change_pp: float | None = None
    usd_change: float | None = None
    status: str | None = None  # "new", "closed", "gap" (no previous day) or None


@dataclass
class Board:
    """A coin x cohort board for one window, at one snapshot or one day's close."""

    kind: str  # "bias" or "change"
    window: str
    coins: list[str]  # top N by open interest, biggest first
    open_interest: dict[str, float]
    cells: dict[tuple[str, int], Cell]
    snapshot_id: str | None = None
    as_of: dt.datetime | None = None
    day: dt.date | None = None
    previous_day: dt.date | None = None

    def cell(self, coin: str, segment_id: int) -> Cell | None:
        return self.cells.get((coin, segment_id))


@dataclass
class History:
    """Bias per cohort over time for one coin and window, and the smart-vs-retail spread."""

    coin: str
    window: str
    times: list[dt.datetime]
    bias: dict[int, list[float | None]]  # segment_id -> one value per time
    spread_pp: list[float | None]  # (smart - retail) * 100 per time
    daily_spread: list[tuple[dt.datetime, float | None]] = field(default_factory=list)  # mart
    sources: list[str] = field(default_factory=list)  # the state's source per time (heatmap...)


@dataclass
class Divergence:
    """One row of the smart-vs-retail table (a day's close, one window)."""

    coin: str
    smart_bias: float | None
    retail_bias: float | None
    spread_pp: float | None
    open_interest: float


# --------------------------------------------------------------------------- look-ups


def windows_present(con: duckdb.DuckDBPyConnection) -> list[str]:
    """The windows the newest snapshot has, in the usual order (24h, 7d, 30d, all)."""
    rows = con.execute('select distinct "window" from marts.heatmap_board_latest').fetchall()
    have = {r[0] for r in rows}
    return [w for w in WINDOWS if w in have]


def latest_snapshot(con: duckdb.DuckDBPyConnection) -> tuple[str, dt.datetime]:
    """The newest published snapshot: its id and ``last_update`` (UTC)."""
    row = con.execute(
        "select snapshot_id, max(last_update) from marts.heatmap_board_latest "
        "group by snapshot_id order by snapshot_id desc limit 1"
    ).fetchone()
    if row is None:
        raise ReportDataError("the analytics database holds no snapshot yet")
    return row[0], row[1]


def snapshot_time(con: duckdb.DuckDBPyConnection, snapshot_id: str) -> dt.datetime:
    """``last_update`` of a snapshot, or a clear error when it is not published."""
    row = con.execute(
        "select max(last_update) from marts.fct_coin_snapshots where snapshot_id = ?",
        [snapshot_id],
    ).fetchone()
    if row is None or row[0] is None:
        raise ReportDataError(
            f"snapshot {snapshot_id} is not in the analytics database; "
            '`ht query "select distinct snapshot_id from marts.fct_coin_snapshots"` lists them'
        )
    return row[0]


def day_close(con: duckdb.DuckDBPyConnection, day: dt.date) -> str:
    """The closing snapshot of a UTC day (its last snapshot)."""
    row = con.execute(
        "select max(close_snapshot_id) from marts.coin_bias_daily where snapshot_date = ?", [day]
    ).fetchone()
    if row is None or row[0] is None:
        raise ReportDataError(f"no snapshot on {day:%Y-%m-%d} in the analytics database")
    return row[0]


def resolve_coin(con: duckdb.DuckDBPyConnection, coin: str, snapshot_id: str) -> str:
    """``coin`` if the snapshot lists it; else a clear error naming close matches."""
    found = con.execute(
        "select count(*) from marts.fct_coin_snapshots where snapshot_id = ? and coin = ?",
        [snapshot_id, coin],
    ).fetchone()
    if found and found[0]:
        return coin
    near = [
        r[0]
        for r in con.execute(
            "select coin from marts.dim_coins where lower(coin) like ? order by coin limit 5",
            [f"%{coin.lower()}%"],
        ).fetchall()
    ]
    hint = f" (did you mean {', '.join(near)}? names are case-sensitive)" if near else ""
    raise ReportDataError(f"coin {coin!r} is not in snapshot {snapshot_id}{hint}")


# --------------------------------------------------------------------------- boards


def _open_interest(
    con: duckdb.DuckDBPyConnection, snapshot_id: str, window: str
) -> dict[str, float]:
    rows = con.execute(
        "select coin, total_usd from marts.fct_coin_snapshots "
        'where snapshot_id = ? and "window" = ?',
        [snapshot_id, window],
    ).fetchall()
    return {coin: float(usd) for coin, usd in rows}


def board_coins(
    con: duckdb.DuckDBPyConnection, snapshot_id: str, windows: list[str], top_n: int
) -> tuple[list[str], dict[str, float]]:
    """The board's rows: the top N coins by open interest (window ``all``) at a snapshot.

    One set of rows for every window, so that switching window compares like with like;
    when ``all`` was not fetched, the widest window fetched stands in for it.
    """
    rank_window = OI_WINDOW if OI_WINDOW in windows else windows[-1]
    oi = _open_interest(con, snapshot_id, rank_window)
    return top_coins(oi, top_n), oi


def load_board(
    con: duckdb.DuckDBPyConnection,
    snapshot_id: str,
    window: str,
    coins: list[str],
    open_interest: dict[str, float],
) -> Board:
    """Bias and notional per coin and cohort at one snapshot, for ``coins``."""
    rows = con.execute(
        "select coin, segment_id, bias, total_usd, long_usd, short_usd, total_positions, "
        "last_update from marts.fct_cohort_snapshots "
        'where snapshot_id = ? and "window" = ? and coin in (select unnest(?))',
        [snapshot_id, window, coins],
    ).fetchall()
    cells: dict[tuple[str, int], Cell] = {}
    as_of = None
    for coin, seg, bias, total, long_, short, positions, last_update in rows:
        as_of = last_update
        # A cohort with no positions has total 0 and bias NULL: it stays None (a grey
        # cell), never a made-up neutral 0.5.
        cells[(coin, int(seg))] = Cell(
            coin=coin,
            segment_id=int(seg),
            bias=None if bias is None or not total else float(bias),
            total_usd=float(total or 0),
            long_usd=float(long_ or 0),
            short_usd=float(short or 0),
            positions=int(positions or 0),
        )
    return Board(
        kind="bias",
        window=window,
        coins=coins,
        open_interest=open_interest,
        cells=cells,
        snapshot_id=snapshot_id,
        as_of=as_of,
    )


def load_change_board(
    con: duckdb.DuckDBPyConnection, day: dt.date, window: str, top_n: int
) -> Board:
    """Day-over-day bias change (percentage points) per coin and cohort, at ``day``'s close.

    Rows: the top N coins by open interest at that close (window ``all``). A cohort with no
    bias on either day, a new listing, a delisting and a day after a gap get no colour.
    """
    oi_sql = (
        "select coin, total_usd from marts.coin_day_over_day "
        'where snapshot_date = ? and "window" = ?'
    )
    # Without window `all` (not fetched) the board's own window ranks the coins.
    oi_rows = con.execute(oi_sql, [day, OI_WINDOW]).fetchall()
    if not oi_rows:
        oi_rows = con.execute(oi_sql, [day, window]).fetchall()
    oi = {coin: float(usd or 0) for coin, usd in oi_rows}
    coins = top_coins(oi, top_n) if oi else []
    rows = con.execute(
        "select coin, segment_id, bias, total_usd, long_usd, short_usd, total_positions, "
        "bias_change_pp, total_usd_change, has_previous_day, is_new, is_closed, previous_date "
        "from marts.cohort_day_over_day "
        'where snapshot_date = ? and "window" = ? and coin in (select unnest(?))',
        [day, window, coins],
    ).fetchall()
    cells: dict[tuple[str, int], Cell] = {}
    previous_day = None
    for (
        coin,
        seg,
        bias,
        total,
        long_,
        short,
        positions,
        change_pp,
        usd_change,
        has_previous,
        is_new,
        is_closed,
        prev_date,
    ) in rows:
        previous_day = prev_date
        status = "gap" if not has_previous else "new" if is_new else "closed" if is_closed else None
        cells[(coin, int(seg))] = Cell(
            coin=coin,
            segment_id=int(seg),
            bias=None if bias is None or not total else float(bias),
            total_usd=float(total or 0),
            long_usd=float(long_ or 0),
            short_usd=float(short or 0),
            positions=int(positions or 0),
            change_pp=None if change_pp is None else float(change_pp),
            usd_change=None if usd_change is None else float(usd_change),
            status=status,
        )
    return Board(
        kind="change",
        window=window,
        coins=coins,
        open_interest=oi,
        cells=cells,
        day=day,
        previous_day=previous_day,
    )


# --------------------------------------------------------------------------- history


def load_history(
    con: duckdb.DuckDBPyConnection,
    coin: str,
    window: str,
    *,
    until: dt.datetime,
    days: float,
) -> History:
    """Every snapshot's bias per cohort for ``coin`` over the ``days`` before ``until``."""
    return load_histories(con, coin, [window], until=until, days=days)[window]


def load_histories(
    con: duckdb.DuckDBPyConnection,
    coin: str,
    windows: list[str],
    *,
    until: dt.datetime,
    days: float,
) -> dict[str, History]:
    """``load_history`` for several windows in one scan of the snapshot fact."""
    since = until - dt.timedelta(days=days)
    smart = ", ".join(str(s) for s in SMART_SEGMENTS)
    retail = ", ".join(str(s) for s in RETAIL_SEGMENTS)
    rows = con.execute(
        f"""
        select
            "window",
            last_update,
            list(bias order by segment_id) as biases,
            list(segment_id order by segment_id) as segments,
            sum(long_usd) filter (where segment_id in ({smart}))
                / nullif(sum(total_usd) filter (where segment_id in ({smart})), 0) as smart_bias,
            sum(long_usd) filter (where segment_id in ({retail}))
                / nullif(sum(total_usd) filter (where segment_id in ({retail})), 0) as retail_bias,
            any_value(source) as source
        from marts.fct_cohort_snapshots
        where
            coin = ? and "window" in (select unnest(?))
            and last_update > ? and last_update <= ?
        group by "window", last_update
        order by "window", last_update
        """,
        [coin, windows, since, until],
    ).fetchall()
    histories = {w: History(coin, w, [], {s: [] for s in LADDER_ORDER}, [], []) for w in windows}
    for window, last_update, biases, segments, smart_bias, retail_bias, source in rows:
        history = histories[window]
        history.times.append(last_update)
        history.sources.append(source)
        by_segment = dict(zip(segments, biases, strict=True))
        for s in LADDER_ORDER:
            history.bias[s].append(by_segment.get(s))
        history.spread_pp.append(
            None if smart_bias is None or retail_bias is None else (smart_bias - retail_bias) * 100
        )
    # The dbt mart's own value at each day's close, drawn over the line as a check by eye.
    closes = con.execute(
        'select d."window", c.close_at, d.smart_minus_retail_pp '
        "from marts.smart_retail_divergence_daily as d "
        "inner join marts.coin_bias_daily as c "
        '  on c.snapshot_date = d.snapshot_date and c."window" = d."window" and c.coin = d.coin '
        'where d.coin = ? and d."window" in (select unnest(?)) '
        "  and c.close_at > ? and c.close_at <= ? "
        "order by c.close_at",
        [coin, windows, since, until],
    ).fetchall()
    for window, close_at, pp in closes:
        histories[window].daily_spread.append((close_at, pp))
    return histories


# --------------------------------------------------------------------------- divergence


def load_divergence(
    con: duckdb.DuckDBPyConnection, day: dt.date, window: str, coins: list[str], limit: int = 10
) -> list[Divergence]:
    """Where smart money and retail disagree most at ``day``'s close, among ``coins``."""
    rows = con.execute(
        "select d.coin, d.smart_bias, d.retail_bias, d.smart_minus_retail_pp, c.total_usd "
        "from marts.smart_retail_divergence_daily as d "
        "left join marts.coin_bias_daily as c "
        '  on c.snapshot_date = d.snapshot_date and c.coin = d.coin and c."window" = ? '
        'where d.snapshot_date = ? and d."window" = ? and d.coin in (select unnest(?)) '
        "  and d.smart_minus_retail_pp is not null "
        "order by abs(d.smart_minus_retail_pp) desc, d.coin limit ?",
        [OI_WINDOW, day, window, coins, limit],
    ).fetchall()
    return [Divergence(c, s, r, pp, float(oi or 0)) for c, s, r, pp, oi in rows]


# --------------------------------------------------------------------------- the interactive page
#
# The page holds, for every window, the board at each day's close over the days it keeps (the
# day slider), every board coin's history (the coin picker) and, when the warehouse has them,
# market data and the flow/price split. The loaders below read each in one query over the
# coins of the board.

MARKET = "fct_market_snapshots"
FLOW_PRICE = "cohort_flow_price_daily"
CANDLES = "fct_price_candles_hourly"
CANDLE_COLUMNS = {"coin", "close_time", "close_price", "is_closed"}


def relation_columns(con: duckdb.DuckDBPyConnection, name: str) -> set[str]:
    """The columns of ``marts.<name>``; empty when the relation does not exist (yet)."""
    rows = con.execute(
        "select column_name from information_schema.columns "
        "where table_schema = 'marts' and table_name = ?",
        [name],
    ).fetchall()
    return {r[0] for r in rows}


def has_relation(con: duckdb.DuckDBPyConnection, name: str, columns: set[str]) -> bool:
    """True when ``marts.<name>`` exists with every one of ``columns``.

    Market data is added to the warehouse by a later change: the report draws its parts only
    when the relation is there with the columns it reads, and says so otherwise.
    """
    return columns <= relation_columns(con, name)


def has_rows(con: duckdb.DuckDBPyConnection, name: str, condition: str) -> bool:
    """True when ``marts.<name>`` holds a row where ``condition`` holds: a relation that is
    there but empty (market capture not yet running) counts as absent."""
    row = con.execute(f"select exists (select 1 from marts.{name} where {condition})").fetchone()
    return bool(row and row[0])


def held_days(con: duckdb.DuckDBPyConnection, until: dt.date, limit: int) -> list[dt.date]:
    """The last ``limit`` days with a close up to ``until``, oldest first."""
    rows = con.execute(
        "select distinct snapshot_date from marts.coin_bias_daily where snapshot_date <= ? "
        "order by snapshot_date desc limit ?",
        [until, limit],
    ).fetchall()
    return sorted(r[0] for r in rows)


@dataclass(frozen=True)
class DayCell:
    """One coin x cohort at a day's close, with its change since the previous close."""

    bias: float | None
    total_usd: float
    positions: int
    change_pp: float | None
    usd_change: float | None
    status: str | None  # "new", "closed", "gap" or None
    close_snapshot_id: str | None = None


def load_day_cells(
    con: duckdb.DuckDBPyConnection, days: list[dt.date], windows: list[str], coins: list[str]
) -> dict[tuple[dt.date, str, str, int], DayCell]:
    """(day, window, coin, segment) -> the cohort at the day's close and its day-over-day."""
    rows = con.execute(
        'select snapshot_date, "window", coin, segment_id, bias, total_usd, total_positions, '
        "bias_change_pp, total_usd_change, has_previous_day, is_new, is_closed, "
        "close_snapshot_id from marts.cohort_day_over_day "
        'where snapshot_date in (select unnest(?)) and "window" in (select unnest(?)) '
        "and coin in (select unnest(?))",
        [days, windows, coins],
    ).fetchall()
    out = {}
    for day, window, coin, seg, bias, total, positions, pp, usd, has_prev, new, closed, sid in rows:
        status = "gap" if not has_prev else "new" if new else "closed" if closed else None
        out[(day, window, coin, int(seg))] = DayCell(
            bias=None if bias is None or not total else float(bias),
            total_usd=float(total or 0),
            positions=int(positions or 0),
            change_pp=None if pp is None else float(pp),
            usd_change=None if usd is None else float(usd),
            status=status,
            close_snapshot_id=sid,
        )
    return out


DAY_SOURCE_COLUMNS = {"close_source", "previous_close_source"}


def load_day_sources(
    con: duckdb.DuckDBPyConnection, days: list[dt.date], windows: list[str]
) -> dict[tuple[dt.date, str], tuple[str | None, str | None]]:
    """(day, window) -> where the day's close and the previous day's came from (``source``).

    Empty when the warehouse predates the columns (published by an older build)."""
    if not has_relation(con, "coin_day_over_day", DAY_SOURCE_COLUMNS):
        return {}
    rows = con.execute(
        'select distinct snapshot_date, "window", close_source, previous_close_source '
        "from marts.coin_day_over_day "
        'where snapshot_date in (select unnest(?)) and "window" in (select unnest(?))',
        [days, windows],
    ).fetchall()
    return {(day, window): (close, previous) for day, window, close, previous in rows}


def snapshot_source(con: duckdb.DuckDBPyConnection, snapshot_id: str) -> str | None:
    """Where a snapshot came from: ``heatmap`` (live) or a backfill's source."""
    row = con.execute(
        "select any_value(source) from marts.fct_coin_snapshots where snapshot_id = ?",
        [snapshot_id],
    ).fetchone()
    return row[0] if row else None


def load_day_open_interest(
    con: duckdb.DuckDBPyConnection, days: list[dt.date], coins: list[str], window: str
) -> dict[tuple[dt.date, str], float]:
    """(day, coin) -> the coin's notional at the day's close in ``window`` (open interest)."""
    rows = con.execute(
        "select snapshot_date, coin, total_usd from marts.coin_bias_daily "
        'where snapshot_date in (select unnest(?)) and "window" = ? '
        "and coin in (select unnest(?))",
        [days, window, coins],
    ).fetchall()
    return {(d, c): float(v or 0) for d, c, v in rows}


@dataclass(frozen=True)
class DayDivergence:
    """Smart money vs retail in one coin at a day's close, and the spread's daily change."""

    smart_bias: float | None
    retail_bias: float | None
    smart_usd: float
    retail_usd: float
    spread_pp: float | None
    spread_change_pp: float | None  # NULL when the previous day has no spread


def load_day_divergence(
    con: duckdb.DuckDBPyConnection, days: list[dt.date], windows: list[str], coins: list[str]
) -> dict[tuple[dt.date, str, str], DayDivergence]:
    """(day, window, coin) -> the mart's smart-vs-retail row and its change since D-1."""
    rows = con.execute(
        'select d.snapshot_date, d."window", d.coin, d.smart_bias, d.retail_bias, '
        "d.smart_total_usd, d.retail_total_usd, d.smart_minus_retail_pp, "
        "d.smart_minus_retail_pp - p.smart_minus_retail_pp "
        "from marts.smart_retail_divergence_daily as d "
        "left join marts.smart_retail_divergence_daily as p "
        '  on p.snapshot_date = d.snapshot_date - 1 and p."window" = d."window" '
        "  and p.coin = d.coin "
        'where d.snapshot_date in (select unnest(?)) and d."window" in (select unnest(?)) '
        "and d.coin in (select unnest(?))",
        [days, windows, coins],
    ).fetchall()
    return {
        (day, window, coin): DayDivergence(
            smart_bias=sb,
            retail_bias=rb,
            smart_usd=float(su or 0),
            retail_usd=float(ru or 0),
            spread_pp=pp,
            spread_change_pp=change,
        )
        for day, window, coin, sb, rb, su, ru, pp, change in rows
    }


# Bucket widths the history may use, smallest first: the narrowest that keeps a series within
# the page's point budget wins, so a longer span costs the page no more bytes.
BUCKETS_MINUTES = (30, 60, 120, 180, 240, 360, 720, 1440)


def _epoch(t: dt.datetime) -> float:
    # The marts' timestamps are UTC without a zone (DuckDB's epoch() reads them so).
    return (t if t.tzinfo else t.replace(tzinfo=dt.UTC)).timestamp()


def history_bucket(span: dt.timedelta, max_points: int) -> int:
    """Minutes per history point: the smallest bucket giving at most ``max_points``."""
    minutes = span.total_seconds() / 60
    for bucket in BUCKETS_MINUTES:
        if minutes / bucket <= max_points:
            return bucket
    return BUCKETS_MINUTES[-1]


@dataclass
class HistoryGrid:
    """Every board coin's bias history in every window, on one grid of time buckets.

    Point ``i`` is the last snapshot in ``[start + i * bucket, start + (i + 1) * bucket)``.
    """

    start: dt.datetime
    bucket_minutes: int
    points: int
    first_at: dt.datetime | None  # the first and last snapshot actually held
    last_at: dt.datetime | None
    # (window, coin) -> segment_id -> one bias per point (None: no snapshot or no positions)
    bias: dict[tuple[str, str], dict[int, list[float | None]]]
    spread_pp: dict[tuple[str, str], list[float | None]]
    # (window, coin) -> [(point, the daily mart's smart - retail at the day's close)]
    closes: dict[tuple[str, str], list[tuple[int, float | None]]]
    price: dict[str, list[float | None]] = field(default_factory=dict)  # coin -> mark price
    # (window, coin) -> the source of each point's state (LIVE or one of BACKFILLED; None: no
    # state of the coin there)
    sources: dict[tuple[str, str], list[str | None]] = field(default_factory=dict)


def load_history_grid(
    con: duckdb.DuckDBPyConnection,
    coins: list[str],
    windows: list[str],
    *,
    until: dt.datetime,
    days: float,
    max_points: int,
    market: bool,
) -> HistoryGrid:
    """Bias per cohort (and the smart - retail spread) per time bucket, for every coin."""
    since = until - dt.timedelta(days=days)
    span_row = con.execute(
        "select min(last_update), max(last_update) from marts.fct_coin_snapshots "
        "where last_update > ? and last_update <= ?",
        [since, until],
    ).fetchone()
    first_at, last_at = span_row if span_row else (None, None)
    if first_at is None or last_at is None:
        return HistoryGrid(until, 60, 0, None, None, {}, {}, {})
    bucket = history_bucket(last_at - first_at, max_points)
    width = dt.timedelta(minutes=bucket)
    # Buckets counted from midnight UTC, so that a day's close ends its day's last bucket.
    midnight = dt.datetime.combine(first_at.date(), dt.time(), tzinfo=first_at.tzinfo)
    start = midnight + ((first_at - midnight) // width) * width
    points = int((last_at - start) // width) + 1
    smart = ", ".join(str(s) for s in SMART_SEGMENTS)
    retail = ", ".join(str(s) for s in RETAIL_SEGMENTS)
    rows = con.execute(
        f"""
        with snap as (
            select "window", coin, last_update, segment_id, bias, long_usd, total_usd, source,
                floor((epoch(last_update) - ?) / ?)::integer as point
            from marts.fct_cohort_snapshots
            where coin in (select unnest(?)) and "window" in (select unnest(?))
                and last_update >= ? and last_update <= ?
        ),
        closing as (
            select "window", coin, point, max(last_update) as last_update
            from snap group by all
        )
        select
            s."window", s.coin, s.point,
            list(s.bias order by s.segment_id) as biases,
            list(s.segment_id order by s.segment_id) as segments,
            sum(s.long_usd) filter (where s.segment_id in ({smart}))
                / nullif(sum(s.total_usd) filter (where s.segment_id in ({smart})), 0),
            sum(s.long_usd) filter (where s.segment_id in ({retail}))
                / nullif(sum(s.total_usd) filter (where s.segment_id in ({retail})), 0),
            any_value(s.source)
        from snap as s
        inner join closing as c
            on c."window" = s."window" and c.coin = s.coin and c.last_update = s.last_update
        group by s."window", s.coin, s.point
        """,
        [_epoch(start), bucket * 60, coins, windows, start, until],
    ).fetchall()
    bias: dict[tuple[str, str], dict[int, list[float | None]]] = {}
    spread: dict[tuple[str, str], list[float | None]] = {}
    sources: dict[tuple[str, str], list[str | None]] = {}
    for window, coin, point, biases, segments, smart_bias, retail_bias, source in rows:
        key = (window, coin)
        sources.setdefault(key, [None] * points)[point] = source
        series = bias.setdefault(key, {s: [None] * points for s in LADDER_ORDER})
        for seg, b in zip(segments, biases, strict=True):
            if int(seg) in series:
                series[int(seg)][point] = None if b is None else float(b)
        line = spread.setdefault(key, [None] * points)
        if smart_bias is not None and retail_bias is not None:
            line[point] = (smart_bias - retail_bias) * 100
    closes: dict[tuple[str, str], list[tuple[int, float | None]]] = {}
    for window, coin, close_at, pp in con.execute(
        'select d."window", d.coin, c.close_at, d.smart_minus_retail_pp '
        "from marts.smart_retail_divergence_daily as d "
        "inner join marts.coin_bias_daily as c "
        '  on c.snapshot_date = d.snapshot_date and c."window" = d."window" and c.coin = d.coin '
        'where d.coin in (select unnest(?)) and d."window" in (select unnest(?)) '
        "  and c.close_at >= ? and c.close_at <= ? order by c.close_at",
        [coins, windows, start, until],
    ).fetchall():
        point = int((close_at - start) // width)
        closes.setdefault((window, coin), []).append((point, pp))
    grid = HistoryGrid(start, bucket, points, first_at, last_at, bias, spread, closes)
    grid.sources = sources
    if market:
        grid.price = load_price_grid(con, coins, start=start, until=until, bucket=bucket)
        for coin in grid.price:
            grid.price[coin] = (grid.price[coin] + [None] * points)[:points]
    return grid


def load_price_grid(
    con: duckdb.DuckDBPyConnection,
    coins: list[str],
    *,
    start: dt.datetime,
    until: dt.datetime,
    bucket: int,
) -> dict[str, list[float | None]]:
    """coin -> a price per bucket: the mark price of the bucket's last market snapshot; where
    the bucket has none (states ``ht backfill`` reconstructed, snapshots from before the market
    was captured), the close of the last closed hourly candle within the hour (or bucket)
    before the bucket's end. None: neither."""
    rows = con.execute(
        f"""
        select coin, floor((epoch(snapshot_at) - ?) / ?)::integer as point,
            arg_max(mark_price, snapshot_at)
        from marts.{MARKET}
        where coin in (select unnest(?)) and snapshot_at >= ? and snapshot_at <= ?
            and has_market and mark_price is not null
        group by all
        """,
        [_epoch(start), bucket * 60, coins, start, until],
    ).fetchall()
    out: dict[str, list[float | None]] = {}
    for coin, point, price in rows:
        line = out.setdefault(coin, [])
        if len(line) <= point:
            line.extend([None] * (point + 1 - len(line)))
        line[point] = float(price)
    if has_relation(con, CANDLES, CANDLE_COLUMNS):
        width = dt.timedelta(minutes=bucket)
        for coin, candles in _candle_prices(con, coins, start, until, width).items():
            line = out.setdefault(coin, [])
            line.extend([None] * (len(candles) - len(line)))
            for point, close in enumerate(candles):
                if line[point] is None:
                    line[point] = close
    return out


def _candle_prices(
    con: duckdb.DuckDBPyConnection,
    coins: list[str],
    start: dt.datetime,
    until: dt.datetime,
    width: dt.timedelta,
) -> dict[str, list[float | None]]:
    """coin -> per bucket of ``width`` from ``start``, the close of the last closed hourly
    candle that ended in the hour (or the bucket, when longer) before the bucket's end, and
    never after ``until``."""
    reach = max(width, dt.timedelta(hours=1))  # no price carried across a gap in candles
    points = int((until - start) // width) + 1
    rows = con.execute(
        f"select coin, close_time, close_price from marts.{CANDLES} "
        "where is_closed and close_price is not null and coin in (select unnest(?)) "
        "and close_time >= ? and close_time <= ? order by coin, close_time",
        [coins, start - reach, until],
    ).fetchall()
    by_coin: dict[str, list[tuple[dt.datetime, float]]] = {}
    for coin, close_time, close in rows:
        by_coin.setdefault(coin, []).append((close_time, float(close)))
    out: dict[str, list[float | None]] = {}
    for coin, candles in by_coin.items():
        times = [t for t, _ in candles]
        line: list[float | None] = [None] * points
        for point in range(points):
            end = start + (point + 1) * width
            i = bisect.bisect_left(times, end) - 1  # the last candle closed before the end
            if i >= 0 and times[i] >= end - reach:
                line[point] = candles[i][1]
        out[coin] = line
    return out


@dataclass(frozen=True)
class MarketRow:
    mark_price: float | None
    open_interest_usd: float | None
    funding_rate_hourly: float | None


def load_market_days(
    con: duckdb.DuckDBPyConnection,
    days: list[dt.date],
    coins: list[str],
    *,
    snapshot_id: str,
    snapshot_day: dt.date,
) -> dict[tuple[dt.date, str], MarketRow]:
    """(day, coin) -> the market at the day's last market snapshot; the report's own snapshot
    stands for its day (its market was captured with it)."""
    rows = con.execute(
        f"""
        select snapshot_at::date as day, coin,
            arg_max(mark_price, snapshot_at), arg_max(open_interest_usd, snapshot_at),
            arg_max(funding_rate_hourly, snapshot_at)
        from marts.{MARKET}
        where coin in (select unnest(?)) and snapshot_at::date in (select unnest(?))
            and has_market
        group by all
        """,
        [coins, days],
    ).fetchall()
    out = {(d, c): MarketRow(p, oi, f) for d, c, p, oi, f in rows}
    for coin, p, oi, f in con.execute(
        f"select coin, mark_price, open_interest_usd, funding_rate_hourly from marts.{MARKET} "
        "where snapshot_id = ? and has_market and coin in (select unnest(?))",
        [snapshot_id, coins],
    ).fetchall():
        out[(snapshot_day, coin)] = MarketRow(p, oi, f)
    return out


@dataclass(frozen=True)
class FlowPrice:
    net_usd_change: float | None
    net_flow_usd: float | None
    net_price_effect_usd: float | None


def load_flow_price(
    con: duckdb.DuckDBPyConnection, days: list[dt.date], windows: list[str], coins: list[str]
) -> dict[tuple[dt.date, str, str, int], FlowPrice]:
    """(day, window, coin, segment) -> the day's net notional change split into flow and price."""
    rows = con.execute(
        f"""
        select snapshot_date, "window", coin, segment_id,
            net_usd_change, net_flow_usd, net_price_effect_usd
        from marts.{FLOW_PRICE}
        where snapshot_date in (select unnest(?)) and "window" in (select unnest(?))
            and coin in (select unnest(?))
        """,
        [days, windows, coins],
    ).fetchall()
    return {
        (d, w, c, int(s)): FlowPrice(change, flow, price)
        for d, w, c, s, change, flow, price in rows
    }


SIGNALS = "signal_events"
SIGNAL_COLUMNS = {"snapshot_at", "signal_type", "window", "coin", "subject_name", "direction",
                  "headline"}  # fmt: skip


@dataclass(frozen=True)
class SignalRow:
    """One recent signal event, as the report lists it."""

    at: dt.datetime
    signal_type: str
    window: str
    coin: str
    subject: str
    direction: str
    headline: str


def load_signals(
    con: duckdb.DuckDBPyConnection, *, until: dt.datetime, limit: int
) -> list[SignalRow]:
    """The newest signal events at or before ``until`` (the report's snapshot), newest first:
    a dated report lists what was known at its snapshot, never a later event."""
    rows = con.execute(
        f"""select snapshot_at, signal_type, "window", coin, subject_name, direction, headline
        from marts.{SIGNALS}
        where snapshot_at <= ?
        order by snapshot_at desc, signal_type, coin, "window", subject_name
        limit ?""",
        [until.replace(tzinfo=None), limit],
    ).fetchall()
    return [SignalRow(*row) for row in rows]
