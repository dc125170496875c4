"""The market beside each snapshot: Hyperliquid's ``metaAndAssetCtxs`` for every dex it needs.

A snapshot is stamped with HyperTracker's ``lastUpdate``; its market is asked for right
after the snapshot enters the archive and before it lands, so each price is as close to
that state as a fetch can be (``fetched_at`` says how close) and never later than the run
that took the snapshot. The dexes needed are the main one (``''``) and every builder dex
with a coin in the heatmap (``xyz:GOLD`` needs ``xyz``).

The market is context: whatever goes wrong with it (no answer, a refused request, a body
that fails validation, which is quarantined) becomes a ``market_fetches`` row saying so, and
the heatmap snapshot lands all the same. A gap is recorded, never filled: a snapshot whose
market was never captured is 'not_captured', and no price fetched later is attached to it.

:func:`market_rows` turns a capture's manifest and bodies into the two lake tables; the
live path and the rebuild both go through it, so ``ht rebuild`` gives the same rows.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime

import pyarrow as pa

from flows.hyperliquid.client import HyperliquidClient, InfoFetched
from flows.hyperliquid.errors import InfoPayloadError, InfoRequestFailed
from flows.hyperliquid.payload import parse_meta_and_asset_ctxs
from flows.lake.archive import (
    BodyRecord,
    IncomingFetch,
    RawArchive,
    iso,
    parse_iso,
    snapshot_id_for,
    utc_now,
)
from flows.lake.market_archive import (
    MarketArchive,
    MarketFetchRecord,
    MarketManifest,
    dex_file_stem,
)
from flows.lake.tables import MARKET_CONTEXTS, MARKET_FETCHES

log = logging.getLogger(__name__)

NOT_CAPTURED = (
    "the market was not captured: the run that took this snapshot stopped before asking "
    "(a later price is never attached to an earlier snapshot)"
)
MAX_ERROR_CHARS = 500
MARKET_WORKERS = 4


def needed_dexes(coins: Iterable[str]) -> list[str]:
    """The main dex, then every builder dex with a coin among ``coins``, sorted."""
    return ["", *sorted({c.split(":", 1)[0] for c in coins if ":" in c})]


def one_line(exc: BaseException) -> str:
    """An error as one line: its type where the message does not say it, no newlines."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    if not isinstance(exc, InfoRequestFailed | InfoPayloadError):
        text = f"{type(exc).__name__}: {text}"
    return text[:MAX_ERROR_CHARS]


@dataclass
class MarketOutcome:
    """What one capture did, for the run report: status per dex, weight, seconds."""

    statuses: dict[str, str]
    weight: int = 0
    seconds: float = 0.0
    body_bytes: int = 0


def capture(
    client: HyperliquidClient,
    archive: RawArchive,
    snapshot_id: str,
    last_update: datetime,
    dexes: list[str],
) -> tuple[MarketManifest, MarketOutcome]:
    """Ask for every dex's market, store each answer as it arrives, check it, commit.

    Never raises for the source's sake: a dex that fails is a record saying why.
    """
    started = time.perf_counter()
    markets = MarketArchive(archive)
    fetch = markets.begin()
    weight_before = client.weight_sent

    def ask(dex: str) -> MarketFetchRecord:
        stem = dex_file_stem(dex)
        try:
            fetched = client.meta_and_asset_ctxs(dex)
        except Exception as exc:  # the source failed: a recorded gap, never the snapshot's end
            log.warning("market dex %r for %s: %s", dex, snapshot_id, one_line(exc))
            return MarketFetchRecord(
                dex=dex, status="failed", url=client.url, error=one_line(exc),
                http_status=getattr(exc, "status", None),
            )  # fmt: skip
        stored = _store(fetch, stem, fetched)
        try:
            parse_meta_and_asset_ctxs(fetched.body, dex)
        except InfoPayloadError as exc:
            where = archive.quarantine_body(
                fetch, stem, {"reason": "metaAndAssetCtxs failed validation",
                              "snapshot_id": snapshot_id, "dex": dex, "errors": exc.reasons},
            )  # fmt: skip
            log.warning("market dex %r for %s quarantined in %s: %s", dex, snapshot_id, where,
                        "; ".join(exc.reasons[:3]))  # fmt: skip
            return _record(dex, "quarantined", fetched, stored, error=f"{one_line(exc)} ({where})")
        return _record(dex, "ok", fetched, stored)

    try:
        with ThreadPoolExecutor(max_workers=MARKET_WORKERS, thread_name_prefix="market") as pool:
            records = list(pool.map(ask, dexes))
        manifest = markets.commit(
            fetch,
            MarketManifest(
                snapshot_id=snapshot_id, last_update=iso(last_update) or "",
                fetch_id=fetch.fetch_id, archived_at=iso(utc_now()) or "", fetches=records,
            ),
        )  # fmt: skip
    except BaseException:
        if fetch.path.exists() and not fetch.records:
            fetch.path.rmdir()
        raise
    outcome = MarketOutcome(
        statuses={r.dex: r.status for r in records},
        weight=client.weight_sent - weight_before,
        seconds=round(time.perf_counter() - started, 3),
        body_bytes=sum(r.body_bytes or 0 for r in records),
    )
    return manifest, outcome


def _store(fetch: IncomingFetch, stem: str, fetched: InfoFetched) -> BodyRecord:
    return fetch.store(
        name=stem, window=None, url=fetched.url, http_status=fetched.status,
        body=fetched.body, fetched_at=fetched.fetched_at, elapsed_s=fetched.elapsed_s,
    )  # fmt: skip


def _record(
    dex: str, status: str, fetched: InfoFetched, stored: BodyRecord, error: str | None = None
) -> MarketFetchRecord:
    return MarketFetchRecord(
        dex=dex, status=status, url=fetched.url, file=stored.file if status == "ok" else None,
        http_status=fetched.status, fetched_at=iso(fetched.fetched_at),
        body_bytes=len(fetched.body), body_sha256=stored.body_sha256,
        stored_bytes=stored.stored_bytes,
        elapsed_s=round(fetched.elapsed_s, 4), weight=fetched.weight, error=error,
    )  # fmt: skip


def _naive(ts: datetime | None) -> datetime | None:
    return None if ts is None else ts.replace(tzinfo=None)


def market_rows(
    snapshot_id: str,
    last_update: datetime,
    dexes: list[str],
    manifest: MarketManifest | None,
    body_of: Callable[[MarketFetchRecord], bytes],
) -> dict[str, pa.Table]:
    """The snapshot's ``market_fetches`` (one row per dex needed) and ``market_contexts``.

    ``manifest`` None means never captured: every dex is a 'not_captured' gap.
    """
    by_dex = {r.dex: r for r in manifest.fetches} if manifest is not None else {}
    fetches: list[dict[str, object]] = []
    contexts: list[dict[str, object]] = []
    at = _naive(last_update)
    for dex in sorted(set(dexes) | set(by_dex)):
        record = by_dex.get(dex)
        key = {"snapshot_id": snapshot_id, "last_update": at, "dex": dex}
        if record is None:
            fetches.append({**key, "status": "not_captured", "url": "", "error": NOT_CAPTURED})
            continue
        fetched_at = _naive(parse_iso(record.fetched_at))
        row = {**key, "status": record.status, "fetched_at": fetched_at, "url": record.url,
               "http_status": record.http_status, "body_bytes": record.body_bytes,
               "body_sha256": record.body_sha256, "error": record.error}  # fmt: skip
        if record.status == "ok":
            parsed = parse_meta_and_asset_ctxs(body_of(record), dex)
            row["coin_count"] = len(parsed)
            contexts += [{**key, "fetched_at": fetched_at, **c} for c in parsed]
        fetches.append(row)
    return {
        "market_fetches": pa.Table.from_pylist(fetches, schema=MARKET_FETCHES),
        "market_contexts": pa.Table.from_pylist(contexts, schema=MARKET_CONTEXTS),
    }


def archived_market_rows(
    archive: RawArchive, snapshot_id: str, last_update: datetime, coins: Iterable[str]
) -> dict[str, pa.Table]:
    """A snapshot's market rows from the market archive (or its 'not_captured' gap)."""
    markets = MarketArchive(archive)
    manifest = markets.manifest(snapshot_id)
    return market_rows(
        snapshot_id,
        last_update,
        needed_dexes(coins),
        manifest,
        lambda record: markets.read_body(manifest, record),  # type: ignore[arg-type]
    )


def capture_rows(
    client: HyperliquidClient, archive: RawArchive, last_update: datetime, coins: Iterable[str]
) -> tuple[dict[str, pa.Table], MarketOutcome]:
    """Capture the market of a snapshot just archived; its lake rows and what it did."""
    snapshot_id = snapshot_id_for(last_update)
    manifest, outcome = capture(client, archive, snapshot_id, last_update, needed_dexes(coins))
    markets = MarketArchive(archive)
    rows = market_rows(
        snapshot_id, last_update, needed_dexes(coins), manifest,
        lambda record: markets.read_body(manifest, record),
    )  # fmt: skip
    return rows, outcome


def coins_of(tables: Mapping[str, pa.Table]) -> list[str]:
    """The coins of a snapshot's heatmap rows (every window)."""
    return tables["heatmap_coins"].column("coin").unique().to_pylist()
