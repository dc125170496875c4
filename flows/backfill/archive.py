"""The history archive: every history page verbatim, and a checkpoint by cursor per series.

Beside the live archive (flows/lake/archive.py), with the same atomic zstd writes::

    archive/history/position_metrics/coin=<quoted>/window=<w>/segment=<id>/
        <page_no:05d>.json.zst     the body, verbatim
        <page_no:05d>.meta.json    url, fetched_at, status, sha256, cursor, next_cursor, attempts
        checkpoint.json            {"start", "end", "limit", "next_cursor", "pages", "done"}
    archive/history/exports/date=YYYY-MM-DD/<fetch_id>/<quoted coin>/<window>.json.zst (+ meta)
    quarantine/history/<fetch_id>/...   pages that failed to parse, with note.json

A page is stored (body, then meta) before its checkpoint moves on, so a kill at any moment
leaves either the old checkpoint (the page is asked for again with the same cursor and
overwritten: same query, same content) or the new one (the page is never asked for again).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from urllib.parse import quote, unquote

from flows import atomic
from flows.hypertracker.client import Fetched
from flows.lake.archive import iso, read_zst, utc_now, write_zst

CHECKPOINT = "checkpoint.json"
EXPORT_MANIFEST = "manifest.json"


def _coin_dir(coin: str) -> str:
    return quote(coin, safe="")


def _meta(fetched: Fetched, **extra: object) -> bytes:
    meta = {
        "url": fetched.url,
        "fetched_at": iso(fetched.fetched_at),
        "status": fetched.status,
        "sha256": hashlib.sha256(fetched.body).hexdigest(),
        "body_bytes": len(fetched.body),
        "attempts": fetched.attempts,
        **extra,
    }
    return json.dumps(meta, indent=2, sort_keys=True).encode()


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """Where a series stands; ``start``/``end``/``limit`` pin the query its cursor belongs to."""

    start: str
    end: str
    limit: int
    next_cursor: str | None = None
    pages: int = 0
    done: bool = False

    def same_query(self, other: Checkpoint) -> bool:
        return (self.start, self.end, self.limit) == (other.start, other.end, other.limit)


class HistoryArchive:
    """``archive/history`` and ``quarantine/history`` of one data folder."""

    def __init__(self, archive_dir: Path, quarantine_dir: Path) -> None:
        self.root = archive_dir / "history"
        self.quarantine_root = quarantine_dir / "history"

    # --- position-metrics series ---------------------------------------------------------

    def series_dir(self, coin: str, window: str, segment_id: int) -> Path:
        return (
            self.root
            / "position_metrics"
            / f"coin={_coin_dir(coin)}"
            / f"window={window}"
            / f"segment={int(segment_id)}"
        )

    def checkpoint(self, coin: str, window: str, segment_id: int) -> Checkpoint | None:
        path = self.series_dir(coin, window, segment_id) / CHECKPOINT
        if not path.exists():
            return None
        return Checkpoint(**json.loads(path.read_bytes()))

    def resume_point(
        self, coin: str, window: str, segment_id: int, query: Checkpoint
    ) -> Checkpoint:
        """The series' checkpoint when it belongs to ``query``; else a fresh start.

        A cursor is only valid for the query that produced it: other parameters start the
        series afresh (its old pages are removed so they are never landed with the new).
        """
        held = self.checkpoint(coin, window, segment_id)
        if held is not None and held.same_query(query):
            return held
        folder = self.series_dir(coin, window, segment_id)
        for old in folder.glob("*.json*"):
            old.unlink()
        return query

    def store_page(
        self,
        coin: str,
        window: str,
        segment_id: int,
        at: Checkpoint,
        fetched: Fetched,
        *,
        next_cursor: str | None,
    ) -> Checkpoint:
        """Store the page asked for from ``at``; return the checkpoint after it (written)."""
        folder = self.series_dir(coin, window, segment_id)
        page_no = at.pages + 1
        write_zst(folder / f"{page_no:05d}.json.zst", fetched.body)
        atomic.write_bytes(
            folder / f"{page_no:05d}.meta.json",
            _meta(fetched, cursor=at.next_cursor, next_cursor=next_cursor),
        )
        after = Checkpoint(
            start=at.start,
            end=at.end,
            limit=at.limit,
            next_cursor=next_cursor,
            pages=page_no,
            done=next_cursor is None,
        )
        atomic.write_bytes(
            folder / CHECKPOINT, json.dumps(asdict(after), indent=2, sort_keys=True).encode()
        )
        return after

    def series_pages(self, coin: str, window: str, segment_id: int) -> Iterator[Fetched]:
        """The stored pages of a series up to its checkpoint, oldest request first."""
        folder = self.series_dir(coin, window, segment_id)
        held = self.checkpoint(coin, window, segment_id)
        for page_no in range(1, (held.pages if held else 0) + 1):
            yield _stored(folder / f"{page_no:05d}", window, "position_metrics")

    def series(self) -> Iterator[tuple[str, str, int]]:
        """(coin, window, segment) of every finished series in the archive."""
        for cp in sorted(
            (self.root / "position_metrics").glob(f"coin=*/window=*/segment=*/{CHECKPOINT}")
        ):
            if not json.loads(cp.read_bytes()).get("done"):
                continue
            seg, win, coin = cp.parent, cp.parent.parent, cp.parent.parent.parent
            yield (
                unquote(coin.name.removeprefix("coin=")),
                win.name.removeprefix("window="),
                int(seg.name.removeprefix("segment=")),
            )

    # --- exports -----------------------------------------------------------------------------

    def export_dir(self, fetch_id: str) -> Path:
        return (
            self.root
            / "exports"
            / f"date={fetch_id[:4]}-{fetch_id[4:6]}-{fetch_id[6:8]}"
            / fetch_id
        )

    def has_export(self, fetch_id: str, coin: str, window: str) -> bool:
        return (self.export_dir(fetch_id) / _coin_dir(coin) / f"{window}.meta.json").exists()

    def store_export(self, fetch_id: str, coin: str, window: str, fetched: Fetched) -> None:
        folder = self.export_dir(fetch_id) / _coin_dir(coin)
        write_zst(folder / f"{window}.json.zst", fetched.body)
        atomic.write_bytes(folder / f"{window}.meta.json", _meta(fetched, coin=coin, window=window))

    def pending_export_fetch(self) -> str | None:
        """The newest export fetch left without its manifest (a stopped quick backfill)."""
        folders = sorted((self.root / "exports").glob("date=*/*"), key=lambda p: p.name)
        if folders and not (folders[-1] / EXPORT_MANIFEST).exists():
            return folders[-1].name
        return None

    def complete_export(self, fetch_id: str, asked: list[tuple[str, str]]) -> None:
        """The manifest: the fetch is complete, every (coin, window) asked for is in."""
        manifest = {"fetch_id": fetch_id, "completed_at": iso(utc_now()), "series": asked}
        atomic.write_bytes(
            self.export_dir(fetch_id) / EXPORT_MANIFEST, json.dumps(manifest, indent=2).encode()
        )

    def exports(self) -> Iterator[tuple[str, str, Fetched]]:
        """(coin, window, body) of every export of every complete fetch, oldest fetch first."""
        for manifest in sorted((self.root / "exports").glob(f"date=*/*/{EXPORT_MANIFEST}")):
            folder = manifest.parent
            for coin, window in json.loads(manifest.read_bytes())["series"]:
                base = folder / _coin_dir(coin) / window
                yield coin, window, _stored(base, window, "segment_metrics_export")

    # --- quarantine --------------------------------------------------------------------------

    def quarantine(self, fetch_id: str, name: str, fetched: Fetched, reasons: list[str]) -> Path:
        """Set a page that failed to parse aside, verbatim, with a note saying why."""
        folder = self.quarantine_root / fetch_id
        write_zst(folder / f"{name}.json.zst", fetched.body)
        note = {"url": fetched.url, "noted_at": iso(utc_now()), "reasons": reasons[:50]}
        atomic.write_bytes(folder / f"{name}.note.json", json.dumps(note, indent=2).encode())
        return folder


def _stored(base: Path, window: str, endpoint: str) -> Fetched:
    meta = json.loads(base.with_name(base.name + ".meta.json").read_bytes())
    return Fetched(
        endpoint=endpoint,
        window=window,
        url=meta["url"],
        status=meta["status"],
        body=read_zst(base.with_name(base.name + ".json.zst")),
        fetched_at=datetime.fromisoformat(meta["fetched_at"].replace("Z", "+00:00")),
        elapsed_s=0.0,
        attempts=meta.get("attempts", 1),
    )
