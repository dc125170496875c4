"""The raw archive: every API response body, byte for byte, before anything else touches it.

HyperTracker keeps no heatmap history, so these bytes are the one asset that cannot be
rebuilt. The layout (``data/README.md`` shows it whole)::

    archive/_incoming/<fetch_id>/<window>.json.zst     bodies as they arrive
    archive/date=YYYY-MM-DD/snapshot_id=<id>/          a whole snapshot: bodies + manifest.json
    archive/_partial/<fetch_id>/                       bodies of a fetch the state moved under
    archive/segments/date=YYYY-MM-DD/<fetch_id>/       /segments bodies + manifest.json
    quarantine/<fetch_id>/                             bodies that failed validation + note.json

A body is written (zstd, flushed, renamed into place) the moment it is received. Only when
all windows of one state are in and valid does the folder move, in one rename, into its
dated place with its manifest; so a snapshot folder in the archive is always complete, and
everything downstream can be rebuilt from those folders alone.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa

from flows import atomic

MANIFEST = "manifest.json"
NOTE = "note.json"
FORMAT_VERSION = 1


def utc_now() -> datetime:
    return datetime.now(UTC)


def iso(ts: datetime | None) -> str | None:
    """ISO-8601 UTC with milliseconds and Z, the API's own format."""
    if ts is None:
        return None
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts.microsecond // 1000:03d}Z"


def parse_iso(text: str | None) -> datetime | None:
    if text is None:
        return None
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


def snapshot_id_for(last_update: datetime) -> str:
    """The snapshot's id: its state time as ``YYYYMMDDTHHMMSSmmmZ`` (sorts as time)."""
    ts = last_update.astimezone(UTC)
    return ts.strftime("%Y%m%dT%H%M%S") + f"{ts.microsecond // 1000:03d}Z"


def day_of(snapshot_id: str) -> str:
    """The UTC date (``YYYY-MM-DD``) of a snapshot id: the partition folders' key."""
    return f"{snapshot_id[0:4]}-{snapshot_id[4:6]}-{snapshot_id[6:8]}"


def new_fetch_id(now: datetime | None = None) -> str:
    """A unique name for one fetch attempt (wall-clock based: it names work, not data)."""
    now = now or utc_now()
    return now.strftime("%Y%m%dT%H%M%S%fZ")


def write_zst(path: Path, body: bytes) -> None:
    """Write ``body`` as a standard zstd frame (``zstd -d`` reads it back) atomically."""

    def _write(tmp: Path) -> None:
        with pa.output_stream(str(tmp), compression="zstd") as out:
            out.write(body)

    atomic.write_with(path, _write)


def read_zst(path: Path) -> bytes:
    with pa.input_stream(str(path), compression="zstd") as src:
        return src.read()


@dataclass(frozen=True)
class BodyRecord:
    """What the manifest says about one stored response body."""

    file: str
    window: str | None
    url: str
    http_status: int
    fetched_at: str
    body_bytes: int
    body_sha256: str
    stored_bytes: int
    elapsed_s: float


@dataclass
class SnapshotManifest:
    """The manifest of one archived snapshot: enough to rebuild it downstream."""

    snapshot_id: str
    last_update: str
    next_update: str | None
    fetch_id: str
    archived_at: str
    bodies: dict[str, BodyRecord] = field(default_factory=dict)
    format_version: int = FORMAT_VERSION

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), indent=2, sort_keys=True).encode()

    @classmethod
    def from_json(cls, data: bytes) -> SnapshotManifest:
        raw = json.loads(data)
        raw["bodies"] = {k: BodyRecord(**v) for k, v in raw["bodies"].items()}
        return cls(**raw)

    @property
    def last_update_dt(self) -> datetime:
        ts = parse_iso(self.last_update)
        assert ts is not None
        return ts


class IncomingFetch:
    """One fetch attempt's folder under ``_incoming``: bodies land here as they arrive."""

    def __init__(self, archive: RawArchive, fetch_id: str) -> None:
        self.archive = archive
        self.fetch_id = fetch_id
        self.path = archive.incoming_dir / fetch_id
        self.path.mkdir(parents=True, exist_ok=False)
        self.records: dict[str, BodyRecord] = {}

    def store(
        self,
        *,
        name: str,
        window: str | None,
        url: str,
        http_status: int,
        body: bytes,
        fetched_at: datetime,
        elapsed_s: float,
    ) -> BodyRecord:
        """Store one body verbatim, now, before it is parsed or checked."""
        file = f"{name}.json.zst"
        target = self.path / file
        write_zst(target, body)
        record = BodyRecord(
            file=file,
            window=window,
            url=url,
            http_status=http_status,
            fetched_at=iso(fetched_at) or "",
            body_bytes=len(body),
            body_sha256=hashlib.sha256(body).hexdigest(),
            stored_bytes=target.stat().st_size,
            elapsed_s=round(elapsed_s, 4),
        )
        self.records[name] = record
        return record

    def body_paths(self) -> dict[str, Path]:
        """Where each body stored so far lies, by name (window)."""
        return {name: self.path / record.file for name, record in self.records.items()}

    def keep(self, fetched: Any) -> BodyRecord:
        """Store a client response (``hypertracker.client.Fetched``) under its window."""
        return self.store(
            name=fetched.window or fetched.endpoint,
            window=fetched.window,
            url=fetched.url,
            http_status=fetched.status,
            body=fetched.body,
            fetched_at=fetched.fetched_at,
            elapsed_s=fetched.elapsed_s,
        )

    def commit_snapshot(
        self, *, last_update: datetime, next_update: datetime | None
    ) -> SnapshotManifest:
        """Write the manifest and move the whole folder into the archive in one rename."""
        manifest = SnapshotManifest(
            snapshot_id=snapshot_id_for(last_update),
            last_update=iso(last_update) or "",
            next_update=iso(next_update),
            fetch_id=self.fetch_id,
            archived_at=iso(utc_now()) or "",
            bodies=dict(self.records),
        )
        atomic.write_bytes(self.path / MANIFEST, manifest.to_json())
        atomic.rename_dir(self.path, self.archive.snapshot_dir(manifest.snapshot_id))
        return manifest

    def commit_segments(self) -> Path:
        """Move a /segments fetch into ``segments/date=…/<fetch_id>/`` with its manifest."""
        record = self.records["segments"]
        atomic.write_bytes(self.path / MANIFEST, json.dumps(asdict(record), indent=2).encode())
        day = record.fetched_at[:10]
        target = self.archive.root / "segments" / f"date={day}" / self.fetch_id
        atomic.rename_dir(self.path, target)
        return target

    def set_aside(self, bucket: Path, note: dict[str, object]) -> Path:
        """Move this fetch, bytes untouched, into ``bucket`` with a note that says why."""
        note = {"fetch_id": self.fetch_id, "noted_at": iso(utc_now()), **note}
        note["bodies"] = {k: asdict(v) for k, v in self.records.items()}
        atomic.write_bytes(self.path / NOTE, json.dumps(note, indent=2, default=str).encode())
        target = bucket / self.fetch_id
        atomic.rename_dir(self.path, target)
        return target


class RawArchive:
    """The archive folder: store bodies first, commit whole snapshots, set aside the rest."""

    def __init__(self, root: Path, quarantine_dir: Path) -> None:
        self.root = root
        self.incoming_dir = root / "_incoming"
        self.partial_dir = root / "_partial"
        self.quarantine_dir = quarantine_dir

    def begin(self, fetch_id: str | None = None) -> IncomingFetch:
        return IncomingFetch(self, fetch_id or new_fetch_id())

    def snapshot_dir(self, snapshot_id: str) -> Path:
        return self.root / f"date={day_of(snapshot_id)}" / f"snapshot_id={snapshot_id}"

    def has_snapshot(self, snapshot_id: str) -> bool:
        return (self.snapshot_dir(snapshot_id) / MANIFEST).exists()

    def manifest(self, snapshot_id: str) -> SnapshotManifest:
        return SnapshotManifest.from_json((self.snapshot_dir(snapshot_id) / MANIFEST).read_bytes())

    def quarantine(self, fetch: IncomingFetch, note: dict[str, object]) -> Path:
        return fetch.set_aside(self.quarantine_dir, note)

    def quarantine_body(self, fetch: IncomingFetch, name: str, note: dict[str, object]) -> Path:
        """Move one stored body out of a fetch into ``quarantine/<fetch_id>-<name>/`` (a
        rename: the exact bytes), with a note; the rest of the fetch goes on."""
        record = fetch.records.pop(name)
        target = self.quarantine_dir / f"{fetch.fetch_id}-{name}"
        target.mkdir(parents=True, exist_ok=True)
        os.replace(fetch.path / record.file, target / record.file)
        note = {"fetch_id": fetch.fetch_id, "noted_at": iso(utc_now()), **note,
                "body": asdict(record)}  # fmt: skip
        atomic.write_bytes(target / NOTE, json.dumps(note, indent=2, default=str).encode())
        atomic.fsync_dir(target.parent)
        return target

    def set_aside_partial(self, fetch: IncomingFetch, note: dict[str, object]) -> Path:
        return fetch.set_aside(self.partial_dir, note)

    def quarantine_folder(self, folder: Path, note: dict[str, object]) -> Path:
        """Move an archived folder, bytes untouched, into the quarantine with a note."""
        note = {"folder": str(folder), "noted_at": iso(utc_now()), **note}
        atomic.write_bytes(folder / NOTE, json.dumps(note, indent=2, default=str).encode())
        target = self.quarantine_dir / f"archived-{folder.name}"
        atomic.rename_dir(folder, target)
        return target

    def set_aside_interrupted(self) -> list[Path]:
        """Move fetches a stopped process left in ``_incoming`` to ``_partial``, with a note.

        Only safe while holding the run lock: a fetch of a running process lives there too.
        """
        moved = []
        for folder in sorted(self.incoming_dir.glob("*")) if self.incoming_dir.is_dir() else []:
            if not folder.is_dir():
                continue
            note = {
                "fetch_id": folder.name,
                "noted_at": iso(utc_now()),
                "reason": "the process that fetched it ended before the fetch was complete",
                "files": sorted(p.name for p in folder.iterdir()),
            }
            atomic.write_bytes(folder / NOTE, json.dumps(note, indent=2).encode())
            target = self.partial_dir / folder.name
            atomic.rename_dir(folder, target)
            moved.append(target)
        return moved

    def snapshot_ids(self) -> list[str]:
        """The ids of every archived snapshot (those with a manifest), oldest first."""
        return sorted(
            p.parent.name.removeprefix("snapshot_id=")
            for p in self.root.glob(f"date=*/snapshot_id=*/{MANIFEST}")
        )

    def manifests(self) -> Iterator[SnapshotManifest]:
        """Every archived snapshot's manifest, oldest first."""
        for path in sorted(self.root.glob(f"date=*/snapshot_id=*/{MANIFEST}")):
            yield SnapshotManifest.from_json(path.read_bytes())

    def body_paths(self, manifest: SnapshotManifest) -> dict[str, Path]:
        """Where each archived body of a snapshot lies, by name (window)."""
        folder = self.snapshot_dir(manifest.snapshot_id)
        return {name: folder / record.file for name, record in manifest.bodies.items()}

    def read_body(self, manifest: SnapshotManifest, name: str) -> bytes:
        """A stored body, checked against the sha256 its manifest recorded."""
        record = manifest.bodies[name]
        body = read_zst(self.snapshot_dir(manifest.snapshot_id) / record.file)
        if hashlib.sha256(body).hexdigest() != record.body_sha256:
            raise ValueError(
                f"archive corrupt: {manifest.snapshot_id}/{record.file} does not match the "
                "sha256 in its manifest; restore it from a backup before rebuilding"
            )
        return body

    def segment_fetches(self) -> Iterator[tuple[Path, BodyRecord]]:
        """Every archived /segments fetch, oldest first."""
        for path in sorted((self.root / "segments").glob(f"date=*/*/{MANIFEST}")):
            yield path.parent, BodyRecord(**json.loads(path.read_bytes()))

    def latest_segments_fetch(self) -> datetime | None:
        newest = None
        for _, record in self.segment_fetches():
            newest = record.fetched_at
        return parse_iso(newest)
