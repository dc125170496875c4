"""History, fast: days of simulated snapshots written straight into the production archive.

Taking 30 days of states through HTTP would take most of the time budget, so the bodies
come from :class:`Market` (the same bytes the simulated API would send) and go through the
production archive code (``RawArchive.begin().store(...)`` then ``commit_snapshot``), as a
``*/30`` schedule would have taken them: at every tick, the state current at that time.
The lake and the warehouse are then built from this archive by the production rebuild
(section "rebuild"), which also validates every body again.

Two worker processes split the ticks into contiguous halves (the market's latent state is
computed step by step, so each worker walks its own stretch).
"""

from __future__ import annotations

import multiprocessing
import shutil
import time
from concurrent.futures import ProcessPoolExecutor
from datetime import datetime, timedelta
from pathlib import Path

from bench.common import ARCHIVED_BASE_URL, CADENCE, MARKET_START, SEED, WINDOWS, say


def ticks(start: datetime, end: datetime, cadence: timedelta = CADENCE) -> list[datetime]:
    """Schedule ticks in ``[start, end)``."""
    out, t = [], start
    while t < end:
        out.append(t)
        t += cadence
    return out


def _archive_ticks(data_dir: str, chunk: list[datetime], worker: int) -> int:
    """Archive the state current at each tick (skipping a state already taken)."""
    from flows.lake.archive import RawArchive, snapshot_id_for
    from simulator.market import Market

    root = Path(data_dir)
    archive = RawArchive(root / "archive", root / "quarantine")
    market = Market(SEED, start=MARKET_START)
    taken, previous = 0, -1
    for i, tick in enumerate(chunk):
        k = market.state_index_at(tick)
        last_update = market.state_time(k)
        if k == previous or archive.has_snapshot(snapshot_id_for(last_update)):
            continue
        previous = k
        fetch = archive.begin(f"{tick:%Y%m%dT%H%M%S}000000Z-w{worker}-{i}")
        for j, window in enumerate(WINDOWS):
            fetch.store(
                name=window,
                window=window,
                url=f"{ARCHIVED_BASE_URL}/positions/heatmap?openedWithin={window}",
                http_status=200,
                body=market.heatmap_json(k, window),
                # The four windows are fetched together a moment after the tick.
                fetched_at=tick + timedelta(seconds=1 + 0.25 * j),
                elapsed_s=0.25,
            )
        fetch.commit_snapshot(
            last_update=last_update,
            next_update=last_update + timedelta(minutes=15),  # what /state/status says
        )
        taken += 1
    return taken


def _archive_segments(data_dir: Path, at: datetime) -> None:
    """One /segments fetch, as the first run of a schedule makes it."""
    import orjson

    from flows.lake.archive import RawArchive
    from simulator.market import Market

    archive = RawArchive(data_dir / "archive", data_dir / "quarantine")
    fetch = archive.begin(f"{at:%Y%m%dT%H%M%S}000000Z-segments")
    fetch.store(
        name="segments",
        window=None,
        url=f"{ARCHIVED_BASE_URL}/segments",
        http_status=200,
        body=orjson.dumps(Market.segments()),
        fetched_at=at,
        elapsed_s=0.05,
    )
    fetch.commit_segments()


def generate_archive(
    data_dir: Path, start: datetime, end: datetime, *, workers: int = 2
) -> dict[str, float]:
    """Archive every ``*/30`` tick's state in ``[start, end)``; counts and seconds."""
    started = time.perf_counter()
    all_ticks = ticks(start, end)
    _archive_segments(data_dir, start)
    size = -(-len(all_ticks) // workers)
    chunks = [all_ticks[i : i + size] for i in range(0, len(all_ticks), size)]
    say("history", f"{len(all_ticks)} ticks of {CADENCE} from {start:%Y-%m-%d %H:%M} UTC, "
        f"{len(chunks)} workers")  # fmt: skip
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=len(chunks), mp_context=ctx) as pool:
        futures = [
            pool.submit(_archive_ticks, str(data_dir), chunk, w) for w, chunk in enumerate(chunks)
        ]
        archive = data_dir / "archive"
        while not all(f.done() for f in futures):
            time.sleep(5)
            n = sum(1 for _ in archive.glob("date=*/snapshot_id=*/manifest.json"))
            rate = n / (time.perf_counter() - started)
            say("history", f"{n}/{len(all_ticks)} snapshots archived ({rate:.1f}/s)")
        taken = sum(f.result() for f in futures)
    seconds = time.perf_counter() - started
    say("history", f"{taken} snapshots archived in {seconds:.1f}s")
    return {"ticks": len(all_ticks), "snapshots": taken, "seconds": round(seconds, 2)}


def copy_tail(src: Path, dst: Path, since: datetime) -> int:
    """Copy the archive and lake of the snapshots from ``since`` on (the short history).

    The lake files are the rebuild's own, so the short history is the long one's last day,
    byte for byte; the cohort ladder comes along.
    """
    from flows.lake.archive import RawArchive, snapshot_id_for
    from flows.lake.parquet import lake_path
    from flows.lake.tables import SNAPSHOT_TABLES

    archive = RawArchive(src / "archive", src / "quarantine")
    first = snapshot_id_for(since)
    ids = [m.snapshot_id for m in archive.manifests() if m.snapshot_id >= first]
    for sid in ids:
        folder = archive.snapshot_dir(sid)
        shutil.copytree(folder, dst / folder.relative_to(src))
        for table in SNAPSHOT_TABLES:
            path = lake_path(src / "lake", table, sid)
            target = dst / path.relative_to(src)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target)
    shutil.copytree(src / "archive" / "segments", dst / "archive" / "segments")
    shutil.copytree(src / "lake" / "segments", dst / "lake" / "segments")
    return len(ids)
