"""Take one snapshot: the windows of one HyperTracker state, archived verbatim, then landed.

A snapshot is stamped with the state's ``lastUpdate``, never with the wall clock. The state
is read before and after the windows are fetched; if it moved in between, the windows may
mix two states, so that fetch is set aside (kept, bytes untouched, in ``archive/_partial``)
and the windows are fetched again, a bounded number of times.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from flows.hypertracker.client import Fetched, HyperTrackerClient, StateStatus
from flows.hypertracker.errors import HyperTrackerError, PayloadError
from flows.hypertracker.payload import HeatmapPayload, parse_heatmap, soft_checks
from flows.lake import parquet
from flows.lake.archive import IncomingFetch, RawArchive, SnapshotManifest, snapshot_id_for
from flows.settings import Settings


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


class SnapshotPayloads(Mapping[str, HeatmapPayload]):
    """The validated windows of one snapshot, by window.

    A plain Mapping, not a dict or dataclass, on purpose: Prefect walks dict and dataclass
    task arguments item by item, and the ~18,000 rows of a snapshot cost it seconds per task.
    """

    __slots__ = ("_by_window",)

    def __init__(self, by_window: dict[str, HeatmapPayload]) -> None:
        self._by_window = by_window

    def __getitem__(self, window: str) -> HeatmapPayload:
        return self._by_window[window]

    def __iter__(self) -> Iterator[str]:
        return iter(self._by_window)

    def __len__(self) -> int:
        return len(self._by_window)


def fetch_windows(
    client: HyperTrackerClient,
    archive: RawArchive,
    state: StateStatus,
    windows: Sequence[str],
    *,
    max_refetches: int,
    log: logging.Logger | logging.LoggerAdapter,
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


def validate(
    archive: RawArchive, fetched: FetchedSnapshot, log: logging.Logger | logging.LoggerAdapter
) -> SnapshotPayloads:
    """Parse and check every window; on any failure quarantine the whole fetch and raise."""
    payloads: dict[str, HeatmapPayload] = {}
    errors: list[PayloadError] = []
    for window, body in fetched.bodies.items():
        try:
            payloads[window] = parse_heatmap(body.body, window, body.url)
        except PayloadError as exc:
            errors.append(exc)
    if errors:
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
    for payload in payloads.values():
        if payload.unknown_segment_ids:
            log.warning(
                "window %s: unknown segment ids %s kept and flagged (is_known_segment = false)",
                payload.window,
                sorted(payload.unknown_segment_ids),
            )
        if payload.extra_fields:
            log.warning(
                "window %s: schema drift, new fields %s (kept in the raw archive)",
                payload.window,
                sorted(payload.extra_fields),
            )
    for warning in soft_checks(payloads):
        log.warning("soft check: %s", warning)
    return SnapshotPayloads(payloads)


def parse_archived(archive: RawArchive, manifest: SnapshotManifest) -> SnapshotPayloads:
    """The archived windows of a snapshot, read back (sha256-checked) and parsed again."""
    return SnapshotPayloads(
        {
            w: parse_heatmap(archive.read_body(manifest, w), w, manifest.bodies[w].url)
            for w in manifest.bodies
        }
    )


def commit(
    archive: RawArchive, fetched: FetchedSnapshot, payloads: SnapshotPayloads
) -> tuple[SnapshotManifest, SnapshotPayloads]:
    """Move a valid snapshot into the archive; its manifest and payloads for the lake.

    If the archive already holds that state (a forced re-fetch, or the state moved onto
    one already stored), the archive keeps its first copy and this fetch is set aside.
    """
    if archive.has_snapshot(fetched.snapshot_id):
        archive.set_aside_partial(fetched.fetch, {"reason": "state already archived"})
        manifest = archive.manifest(fetched.snapshot_id)
        return manifest, parse_archived(archive, manifest)
    manifest = fetched.fetch.commit_snapshot(
        last_update=fetched.state.last_update, next_update=fetched.state.next_update
    )
    return manifest, payloads


def land(lake_dir: Path, manifest: SnapshotManifest, payloads: SnapshotPayloads) -> dict[str, int]:
    """Normalize a snapshot into the Parquet lake; rows per table."""
    tables = parquet.snapshot_tables(manifest, payloads)
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


@dataclass(frozen=True)
class Steps:
    """The steps of a snapshot. The Prefect flow passes task-wrapped versions of the same
    functions, so one composition serves the scheduled flow and the fast demo backfill."""

    read_state: Callable[..., StateStatus]
    fetch_windows: Callable[..., FetchedSnapshot]
    validate: Callable[..., SnapshotPayloads]
    commit: Callable[..., tuple[SnapshotManifest, SnapshotPayloads]]
    land: Callable[..., dict[str, int]]


def take_snapshot(
    client: HyperTrackerClient,
    archive: RawArchive,
    settings: Settings,
    steps: Steps,
    log: logging.Logger | logging.LoggerAdapter,
    *,
    force: bool = False,
) -> SnapshotOutcome:
    """State -> windows -> validate -> archive -> lake, or "no new state"."""
    started = time.perf_counter()
    state = steps.read_state(client)
    snapshot_id = snapshot_id_for(state.last_update)
    if archive.has_snapshot(snapshot_id) and not force:
        log.info("no new state: %s is already stored; nothing to do", snapshot_id)
        return SnapshotOutcome(snapshot_id, stored=False)
    fetched = steps.fetch_windows(client, archive, state, settings)
    payloads = steps.validate(archive, fetched)
    manifest, payloads = steps.commit(archive, fetched, payloads)
    rows = steps.land(settings.lake_dir, manifest, payloads)
    return SnapshotOutcome(
        manifest.snapshot_id,
        stored=True,
        attempts=fetched.attempts,
        bytes_fetched=sum(r.body_bytes for r in manifest.bodies.values()),
        rows=rows,
        seconds=time.perf_counter() - started,
    )


def plain_steps(log: logging.Logger | logging.LoggerAdapter) -> Steps:
    """The steps as plain calls (no Prefect task per step): for backfills and the demo."""
    return Steps(
        read_state=lambda client: client.status(),
        fetch_windows=lambda client, archive, state, settings: fetch_windows(
            client,
            archive,
            state,
            settings.windows,
            max_refetches=settings.state_change_refetches,
            log=log,
        ),
        validate=lambda archive, fetched: validate(archive, fetched, log),
        commit=commit,
        land=land,
    )
