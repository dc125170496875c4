"""Price history for the coins on the board: hourly candles and funding, only what is missing.

The board is the newest landed snapshot's top ``HT_TOP_COINS`` coins by open interest
(window ``all``). Prices are asked up to that snapshot's ``lastUpdate`` (the horizon), so a
run with no new state asks nothing, and history never runs ahead of the positioning it
explains. Per coin, from what the lake already holds:

- candles (``candleSnapshot``, 1h): from the hour after the newest closed candle stored,
  when a candle has closed since; the first time, the newest 5000 hours the API keeps;
- funding (``fundingHistory``): from just after the newest rate stored, when an hour has
  been paid since; the first time, as far back as the candles; 500 rows a page.

A run spends at most ``HT_PRICE_HISTORY_WEIGHT_PER_RUN`` of the info API's weight: coins
already held are brought up to date first, then new ones in board order, so a first
backfill (~560 weight a coin: 16,824 and 350 requests for the demo's 30) spreads over ~20
runs at the default 900, and then each hour costs 42 weight a coin (a candle and a funding
request), 1,260 for 30 coins, spent by the first two runs after the hour. Answers are
archived verbatim (a bad one quarantined), then landed (flows/lake/price_lake.py). A failure
stops the step, keeps what arrived, and is reported: it never fails the run or holds back
the heatmap.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.parquet as pq

from flows.hyperliquid.client import (
    BASE_WEIGHT,
    CANDLE_ITEMS_PER_WEIGHT,
    FUNDING_ITEMS_PER_WEIGHT,
    FUNDING_PAGE,
    MAX_CANDLES,
    HyperliquidClient,
    InfoFetched,
)
from flows.hyperliquid.errors import InfoPayloadError
from flows.hyperliquid.payload import parse_candles, parse_funding
from flows.lake.archive import IncomingFetch, RawArchive, iso, utc_now
from flows.lake.parquet import lake_path
from flows.lake.price_lake import (
    PriceArchive,
    PriceBody,
    PriceManifest,
    land_fetches,
    landed_until,
    newest_times,
)
from flows.market import one_line
from flows.settings import Settings

log = logging.getLogger(__name__)

HOUR = timedelta(hours=1)
INTERVAL = "1h"


@dataclass
class PriceHistoryOutcome:
    """What one price-history step did, for the run report."""

    horizon: str | None = None  # the snapshot prices were brought up to
    coins: int = 0  # on the board
    requests: int = 0
    weight: int = 0
    candles: int = 0  # rows landed
    funding_rates: int = 0
    quarantined: int = 0
    behind: list[str] = field(default_factory=list)  # coins left for the next run (budget)
    error: str | None = None
    seconds: float = 0.0


def board(lake_dir: Path, top: int) -> tuple[datetime, list[str]] | None:
    """The newest landed snapshot's time and its top coins by open interest, or None."""
    marks = sorted((lake_dir / "snapshots").glob("date=*/*.parquet"), key=lambda p: p.stem)
    if not marks:
        return None
    newest = marks[-1].stem
    coins = pq.read_table(
        lake_path(lake_dir, "heatmap_coins", newest), columns=["window", "coin", "total_value"]
    )
    windows = set(coins.column("window").to_pylist())
    window = "all" if "all" in windows else max(windows, key=("24h", "7d", "30d").index)
    rows = coins.filter(pc.equal(coins.column("window"), window)).to_pylist()
    rows.sort(key=lambda r: (-r["total_value"], r["coin"]))
    at = pq.read_table(marks[-1], columns=["last_update"]).column(0)[0].as_py()
    return at.replace(tzinfo=UTC), [r["coin"] for r in rows[:top]]


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def _floor_hour(moment: datetime) -> datetime:
    return moment.replace(minute=0, second=0, microsecond=0)


def candle_weight(start: datetime, end: datetime) -> int:
    items = min(MAX_CANDLES, int((end - start) / HOUR) + 1)
    return BASE_WEIGHT + math.ceil(items / CANDLE_ITEMS_PER_WEIGHT)


def funding_weight(start: datetime, end: datetime) -> int:
    items = min(FUNDING_PAGE, int((end - start) / HOUR) + 1)
    return BASE_WEIGHT + math.ceil(items / FUNDING_ITEMS_PER_WEIGHT)


class _Budget(Exception):
    """The run's weight is spent: the rest waits for the next run."""


class _Fetcher:
    """One run's requests: each answer stored as it arrives, checked, kept or quarantined."""

    def __init__(self, client: HyperliquidClient, archive: PriceArchive, budget: int) -> None:
        self.client = client
        self.archive = archive
        self.fetch: IncomingFetch = archive.begin()
        self.bodies: list[PriceBody] = []
        self.budget = budget
        self.spent = 0
        self.quarantined = 0

    def ask(self, kind: str, coin: str, weight: int, start: datetime, end: datetime) -> list:
        if self.spent + weight > self.budget:
            raise _Budget
        before = self.client.weight_sent
        if kind == "candles":
            fetched = self.client.candles(coin, INTERVAL, _ms(start), _ms(end))
        else:
            fetched = self.client.funding_history(coin, _ms(start), _ms(end))
        self.spent += self.client.weight_sent - before
        return self._keep(kind, coin, fetched)

    def _keep(self, kind: str, coin: str, fetched: InfoFetched) -> list:
        name = f"{kind}-{len(self.bodies) + 1:04d}"
        stored = self.fetch.store(
            name=name,
            window=None,
            url=fetched.url,
            http_status=fetched.status,
            body=fetched.body,
            fetched_at=fetched.fetched_at,
            elapsed_s=fetched.elapsed_s,
        )
        body = PriceBody(
            kind=kind,
            coin=coin,
            request=dict(fetched.request),
            status="ok",
            url=fetched.url,
            http_status=fetched.status,
            fetched_at=iso(fetched.fetched_at) or "",
            body_bytes=len(fetched.body),
            body_sha256=stored.body_sha256,
            weight=fetched.weight,
            file=stored.file,
        )
        try:
            rows = (
                parse_candles(fetched.body, coin, INTERVAL)
                if kind == "candles"
                else parse_funding(fetched.body, coin)
            )
        except InfoPayloadError as exc:
            where = self.archive.raw.quarantine_body(
                self.fetch,
                name,
                {"reason": f"{kind} answer failed validation", "coin": coin, "errors": exc.reasons},
            )
            log.warning(
                "price history: %s for %s quarantined in %s: %s",
                kind,
                coin,
                where,
                "; ".join(exc.reasons[:3]),
            )
            self.bodies.append(
                PriceBody(
                    **{
                        **body.__dict__,
                        "status": "quarantined",
                        "file": None,
                        "error": one_line(exc),
                    }
                )
            )
            self.quarantined += 1
            return []
        self.bodies.append(body)
        return rows


def update(
    client: HyperliquidClient, archive: RawArchive, settings: Settings
) -> PriceHistoryOutcome:
    """Fetch what the lake lacks for the board's coins, archive it, land it."""
    started = time.perf_counter()
    outcome = PriceHistoryOutcome()
    found = board(settings.lake_dir, settings.top_coins)
    if found is None or settings.price_history_weight_per_run == 0:
        return outcome
    horizon, coins = found
    outcome.horizon, outcome.coins = iso(horizon), len(coins)
    held = newest_times(settings.lake_dir, coins)
    order = sorted(coins, key=lambda c: (c not in held["candles"], coins.index(c)))
    prices = PriceArchive(archive)
    run = _Fetcher(client, prices, settings.price_history_weight_per_run)
    requests_before = client.requests_sent
    try:
        for coin in order:
            _candles(run, coin, held["candles"].get(coin), horizon)
            _funding(run, coin, held["funding_rates"].get(coin), horizon)
    except _Budget:
        outcome.behind = order[order.index(coin) :]
    except Exception as exc:  # the source failed: keep what arrived, say why, stop
        outcome.error = one_line(exc)
        log.warning("price history stopped at %s: %s", coin, outcome.error)
    finally:
        outcome.requests = client.requests_sent - requests_before
        outcome.weight = run.spent
        outcome.quarantined = run.quarantined
        if run.bodies:
            folder = prices.commit(
                run.fetch,
                PriceManifest(
                    fetch_id=run.fetch.fetch_id,
                    archived_at=iso(utc_now()) or "",
                    horizon=outcome.horizon or "",
                    bodies=run.bodies,
                    error=outcome.error,
                ),
            )
            added = land_fetches(settings.lake_dir, [folder])
            outcome.candles, outcome.funding_rates = added["candles"], added["funding_rates"]
        else:
            run.fetch.path.rmdir()
        outcome.seconds = round(time.perf_counter() - started, 3)
    return outcome


def _candles(run: _Fetcher, coin: str, newest: datetime | None, horizon: datetime) -> None:
    """One request: the closed candles after the newest stored, up to the horizon."""
    if newest is None:
        start = _floor_hour(horizon) - (MAX_CANDLES - 1) * HOUR
    else:
        start = newest + HOUR
        if start + HOUR > horizon:  # no candle has closed since
            return
    run.ask("candles", coin, candle_weight(start, horizon), start, horizon)


def _funding(run: _Fetcher, coin: str, newest: datetime | None, horizon: datetime) -> None:
    """Pages of funding after the newest stored rate, up to the horizon."""
    if newest is None:
        start = _floor_hour(horizon) - MAX_CANDLES * HOUR
    else:
        if _floor_hour(newest) + HOUR > horizon:  # no hour has been paid since
            return
        start = newest + timedelta(milliseconds=1)
    while start <= horizon:
        rows = run.ask("funding", coin, funding_weight(start, horizon), start, horizon)
        if len(rows) < FUNDING_PAGE:
            return
        start = datetime.fromtimestamp(rows[-1]["time"] / 1000, UTC) + timedelta(milliseconds=1)


def land_unlanded(settings: Settings, archive: RawArchive) -> int:
    """Land archived price fetches the lake does not hold yet (a run stopped in between, or
    a fresh lake); return how many."""
    folders = PriceArchive(archive).folders(after=landed_until(settings.lake_dir))
    if folders:
        land_fetches(settings.lake_dir, folders)
    return len(folders)
