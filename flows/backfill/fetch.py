"""Fetching a planned backfill into the history archive, resumably, inside the quota.

Series are fetched coin-major (coin, then window, then cohort: the simulator caches one
coin's states; the real API does not care). Each page is parsed before it counts: a good
page is stored with its checkpoint (flows/backfill/archive.py), a malformed one goes to
quarantine and its series stops there (it is asked for again by the next backfill).

Before every request the quota is checked against what the scheduled runs still need
(the plan's figures for the rest of today and this month): when the next request would eat
into that, the fetch stops cleanly, its checkpoints in place, and says when to resume.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime

from flows.backfill.archive import Checkpoint, HistoryArchive
from flows.backfill.plan import Plan
from flows.cohorts import SEGMENT_IDS
from flows.hypertracker.errors import PayloadError, RequestFailed
from flows.hypertracker.history import HistoryClient
from flows.hypertracker.history_payload import parse_position_metrics, parse_segment_export
from flows.lake.archive import iso, new_fetch_id
from flows.quota import Ledger, QuotaWouldBeExceeded
from flows.settings import Settings


class QuotaPause(RuntimeError):
    """The backfill stopped to keep the scheduled runs' budget; its checkpoints are kept."""


@dataclass
class Fetched:
    """What one fetch did: pages stored, series finished, pages set aside, and why stopped."""

    pages: int = 0
    series_done: int = 0
    series_skipped: int = 0
    quarantined: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    paused: str | None = None


class Budget:
    """Raises QuotaPause before a request that would leave the scheduled runs short."""

    def __init__(self, settings: Settings, ledger: Ledger, plan: Plan) -> None:
        self._settings, self._ledger = settings, ledger
        self._reserve_day = plan.scheduled_rest_of_today
        self._reserve_month = plan.scheduled_rest_of_month

    def check(self) -> None:
        s = self._settings
        # The ledger on disk is the truth (a scheduled run may have spent meanwhile).
        fresh = Ledger.open(s)
        over_day = s.requests_per_day and (
            fresh.day_count + 1 + self._reserve_day > s.requests_per_day
        )
        over_month = s.requests_per_month and (
            fresh.month_count + 1 + self._reserve_month > s.requests_per_month
        )
        if over_day or over_month:
            cap = "daily" if over_day else "monthly"
            raise QuotaPause(
                f"paused: the {cap} API budget left is kept for the scheduled runs "
                f"({fresh.day_count} used today, {fresh.month_count} this month); run "
                "`ht backfill` again with the same options later: it resumes where it stopped"
            )
        try:
            fresh.check(s, 1)
        except QuotaWouldBeExceeded as exc:
            raise QuotaPause(f"paused: {exc}") from None


def series_order(plan: Plan) -> list[tuple[str, str, int]]:
    """(coin, window, cohort) in fetch order: coin-major."""
    return [(c, w, s) for c in plan.coins for w in plan.windows for s in sorted(SEGMENT_IDS)]


def fetch_deep(
    history: HistoryClient,
    archive: HistoryArchive,
    plan: Plan,
    *,
    end: datetime,
    limit: int,
    budget: Budget,
    advance: Callable[[int], None] = lambda n: None,
) -> Fetched:
    """Every series of a deep plan until ``end`` (chosen once, when planned), resumed by cursor."""
    out = Fetched()
    fetch_id = new_fetch_id()
    try:
        for coin, window, seg in series_order(plan):
            query = Checkpoint(start=str(iso(plan.starts[window])), end=str(iso(end)), limit=limit)
            at = archive.resume_point(coin, window, seg, query)
            if at.done:
                out.series_skipped += 1
                advance(at.pages)
                continue
            advance(at.pages)
            budget.check()
            pages = history.position_metrics_pages(
                coin, seg, window, plan.starts[window], end, limit=limit, cursor=at.next_cursor
            )
            try:
                for page in _checked(pages, budget):
                    try:
                        parse_position_metrics(
                            page.fetched, coin=coin, segment_id=seg, window=window
                        )
                    except PayloadError as exc:
                        name = f"{coin}-{window}-{seg}-{at.pages + 1:05d}".replace("/", "_")
                        archive.quarantine(fetch_id, name, page.fetched, exc.reasons)
                        out.quarantined.append(f"{coin} {window} cohort {seg}: {exc.reasons[:1]}")
                        break
                    at = archive.store_page(
                        coin, window, seg, at, page.fetched, next_cursor=page.next_cursor
                    )
                    out.pages += 1
                    advance(1)
            except PayloadError as exc:  # the page had no readable cursor: set aside above
                out.quarantined.append(f"{coin} {window} cohort {seg}: {exc.reasons[:1]}")
            except RequestFailed as exc:
                out.failed.append(f"{coin} {window} cohort {seg}: {exc}")
                continue
            if at.done:
                out.series_done += 1
    except QuotaPause as exc:
        out.paused = str(exc)
    return out


def _checked(pages: Iterable, budget: Budget) -> Iterable:
    """The pages, with the budget checked before each request after the first."""
    first = True
    iterator = iter(pages)
    while True:
        if not first:
            budget.check()
        first = False
        try:
            yield next(iterator)
        except StopIteration:
            return


def fetch_quick(
    history: HistoryClient,
    archive: HistoryArchive,
    plan: Plan,
    *,
    budget: Budget,
    advance: Callable[[int], None] = lambda n: None,
) -> Fetched:
    """One export per coin and window into one fetch folder (resumed if left unfinished)."""
    out = Fetched()
    fetch_id = archive.pending_export_fetch() or new_fetch_id()
    asked = [(c, w) for c in plan.coins for w in plan.windows]
    try:
        for coin, window in asked:
            if archive.has_export(fetch_id, coin, window):
                out.series_skipped += 1
                advance(1)
                continue
            budget.check()
            try:
                fetched = history.segment_metrics_export(coin, window)
            except RequestFailed as exc:
                out.failed.append(f"{coin} {window}: {exc}")
                continue
            try:
                parse_segment_export(fetched, coin=coin, window=window)
            except PayloadError as exc:
                archive.quarantine(
                    fetch_id, f"{coin}-{window}".replace("/", "_"), fetched, exc.reasons
                )
                out.quarantined.append(f"{coin} {window}: {exc.reasons[:1]}")
                continue
            archive.store_export(fetch_id, coin, window, fetched)
            out.pages += 1
            out.series_done += 1
            advance(1)
    except QuotaPause as exc:
        out.paused = str(exc)
        return out
    if not out.failed and not out.quarantined:
        archive.complete_export(fetch_id, asked)
    return out
