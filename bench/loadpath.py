"""The load path against its floor: raw JSON -> typed tables in DuckDB, 100 payloads.

The input is the first N snapshots (4 windows each) of the bench's archive, written out as
plain JSON files (``json/<snapshot_id>/<window>.json``) and as archive folders. Variants,
each run in a fresh child process (``python -m bench.loadpath VARIANT INPUT WORK OUT``):

- ``floor``: DuckDB alone. ``read_json`` of the JSON files with an explicit schema, unnested
  in SQL into the same two tables the lake has (coins, cohorts), in one DuckDB file.
- ``live``: our live path after the fetch: each body validated (``parse_heatmap``: pydantic
  + invariants), landed in the Parquet lake (``flows.snapshot.land``), then one
  ``load_lake`` into a fresh DuckDB file.
- ``live_unvalidated``: the same with validation skipped: ``orjson.loads`` straight into
  ``HeatmapPayload`` (what the lake writer would get if validation cost nothing).
- ``rebuild``: what ``ht rebuild`` does per snapshot: ``rebuild_lake`` (read the zstd
  archive, check sha256, validate again, land), then ``load_lake``.

Every variant reports its phases, its row counts (they must agree) and its wall time,
excluding interpreter start and imports; the parent takes the process's peak RSS.
"""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path
from typing import Any

from bench.common import WINDOWS, write_json

VARIANTS = ("floor", "live", "live_unvalidated", "rebuild")


def prepare_input(archive_root: Path, target: Path, snapshots: int) -> dict[str, Any]:
    """Write the first ``snapshots`` archived snapshots as JSON files and archive folders."""
    from flows.lake.archive import RawArchive

    archive = RawArchive(archive_root, archive_root.parent / "quarantine")
    manifests = list(archive.manifests())[:snapshots]
    json_bytes = 0
    for manifest in manifests:
        folder = archive.snapshot_dir(manifest.snapshot_id)
        shutil.copytree(folder, target / "archive" / folder.relative_to(archive_root))
        for window in WINDOWS:
            body = archive.read_body(manifest, window)
            path = target / "json" / manifest.snapshot_id / f"{window}.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(body)
            json_bytes += len(body)
    shutil.copytree(archive_root / "segments", target / "archive" / "segments")
    return {
        "snapshots": len(manifests),
        "payloads": len(manifests) * len(WINDOWS),
        "json_bytes": json_bytes,
    }


# ----------------------------------------------------------------------------- the floor

_MEASURES = (
    "totalValue DOUBLE, totalLongValue DOUBLE, totalShortValue DOUBLE, "
    "count BIGINT, countLong BIGINT, countShort BIGINT"
)
_SCHEMA = (
    "{'heatmap': 'STRUCT(coin VARCHAR, "
    + _MEASURES
    + ", segments STRUCT(segmentId SMALLINT, coin VARCHAR, "
    + _MEASURES
    + ", bias DOUBLE)[])[]'}"
)


def floor(inp: Path, work: Path) -> dict[str, Any]:
    """DuckDB's read_json with an explicit schema, unnested into coins and cohorts.

    ``records = true`` matters: with explicit columns and no ``records``, DuckDB 2.0.1 still
    samples the files to decide the record layout and reads them 4-5x slower.
    """
    import duckdb

    t0 = time.perf_counter()
    con = duckdb.connect(str(work / "floor.duckdb"))
    glob = str(inp / "json" / "*" / "*.json")
    con.execute("BEGIN")
    con.execute(
        f"""CREATE TEMP TABLE coins_nested AS
        SELECT
            regexp_extract(filename, '([^/]+)/[^/]+\\.json$', 1) AS snapshot_id,
            regexp_extract(filename, '([^/]+)\\.json$', 1) AS "window",
            unnest(heatmap) AS c
        FROM read_json('{glob}', columns = {_SCHEMA}, records = true, filename = true)"""
    )
    con.execute(
        """CREATE TABLE heatmap_coins AS
        SELECT snapshot_id, strptime(snapshot_id, '%Y%m%dT%H%M%S%gZ') AS last_update, "window",
            c.coin, c.totalValue AS total_value, c.totalLongValue AS total_long_value,
            c.totalShortValue AS total_short_value, c.count, c.countLong AS count_long,
            c.countShort AS count_short, len(c.segments)::SMALLINT AS segment_count
        FROM coins_nested"""
    )
    con.execute(
        """CREATE TABLE heatmap_cohorts AS
        SELECT snapshot_id, strptime(snapshot_id, '%Y%m%dT%H%M%S%gZ') AS last_update, "window",
            s.coin, s.segmentId AS segment_id, s.totalValue AS total_value,
            s.totalLongValue AS total_long_value, s.totalShortValue AS total_short_value,
            s.count, s.countLong AS count_long, s.countShort AS count_short, s.bias,
            s.segmentId BETWEEN 1 AND 16 AS is_known_segment
        FROM (SELECT snapshot_id, "window", unnest(c.segments) AS s FROM coins_nested)"""
    )
    con.execute("COMMIT")
    rows = {
        t: con.execute(f"SELECT count(*) FROM {t}").fetchone()[0]  # type: ignore[index]
        for t in ("heatmap_coins", "heatmap_cohorts")
    }
    con.close()
    return {"seconds": time.perf_counter() - t0, "phases": {}, "rows": rows}


# ------------------------------------------------------------------------------ our paths


def live(inp: Path, work: Path, *, validate: bool) -> dict[str, Any]:
    """Bodies (already fetched) -> validate -> lake -> DuckDB, as the live run does."""
    import orjson

    from flows import snapshot
    from flows.hypertracker.payload import HeatmapPayload, parse_heatmap
    from flows.lake.archive import SnapshotManifest
    from flows.settings import get_settings
    from flows.warehouse import load_lake

    settings = get_settings(data_dir=work / "data")
    phases = {"read": 0.0, "validate" if validate else "parse": 0.0, "land": 0.0, "load": 0.0}
    t0 = time.perf_counter()
    for manifest_path in sorted((inp / "archive").glob("date=*/snapshot_id=*/manifest.json")):
        t = time.perf_counter()
        manifest = SnapshotManifest.from_json(manifest_path.read_bytes())
        bodies = {
            w: (inp / "json" / manifest.snapshot_id / f"{w}.json").read_bytes() for w in WINDOWS
        }
        phases["read"] += time.perf_counter() - t
        t = time.perf_counter()
        if validate:
            payloads = {w: parse_heatmap(b, w, manifest.bodies[w].url) for w, b in bodies.items()}
            phases["validate"] += time.perf_counter() - t
        else:
            payloads = {
                w: HeatmapPayload(w, manifest.bodies[w].url, orjson.loads(b)["heatmap"])
                for w, b in bodies.items()
            }
            phases["parse"] += time.perf_counter() - t
        t = time.perf_counter()
        snapshot.land(settings.lake_dir, manifest, payloads)
        phases["land"] += time.perf_counter() - t
    t = time.perf_counter()
    result = load_lake(settings)
    phases["load"] = time.perf_counter() - t
    return {"seconds": time.perf_counter() - t0, "phases": phases, "rows": result.rows}


def rebuild(inp: Path, work: Path) -> dict[str, Any]:
    """``rebuild_lake`` from the archive folders, then ``load_lake``."""
    from flows.pipeline import rebuild_lake
    from flows.settings import get_settings
    from flows.warehouse import load_lake

    data = work / "data"
    shutil.copytree(inp / "archive", data / "archive")
    settings = get_settings(data_dir=data)
    t0 = time.perf_counter()
    rebuild_lake(settings)
    t = time.perf_counter()
    result = load_lake(settings)
    done = time.perf_counter()
    return {
        "seconds": done - t0,
        "phases": {"archive -> validate -> lake": t - t0, "load": done - t},
        "rows": result.rows,
    }


def main(variant: str, inp: Path, work: Path, out: Path) -> None:
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    if variant == "floor":
        result = floor(inp, work)
    elif variant == "live":
        result = live(inp, work, validate=True)
    elif variant == "live_unvalidated":
        result = live(inp, work, validate=False)
    elif variant == "rebuild":
        result = rebuild(inp, work)
    else:
        raise SystemExit(f"unknown variant {variant!r}; expected one of {VARIANTS}")
    result["variant"] = variant
    result["phases"] = {k: round(v, 4) for k, v in result["phases"].items()}
    result["seconds"] = round(result["seconds"], 4)
    write_json(out, result)


if __name__ == "__main__":
    main(sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]), Path(sys.argv[4]))
