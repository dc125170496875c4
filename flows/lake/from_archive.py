"""Landing from the archive: the lake again, whole (a rebuild) or where it falls short.

Everything downstream of the archive derives from it. A run that was killed, or failed,
between committing a snapshot to the archive and landing it in the lake leaves a snapshot
the lake lacks; every run first lands those (:func:`land_missing`), so the next run
completes what an earlier one began, whether or not the state has changed since.

A snapshot lands with its market (flows/market.py): the rows its market archive holds, or
its 'not_captured' gap. Snapshots landed before the market existed, or whose market files
were lost, get theirs from the archive too (:func:`land_missing_markets`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC

import pyarrow.parquet as pq

from flows import market, snapshot
from flows.hypertracker.errors import PayloadError
from flows.hypertracker.payload import parse_segments
from flows.lake import parquet
from flows.lake.archive import RawArchive, SnapshotManifest, parse_iso, read_zst, snapshot_id_for
from flows.lake.tables import MARKET_TABLES
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
            rows = {m.snapshot_id: _with_archived_market(archive, m, rows[m.snapshot_id])
                    for m in batch}  # fmt: skip
            landed = [
                pool.submit(snapshot.land, settings.lake_dir, m, rows[m.snapshot_id]) for m in batch
            ]
            for future in landed:
                future.result()
            done += len(batch)
            if progress:
                progress(done)
    return done


def _with_archived_market(
    archive: RawArchive, manifest: SnapshotManifest, rows: snapshot.SnapshotRows
) -> snapshot.SnapshotRows:
    tables = market.archived_market_rows(
        archive, manifest.snapshot_id, manifest.last_update_dt, market.coins_of(rows)
    )
    return snapshot.SnapshotRows({**rows, **tables})


def land_missing_markets(settings: Settings) -> list[str]:
    """Write the market files of landed snapshots that lack them; return their ids.

    From the market archive, or as a 'not_captured' gap: never with a price fetched now.
    """
    lake = settings.lake_dir
    landed = {p.stem: p for p in (lake / "snapshots").glob("date=*/*.parquet")}
    have = {p.stem for p in (lake / "market_fetches").glob("date=*/*.parquet")}
    have &= {p.stem for p in (lake / "market_contexts").glob("date=*/*.parquet")}
    missing = sorted(set(landed) - have)
    archive = archive_for(settings)
    for sid in missing:
        coins_file = parquet.lake_path(lake, "heatmap_coins", sid)
        coins = pq.read_table(coins_file, columns=["coin"]).column("coin").unique().to_pylist()
        last_update = pq.read_table(landed[sid], columns=["last_update"]).column(0)[0].as_py()
        assert snapshot_id_for(last_update.replace(tzinfo=UTC)) == sid
        tables = market.archived_market_rows(archive, sid, last_update.replace(tzinfo=UTC), coins)
        for table in MARKET_TABLES:
            path = parquet.lake_path(lake, table, sid)
            if not path.exists():
                parquet.write_table(path, tables[table])
    if missing:
        log.warning(
            "%d landed snapshot(s) had no market rows (landed before the market was captured, "
            "or their files were lost): written from the market archive or as recorded gaps",
            len(missing),
        )
    return missing


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
    land_missing_markets(settings)
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
    land_missing_markets(settings)
    from flows.price_history import land_unlanded  # the price history's own archive

    land_unlanded(settings, archive)
    return total
