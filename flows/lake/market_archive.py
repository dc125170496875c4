"""The market archive: each snapshot's ``metaAndAssetCtxs`` bodies, verbatim, and a manifest.

Beside the heatmap archive, one folder per snapshot whose market was captured::

    archive/market/date=YYYY-MM-DD/snapshot_id=<id>/dex-<name>.json.zst   bodies that passed
    archive/market/date=YYYY-MM-DD/snapshot_id=<id>/manifest.json          every dex asked
    quarantine/<fetch_id>-dex-<name>/                                       a body that failed

Bodies are stored the moment they arrive in ``archive/_incoming/<fetch_id>/`` (so a run
killed mid-capture leaves them where the next run sets interrupted fetches aside); the
folder moves into place in one rename with its manifest. The manifest records every dex
the snapshot needed, fetched or not ('ok', 'failed', 'quarantined', with the error), so the
lake's ``market_fetches`` rebuilds from the archive alone, gaps included. A snapshot with no
market folder was never captured: its gap is 'not_captured', and no price is fetched later.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

from flows import atomic
from flows.lake.archive import MANIFEST, IncomingFetch, RawArchive, day_of, read_zst

FORMAT_VERSION = 1
_SAFE_DEX = re.compile(r"[A-Za-z0-9_-]{1,32}")


def dex_file_stem(dex: str) -> str:
    """A dex's body file name: ``dex-main``, ``dex-xyz``; names from outside that are not
    plain words are hashed, never used as a path as they are."""
    if dex == "":
        return "dex-main"
    if _SAFE_DEX.fullmatch(dex) and dex != "main":
        return f"dex-{dex}"
    return "dex-" + hashlib.sha256(dex.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class MarketFetchRecord:
    """What the manifest says about one dex: the answer stored, or why there is none."""

    dex: str
    status: str  # ok | failed | quarantined
    url: str
    file: str | None = None
    http_status: int | None = None
    fetched_at: str | None = None
    body_bytes: int | None = None
    body_sha256: str | None = None
    stored_bytes: int | None = None
    elapsed_s: float | None = None
    weight: int | None = None
    error: str | None = None


@dataclass
class MarketManifest:
    """The manifest of one snapshot's market capture."""

    snapshot_id: str
    last_update: str
    fetch_id: str
    archived_at: str
    fetches: list[MarketFetchRecord] = field(default_factory=list)
    format_version: int = FORMAT_VERSION

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), indent=2, sort_keys=True).encode()

    @classmethod
    def from_json(cls, data: bytes) -> MarketManifest:
        raw = json.loads(data)
        raw["fetches"] = [MarketFetchRecord(**f) for f in raw["fetches"]]
        return cls(**raw)


class MarketArchive:
    """``archive/market/``: commit a snapshot's capture, read it back checked."""

    def __init__(self, raw: RawArchive) -> None:
        self.raw = raw
        self.root = raw.root / "market"

    def folder(self, snapshot_id: str) -> Path:
        return self.root / f"date={day_of(snapshot_id)}" / f"snapshot_id={snapshot_id}"

    def has(self, snapshot_id: str) -> bool:
        return (self.folder(snapshot_id) / MANIFEST).exists()

    def manifest(self, snapshot_id: str) -> MarketManifest | None:
        path = self.folder(snapshot_id) / MANIFEST
        return MarketManifest.from_json(path.read_bytes()) if path.exists() else None

    def begin(self) -> IncomingFetch:
        return self.raw.begin()

    def commit(self, fetch: IncomingFetch, manifest: MarketManifest) -> MarketManifest:
        """Write the manifest and move the capture into place in one rename."""
        atomic.write_bytes(fetch.path / MANIFEST, manifest.to_json())
        atomic.rename_dir(fetch.path, self.folder(manifest.snapshot_id))
        return manifest

    def read_body(self, manifest: MarketManifest, record: MarketFetchRecord) -> bytes:
        """A stored body, checked against the sha256 its manifest recorded."""
        assert record.file is not None
        body = read_zst(self.folder(manifest.snapshot_id) / record.file)
        if hashlib.sha256(body).hexdigest() != record.body_sha256:
            raise ValueError(
                f"archive corrupt: market {manifest.snapshot_id}/{record.file} does not match "
                "the sha256 in its manifest; restore it from a backup before rebuilding"
            )
        return body
