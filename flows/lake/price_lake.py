"""Price history in the archive and the lake: candles and funding, fetched incrementally.

Each run that fetches price history keeps its answers verbatim, with a manifest, in one
folder (committed by one rename, like a snapshot)::

    archive/prices/date=YYYY-MM-DD/<fetch_id>/candles-0001.json.zst ...   answers that passed
    archive/prices/date=YYYY-MM-DD/<fetch_id>/manifest.json               every request made
    quarantine/<fetch_id>-<body>/                                         an answer that failed

and lands them as one Parquet file per table and UTC day::

    lake/candles/date=YYYY-MM-DD/day.parquet          by the day of open_time
    lake/funding_rates/date=YYYY-MM-DD/day.parquet    by the day of time
    lake/_landed/price_history.json                   the newest fetch folder landed

Why one file per day, rewritten: an hourly update adds ~30 rows a table, so a file per
fetch would make thousands of tiny files within months (slow to list, slow to scan). A day
file is read, merged with the new rows and renamed over the old one (atomic); a reader
holding the old file keeps reading it. The merge is a set union in a fixed order (coin,
time, fetched_at), so landing a fetch twice changes nothing, and landing every archived
fetch at once (``ht rebuild``) gives the same files as landing them one by one.

Only closed candles are landed (``close_time`` before the answer's ``fetched_at``, the
server's clock): an open candle's close is not final, and the snapshot's market carries the
price of the moment. A candle or funding row fetched twice (an overlap) keeps both rows;
staging keeps the newest ``fetched_at`` per (coin, time).
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from flows import atomic
from flows.hyperliquid.payload import parse_candles, parse_funding
from flows.lake.archive import MANIFEST, IncomingFetch, RawArchive, read_zst
from flows.lake.parquet import write_table
from flows.lake.tables import CANDLES, FUNDING_RATES

DAY_FILE = "day.parquet"
LEDGER = Path("_landed") / "price_history.json"
ORDER = {
    "candles": "coin, candle_interval, open_time, fetched_at",
    "funding_rates": "coin, time, fetched_at",
}
SCHEMAS = {"candles": CANDLES, "funding_rates": FUNDING_RATES}


@dataclass(frozen=True)
class PriceBody:
    """What the manifest says about one answer (or the request that got none kept)."""

    kind: str  # candles | funding
    coin: str
    request: dict[str, Any]
    status: str  # ok | quarantined
    url: str
    http_status: int
    fetched_at: str
    body_bytes: int
    body_sha256: str
    weight: int
    file: str | None = None
    error: str | None = None


@dataclass
class PriceManifest:
    fetch_id: str
    archived_at: str
    horizon: str  # the newest landed snapshot's lastUpdate: prices were asked up to it
    bodies: list[PriceBody] = field(default_factory=list)
    error: str | None = None  # why the fetch stopped early, if it did
    format_version: int = 1

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), indent=2, sort_keys=True).encode()

    @classmethod
    def from_json(cls, data: bytes) -> PriceManifest:
        raw = json.loads(data)
        raw["bodies"] = [PriceBody(**b) for b in raw["bodies"]]
        return cls(**raw)


class PriceArchive:
    """``archive/prices/``: one folder per fetch, listed in fetch order."""

    def __init__(self, raw: RawArchive) -> None:
        self.raw = raw
        self.root = raw.root / "prices"

    def begin(self) -> IncomingFetch:
        return self.raw.begin()

    def commit(self, fetch: IncomingFetch, manifest: PriceManifest) -> Path:
        atomic.write_bytes(fetch.path / MANIFEST, manifest.to_json())
        day = f"{manifest.fetch_id[:4]}-{manifest.fetch_id[4:6]}-{manifest.fetch_id[6:8]}"
        target = self.root / f"date={day}" / manifest.fetch_id
        atomic.rename_dir(fetch.path, target)
        return target

    def folders(self, after: str | None = None) -> list[Path]:
        """Committed fetch folders, oldest first; only those after fetch id ``after``."""
        found = sorted(self.root.glob(f"date=*/*/{MANIFEST}"), key=lambda p: p.parent.name)
        return [p.parent for p in found if after is None or p.parent.name > after]


def rows_of(folder: Path, manifest: PriceManifest) -> dict[str, list[dict[str, Any]]]:
    """The lake rows of one archived fetch: closed candles and funding rows."""
    out: dict[str, list[dict[str, Any]]] = {"candles": [], "funding_rates": []}
    for body in manifest.bodies:
        if body.status != "ok" or body.file is None:
            continue
        raw = read_zst(folder / body.file)
        fetched_at = datetime.fromisoformat(body.fetched_at.replace("Z", "+00:00"))
        fetched_ms = int(fetched_at.timestamp() * 1000)
        at = fetched_at.astimezone(UTC).replace(tzinfo=None)
        if body.kind == "candles":
            interval = body.request["req"]["interval"]
            for c in parse_candles(raw, body.coin, interval):
                if c["close_time"] < fetched_ms:  # closed when the server answered
                    out["candles"].append(
                        {
                            **c,
                            "open_time": _ts(c["open_time"]),
                            "close_time": _ts(c["close_time"]),
                            "fetched_at": at,
                        }
                    )
        else:
            for r in parse_funding(raw, body.coin):
                out["funding_rates"].append({**r, "time": _ts(r["time"]), "fetched_at": at})
    return out


def _ts(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC).replace(tzinfo=None)


def day_path(lake_dir: Path, table: str, day: str) -> Path:
    return lake_dir / table / f"date={day}" / DAY_FILE


def land_rows(lake_dir: Path, rows: dict[str, list[dict[str, Any]]]) -> dict[str, int]:
    """Merge rows into their day files (set union, fixed order); new rows per table."""
    added: dict[str, int] = {}
    for table, items in rows.items():
        key = "open_time" if table == "candles" else "time"
        by_day: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for row in items:
            by_day[row[key].strftime("%Y-%m-%d")].append(row)
        added[table] = 0
        for day, new in sorted(by_day.items()):
            added[table] += _merge_day(day_path(lake_dir, table, day), table, new)
    return added


def _merge_day(path: Path, table: str, new: list[dict[str, Any]]) -> int:
    """The day file's rows and ``new`` as a set, sorted by ``ORDER``; written if it grew.

    In Arrow, not DuckDB: a first history touches ~210 days per table, and a DuckDB
    connection and query per day cost ~40 ms of the ~50 each merge took (20 s for one coin).
    """
    schema = SCHEMAS[table]
    incoming = pa.Table.from_pylist(new, schema=schema)
    old = pq.read_table(path).cast(schema) if path.exists() else schema.empty_table()
    both = pa.concat_tables([old, incoming])
    distinct = both.group_by(schema.names, use_threads=False).aggregate([])
    # ORDER, then every other column: a total order, whatever order the rows came in.
    keys = [name.strip() for name in ORDER[table].split(",")]
    keys += [name for name in schema.names if name not in keys]
    merged = distinct.sort_by([(k, "ascending") for k in keys]).select(schema.names)
    merged = merged.cast(schema)
    if merged.num_rows == old.num_rows:
        return 0  # nothing new: the file stays as it is
    write_table(path, merged)
    return merged.num_rows - old.num_rows


def landed_until(lake_dir: Path) -> str | None:
    """The newest fetch folder whose rows the lake holds."""
    path = lake_dir / LEDGER
    return json.loads(path.read_bytes())["newest_fetch_id"] if path.exists() else None


def land_fetches(lake_dir: Path, folders: Iterable[Path]) -> dict[str, int]:
    """Land archived fetches (in order) into the day files, then note the newest landed."""
    rows: dict[str, list[dict[str, Any]]] = {"candles": [], "funding_rates": []}
    newest = None
    for folder in folders:
        manifest = PriceManifest.from_json((folder / MANIFEST).read_bytes())
        for table, items in rows_of(folder, manifest).items():
            rows[table] += items
        newest = folder.name
    if newest is None:
        return {"candles": 0, "funding_rates": 0}
    added = land_rows(lake_dir, rows)
    if newest > (landed_until(lake_dir) or ""):
        atomic.write_bytes(lake_dir / LEDGER, json.dumps({"newest_fetch_id": newest}).encode())
    return added


def newest_times(lake_dir: Path, coins: list[str]) -> dict[str, dict[str, datetime]]:
    """Per table, the newest time the lake holds per coin (candles: open_time)."""
    out: dict[str, dict[str, datetime]] = {"candles": {}, "funding_rates": {}}
    for table, column in (("candles", "open_time"), ("funding_rates", "time")):
        files = sorted((lake_dir / table).glob(f"date=*/{DAY_FILE}"))
        if not files or not coins:
            continue
        with duckdb.connect() as con:
            result = con.execute(
                f"SELECT coin, max({column}) FROM read_parquet($files) "
                "WHERE coin IN (SELECT unnest($coins)) GROUP BY coin",
                {"files": [str(f) for f in files], "coins": coins},
            ).fetchall()
        out[table] = {coin: ts.replace(tzinfo=UTC) for coin, ts in result}
    return out


def iter_manifests(archive: PriceArchive) -> Iterator[tuple[Path, PriceManifest]]:
    for folder in archive.folders():
        yield folder, PriceManifest.from_json((folder / MANIFEST).read_bytes())
