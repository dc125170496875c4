"""Landing from the archive: the lake again, whole (a rebuild) or where it falls short.

Everything downstream of the archive derives from it. A run that was killed, or failed,
between committing a snapshot to the archive and landing it in the lake leaves a snapshot
the lake lacks; every run first lands those (:func:`land_missing`), so the next run
completes what an earlier one began, whether or not the state has changed since.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

from flows import snapshot
from flows.hypertracker.errors import PayloadError
from flows.hypertracker.payload import parse_segments
from flows.lake import parquet
from flows.lake.archive import RawArchive, SnapshotManifest, parse_iso, read_zst
from flows.settings import Settings

log = logging.getLogger(__name__)

# Snapshots typed per DuckDB pass: enough to amortise a pass's fixed cost, few enough that a
# batch's rows (~15k per snapshot) stay small.
BATCH = 24


def archive_for(settings: Settings) -> RawArchive:
    return RawArchive(settings.archive_dir, settings.quarantine_dir)


def missing_from_lake(settings: Settings) -> list[SnapshotManifest]:
    """The archived snapshots the lake does not hold, oldest first.

    Compared by name (the archive's snapshot folders against the lake's snapshots files),
    so only the manifests of missing snapshots are read.
    """
    archive = archive_for(settings)
    landed = {p.stem for p in (settings.lake_dir / "snapshots").glob("date=*/*.parquet")}
    return [archive.manifest(sid) for sid in archive.snapshot_ids() if sid not in landed]


def land(
    settings: Settings,
    manifests: Sequence[SnapshotManifest],
    *,
    verify: bool = True,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Land archived snapshots in the lake, in batches; return how many.

    With ``verify`` each batch's bodies are checked against the sha256 their manifest
    recorded, in a thread beside DuckDB's reading, before anything of the batch lands. A
    batch's files are written by two threads (pyarrow lets go of the GIL while it encodes).
    Landing is deterministic and skips files already in place, so an interrupted landing
    resumes where it stopped.
    """
    archive = archive_for(settings)
    done = 0
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="land") as pool:
        for start in range(0, len(manifests), BATCH):
            batch = manifests[start : start + BATCH]
            verified = pool.submit(_verify_bodies, archive, batch) if verify else None
            rows = snapshot.archived_rows(archive, batch)
            if verified is not None:
                verified.result()  # raises if a body does not match its manifest
            landed = [
                pool.submit(snapshot.land, settings.lake_dir, m, rows[m.snapshot_id]) for m in batch
            ]
            for future in landed:
                future.result()
            done += len(batch)
            if progress:
                progress(done)
    return done


def _verify_bodies(archive: RawArchive, manifests: Sequence[SnapshotManifest]) -> None:
    for manifest in manifests:
        for window in manifest.bodies:
            archive.read_body(manifest, window)  # checks the sha256; the bytes are dropped


def land_missing(settings: Settings) -> list[str]:
    """Land every archived snapshot the lake lacks; return their ids."""
    missing = missing_from_lake(settings)
    if missing:
        log.warning(
            "%d archived snapshot(s) had not reached the lake (an earlier run stopped after "
            "archiving them): landing them now: %s",
            len(missing),
            ", ".join(m.snapshot_id for m in missing[:5]) + (" ..." if len(missing) > 5 else ""),
        )
        land(settings, missing)
    return [m.snapshot_id for m in missing]


def land_segments(settings: Settings) -> int:
    """Land every archived ``/segments`` fetch the lake lacks; return how many.

    A fetch whose body no longer reads as a ladder is moved to the quarantine with a note
    rather than failing the rebuild: the ladder is context, and the other fetches stand.
    """
    archive = archive_for(settings)
    landed = 0
    for folder, record in archive.segment_fetches():
        fetched_at = parse_iso(record.fetched_at)
        assert fetched_at is not None
        body = read_zst(folder / record.file)
        try:
            parse_segments(body, record.url)
        except PayloadError as exc:
            where = archive.quarantine_folder(
                folder,
                {
                    "reason": "archived /segments body does not read as a ladder",
                    "errors": list(exc.reasons),
                },
            )
            log.warning("archived /segments fetch %s quarantined: %s", folder.name, where)
            continue
        parquet.land_segments(settings.lake_dir, body, fetched_at)
        landed += 1
    return landed


def rebuild_lake(
    settings: Settings, *, progress: Callable[[int, int], None] | None = None, verify: bool = True
) -> int:
    """Land every archived snapshot and ladder fetch the lake lacks; return the snapshots.

    Snapshots already in the lake are skipped, so an interrupted rebuild resumes where it
    stopped (``ht rebuild --fresh-lake`` deletes the lake first).
    """
    archive = archive_for(settings)
    total = len(archive.snapshot_ids())
    missing = missing_from_lake(settings)
    done = total - len(missing)
    land(
        settings,
        missing,
        verify=verify,
        progress=(lambda n: progress(done + n, total)) if progress else None,
    )
    land_segments(settings)
    return total
