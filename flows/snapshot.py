"""Take one snapshot: the windows of one HyperTracker state, archived verbatim, then landed.

Between the archive and the lake, the snapshot's market (Hyperliquid's prices, open
interest and funding for every dex it needs, flows/market.py) is captured and archived; it
lands with the snapshot, before the commit mark, as rows or as a recorded gap.

A snapshot is stamped with the state's ``lastUpdate``, never with the wall clock. The state
is read before and after the windows are fetched; if it moved in between, the windows may
mix two states, so that fetch is set aside (kept, bytes untouched, in ``archive/_partial``)
and the windows are fetched again, a bounded number of times.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import duckdb
import pyarrow as pa

from flows import market
from flows.hyperliquid.client import HyperliquidClient
from flows.hypertracker.client import Fetched, HyperTrackerClient, StateStatus
from flows.hypertracker.errors import HyperTrackerError, PayloadError
from flows.hypertracker.payload import parse_heatmap, parse_segments
from flows.lake import parquet
from flows.lake.archive import IncomingFetch, RawArchive, SnapshotManifest, snapshot_id_for
from flows.lake.normalise import body_files, normalise, structure_problems
from flows.settings import Settings

log = logging.getLogger(__name__)


class StateKeptMoving(HyperTrackerError):
    """The state changed during every fetch attempt: no consistent snapshot was possible."""


@dataclass
class FetchedSnapshot:
    """The windows of one state, stored in ``_incoming`` and not yet checked."""

    state: StateStatus
    fetch: IncomingFetch
    bodies: dict[str, Fetched]
    attempts: int

    @property
    def snapshot_id(self) -> str:
        return snapshot_id_for(self.state.last_update)


class SnapshotRows(Mapping[str, pa.Table]):
    """A checked snapshot's rows for the lake, by table (``heatmap_coins``, ``heatmap_cohorts``).

    A plain Mapping, not a dict or dataclass, on purpose: Prefect walks dict and dataclass
    task arguments item by item, which costs seconds per task for a snapshot's rows.
    """

    __slots__ = ("_by_table",)

    def __init__(self, by_table: dict[str, pa.Table]) -> None:
        self._by_table = by_table

    def __getitem__(self, table: str) -> pa.Table:
        return self._by_table[table]

    def __iter__(self) -> Iterator[str]:
        return iter(self._by_table)

    def __len__(self) -> int:
        return len(self._by_table)


def fetch_windows(
    client: HyperTrackerClient,
    archive: RawArchive,
    state: StateStatus,
    windows: Sequence[str],
    *,
    max_refetches: int,
) -> FetchedSnapshot:
    """Fetch all windows from one state, re-fetching when the state moves underneath."""
    for attempt in range(1, max_refetches + 2):
        fetch = archive.begin()
        try:
            # Each body is archived the moment it arrives, before the other windows are in.
            bodies = client.heatmaps(windows, on_fetched=fetch.keep)
            after = client.status()
        except BaseException:
            # Whatever did arrive is kept: a failed fetch is evidence, not garbage.
            if fetch.records:
                archive.set_aside_partial(fetch, {"reason": "fetch failed part-way"})
            else:
                fetch.path.rmdir()
            raise
        if after.last_update == state.last_update:
            return FetchedSnapshot(state=state, fetch=fetch, bodies=bodies, attempts=attempt)
        log.warning(
            "state moved from %s to %s while fetching (attempt %d of %d): fetching the "
            "windows again so that all come from one state",
            snapshot_id_for(state.last_update),
            snapshot_id_for(after.last_update),
            attempt,
            max_refetches + 1,
        )
        archive.set_aside_partial(
            fetch,
            {
                "reason": "state moved during fetch",
                "state_before": snapshot_id_for(state.last_update),
                "state_after": snapshot_id_for(after.last_update),
            },
        )
        state = after
    raise StateKeptMoving(
        f"the HyperTracker state changed during each of {max_refetches + 1} fetch attempts; "
        "nothing was stored as a snapshot. The fetched bodies are kept in archive/_partial. "
        "Try again later, or raise HT_STATE_CHANGE_REFETCHES."
    )


def validate(archive: RawArchive, fetched: FetchedSnapshot) -> SnapshotRows:
    """Check every window and type its rows; on any failure quarantine the fetch and raise.

    The checks run in DuckDB over the bodies as stored in ``_incoming`` (JSON types against
    the contract, then every row invariant). A window they flag is parsed again by the strict
    validator, whose reasons name JSON paths; a body is accepted only if neither objects.
    """
    stored = fetched.fetch.body_paths()
    paths = {w: stored[w] for w in fetched.bodies}
    flagged: dict[str, list[str]] = {}
    drift: dict[str, list[str]] = {}
    rows: SnapshotRows | None = None
    try:
        for window, (problems, extra) in structure_problems(paths).items():
            if problems:
                flagged[window] = problems
            if extra:
                drift[window] = extra
        checked = normalise(body_files(fetched.snapshot_id, fetched.state.last_update, paths))
    except duckdb.Error as exc:
        # One unreadable body fails the whole pass: the strict validator finds which.
        errors = [e for w in sorted(paths) if (e := _strict_error(fetched.bodies[w], w))]
        reason = f"$: could not be read as a heatmap ({str(exc).splitlines()[0]})"
        errors = errors or [PayloadError(w, fetched.bodies[w].url, [reason]) for w in paths]
    else:
        for (_, window), problems in checked.problems.items():
            flagged.setdefault(window, []).extend(problems)
        rows = SnapshotRows(checked.rows_of(fetched.snapshot_id))
        errors = [
            _strict_error(fetched.bodies[w], w) or PayloadError(w, fetched.bodies[w].url, reasons)
            for w, reasons in sorted(flagged.items())
        ]
    if errors or rows is None:
        where = archive.quarantine(
            fetched.fetch,
            {
                "reason": "payload failed validation",
                "snapshot_id": fetched.snapshot_id,
                "errors": [
                    {"window": e.window, "url": e.url, "reasons": list(e.reasons)} for e in errors
                ],
            },
        )
        first = errors[0]
        raise PayloadError(
            first.window,
            first.url,
            [*first.reasons, f"the payload is quarantined in {where}; earlier data is intact"],
        )
    for (_, window), ids in sorted(checked.unknown_segment_ids.items()):
        log.warning(
            "window %s: unknown segment ids %s kept and flagged (is_known_segment = false)",
            window,
            ids,
        )
    for window, fields in sorted(drift.items()):
        log.warning(
            "window %s: schema drift, new fields %s (kept in the raw archive)", window, fields
        )
    for warning in checked.warnings.get(fetched.snapshot_id, []):
        log.warning("soft check: %s", warning)
    return rows


def _strict_error(fetched: Fetched, window: str) -> PayloadError | None:
    """The strict validator's account of a body (reasons with JSON paths), if it objects.

    A body the DuckDB checks flagged but this finds nothing wrong with is kept out all the
    same, with the checks' reasons (the caller's ``or``).
    """
    try:
        parse_heatmap(fetched.body, window, fetched.url)
    except PayloadError as exc:
        return exc
    return None


def archived_rows(
    archive: RawArchive, manifests: Sequence[SnapshotManifest]
) -> dict[str, SnapshotRows]:
    """The lake rows of archived snapshots, typed and checked again in one DuckDB pass.

    Raises ValueError naming the snapshot when an archived body no longer passes: the
    archive holds only bodies that passed when they were fetched, so that means damage.
    """
    files = [
        f
        for m in manifests
        for f in body_files(m.snapshot_id, m.last_update_dt, archive.body_paths(m))
    ]
    try:
        checked = normalise(files, checks_across_windows=False)
    except duckdb.Error as exc:
        if len(manifests) > 1:  # find the one that cannot be read, and name it
            for m in manifests:
                archived_rows(archive, [m])
        raise ValueError(
            f"archive damaged: snapshot {manifests[0].snapshot_id} in "
            f"{archive.snapshot_dir(manifests[0].snapshot_id)} cannot be read as heatmaps "
            f"({str(exc).splitlines()[0]}); restore it from a backup, or move it out of the "
            "archive, then rebuild again"
        ) from None
    if checked.problems:
        (sid, window), reasons = next(iter(sorted(checked.problems.items())))
        raise ValueError(
            f"archive damaged: snapshot {sid} window {window} in {archive.snapshot_dir(sid)} "
            f"fails the checks it passed when fetched: {'; '.join(reasons[:3])}. Restore it "
            "from a backup, or move it out of the archive, then rebuild again"
        )
    return {m.snapshot_id: SnapshotRows(checked.rows_of(m.snapshot_id)) for m in manifests}


def commit(
    archive: RawArchive, fetched: FetchedSnapshot, rows: SnapshotRows
) -> tuple[SnapshotManifest, SnapshotRows]:
    """Move a valid snapshot into the archive; its manifest and rows for the lake.

    If the archive already holds that state (a forced re-fetch, or the state moved onto
    one already stored), the archive keeps its first copy and this fetch is set aside.
    """
    if archive.has_snapshot(fetched.snapshot_id):
        archive.set_aside_partial(fetched.fetch, {"reason": "state already archived"})
        manifest = archive.manifest(fetched.snapshot_id)
        return manifest, archived_rows(archive, [manifest])[manifest.snapshot_id]
    manifest = fetched.fetch.commit_snapshot(
        last_update=fetched.state.last_update, next_update=fetched.state.next_update
    )
    return manifest, rows


def land(lake_dir: Path, manifest: SnapshotManifest, rows: SnapshotRows) -> dict[str, int]:
    """Write a snapshot's rows into the Parquet lake; rows per table."""
    tables = {**rows, "snapshots": parquet.snapshots_table(manifest, rows["heatmap_coins"])}
    parquet.land_snapshot(lake_dir, tables, manifest.snapshot_id)
    return {name: t.num_rows for name, t in tables.items()}


def refresh_segments(
    client: HyperTrackerClient, archive: RawArchive, settings: Settings, *, now: datetime
) -> bool:
    """Fetch ``/segments`` when the stored ladder is older than the refresh interval."""
    newest = archive.latest_segments_fetch()
    if newest is not None and now - newest < timedelta(hours=settings.segments_refresh_hours):
        return False
    fetched = client.segments()
    fetch = archive.begin()
    fetch.keep(fetched)
    try:
        parse_segments(fetched.body, fetched.url)
    except PayloadError as exc:
        # The ladder is context (the seed names the cohorts): a bad body is kept out of the
        # archive's current ladder, and the next run asks again.
        where = archive.quarantine(
            fetch, {"reason": "/segments failed validation", "errors": list(exc.reasons)}
        )
        log.warning("/segments body quarantined in %s: %s", where, "; ".join(exc.reasons[:3]))
        return False
    fetch.commit_segments()
    parquet.land_segments(settings.lake_dir, fetched.body, fetched.fetched_at)
    return True


@dataclass
class SnapshotOutcome:
    """What one snapshot run did: ``stored`` is False when the state was already there."""

    snapshot_id: str
    stored: bool
    attempts: int = 0
    bytes_fetched: int = 0
    rows: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    market: market.MarketOutcome | None = None  # the market landed with it
    # Seconds of each part (fetch, checks, archive, market, lake): where a run's time goes.
    phases: dict[str, float] = field(default_factory=dict)


def with_market(
    info: HyperliquidClient,
    archive: RawArchive,
    manifest: SnapshotManifest,
    rows: SnapshotRows,
    *,
    newly_archived: bool,
) -> tuple[SnapshotRows, market.MarketOutcome | None]:
    """The snapshot's rows with its market: captured now if the snapshot was archived just
    now, else as the market archive holds it (or its 'not_captured' gap)."""  # fmt: skip
    coins = market.coins_of(rows)
    outcome = None
    if newly_archived:
        try:
            tables, outcome = market.capture_rows(info, archive, manifest.last_update_dt, coins)
        except Exception as exc:  # the heatmap lands whatever became of its market
            log.warning("market capture for %s failed: %s", manifest.snapshot_id,
                        market.one_line(exc), exc_info=True)  # fmt: skip
            tables = market.archived_market_rows(
                archive, manifest.snapshot_id, manifest.last_update_dt, coins
            )
    else:
        tables = market.archived_market_rows(
            archive, manifest.snapshot_id, manifest.last_update_dt, coins
        )
    return SnapshotRows({**rows, **tables}), outcome


def take_snapshot(
    client: HyperTrackerClient,
    archive: RawArchive,
    settings: Settings,
    *,
    info: HyperliquidClient,
    force: bool = False,
) -> SnapshotOutcome:
    """State -> windows -> validate -> archive -> market -> lake, or "no new state"."""
    started = time.perf_counter()
    phases: dict[str, float] = {}
    mark = started

    def lap(name: str) -> None:
        nonlocal mark
        now = time.perf_counter()
        phases[name] = round(now - mark, 3)
        mark = now

    state = client.status()
    snapshot_id = snapshot_id_for(state.last_update)
    if archive.has_snapshot(snapshot_id) and not force:
        log.info("no new state: %s is already stored; nothing to do", snapshot_id)
        return SnapshotOutcome(snapshot_id, stored=False)
    log.info("HyperTracker state %s (next update expected %s)", snapshot_id, state.next_update)
    fetched = fetch_windows(
        client, archive, state, settings.windows, max_refetches=settings.state_change_refetches
    )
    for window, body in fetched.bodies.items():
        log.info(
            "fetched %s: %s bytes in %.2fs (HTTP %s)",
            window,
            f"{len(body.body):,}",
            body.elapsed_s,
            body.status,
        )
    lap("fetch")
    checked = validate(archive, fetched)
    lap("checks")
    newly_archived = not archive.has_snapshot(fetched.snapshot_id)
    manifest, checked = commit(archive, fetched, checked)
    lap("archive")
    checked, captured = with_market(info, archive, manifest, checked, newly_archived=newly_archived)
    lap("market")
    statuses = dict(
        zip(*(checked["market_fetches"].column(c).to_pylist() for c in ("dex", "status")),
            strict=True)
    )  # fmt: skip
    captured = captured or market.MarketOutcome(statuses)
    captured.statuses = statuses
    if captured.weight:
        log.info(
            "market of %s: %s in %.2fs (weight %d, %s bytes)",
            manifest.snapshot_id,
            ", ".join(f"{d or 'main'} {s}" for d, s in statuses.items()),
            captured.seconds,
            captured.weight,
            f"{captured.body_bytes:,}",
        )
    rows = land(settings.lake_dir, manifest, checked)
    lap("lake")
    log.info(
        "archived and landed %s: %s coin rows, %s cohort rows",
        manifest.snapshot_id,
        f"{rows['heatmap_coins']:,}",
        f"{rows['heatmap_cohorts']:,}",
    )
    return SnapshotOutcome(
        manifest.snapshot_id,
        stored=True,
        attempts=fetched.attempts,
        bytes_fetched=sum(r.body_bytes for r in manifest.bodies.values()),
        rows=rows,
        seconds=time.perf_counter() - started,
        market=captured,
        phases=phases,
    )
