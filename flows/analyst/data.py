"""What the report shows, read from the published ``analytics.duckdb`` (read-only, schema marts).

Never the build database: analysts' tools and the report read the same published file, and a
report never blocks (or is blocked by) a pipeline run. Every query names its mart and columns
so that a renamed column fails here with DuckDB's own message.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from flows.analyst.scale import LADDER_ORDER, RETAIL_SEGMENTS, SMART_SEGMENTS, top_coins
from flows.settings import WINDOWS

OI_WINDOW = "all"  # open interest = every open position: the board's coins are ranked on it


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
                / nullif(sum(total_usd) filter (where segment_id in ({retail})), 0) as retail_bias
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
    for window, last_update, biases, segments, smart_bias, retail_bias in rows:
        history = histories[window]
        history.times.append(last_update)
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
