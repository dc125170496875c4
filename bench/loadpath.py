"""The load path against its floor: raw JSON -> typed tables in DuckDB, 100 payloads.

The input is the first N snapshots (4 windows each) of the bench's archive, written out as
plain JSON files (``json/<snapshot_id>/<window>.json``) and as archive folders (zstd bodies
and manifests, as the production archive keeps them). Variants, each run in a fresh child
process (``python -m bench.loadpath VARIANT INPUT WORK OUT``):

- ``floor``: DuckDB alone. ``read_json`` of the plain JSON files with an explicit schema,
  unnested in SQL into the same two tables the lake has (coins, cohorts), in one DuckDB file.
- ``bulk``: ours, as a rebuild runs it (``rebuild_lake(verify=False)``): the archived zstd
  bodies, typed and checked in DuckDB (every row invariant) in batches, landed as Parquet,
  then one ``load_lake`` into a fresh DuckDB file.
- ``rebuild``: ``rebuild_lake`` itself: ``bulk`` plus the sha256 of every body checked
  against its manifest (in a thread beside DuckDB), then ``load_lake``.
- ``live``: what a scheduled run does after the fetch, one snapshot at a time: each body's
  JSON types against the contract (``structure_problems``), the row invariants and the
  relations across windows (``normalise``), landing, then one ``load_lake``.

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

VARIANTS = ("floor", "bulk", "rebuild", "live")


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


def _manifests(inp: Path) -> list[Any]:
    from flows.lake.archive import SnapshotManifest

    return [
        SnapshotManifest.from_json(p.read_bytes())
        for p in sorted((inp / "archive").glob("date=*/snapshot_id=*/manifest.json"))
    ]


def live(inp: Path, work: Path) -> dict[str, Any]:
    """One snapshot at a time, as the scheduled run checks and lands it, then one load."""
    from flows import snapshot
    from flows.lake.from_archive import archive_for
    from flows.lake.normalise import body_files, normalise, structure_problems
    from flows.settings import get_settings
    from flows.warehouse import load_lake

    data = work / "data"
    shutil.copytree(inp / "archive", data / "archive")
    settings = get_settings(data_dir=data)
    archive = archive_for(settings)
    phases = {"JSON types": 0.0, "check and type": 0.0, "land": 0.0, "load": 0.0}
    t0 = time.perf_counter()
    for manifest in _manifests(data):
        paths = archive.body_paths(manifest)
        t = time.perf_counter()
        structure = structure_problems(paths)
        phases["JSON types"] += time.perf_counter() - t
        t = time.perf_counter()
        checked = normalise(body_files(manifest.snapshot_id, manifest.last_update_dt, paths))
        phases["check and type"] += time.perf_counter() - t
        if checked.problems or any(problems for problems, _ in structure.values()):
            raise SystemExit(f"{manifest.snapshot_id} failed its checks: {checked.problems}")
        t = time.perf_counter()
        snapshot.land(
            settings.lake_dir,
            manifest,
            snapshot.SnapshotRows(checked.rows_of(manifest.snapshot_id)),
        )
        phases["land"] += time.perf_counter() - t
    t = time.perf_counter()
    result = load_lake(settings)
    phases["load"] = time.perf_counter() - t
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "phases": phases, "rows": _loaded_rows(settings, result)}


def rebuild(inp: Path, work: Path, *, verify: bool) -> dict[str, Any]:
    """``rebuild_lake`` from the archive folders, then ``load_lake``; ``verify=False`` is the
    bulk variant (no sha256 pass)."""
    from flows.lake.from_archive import rebuild_lake
    from flows.settings import get_settings
    from flows.warehouse import load_lake

    data = work / "data"
    shutil.copytree(inp / "archive", data / "archive")
    settings = get_settings(data_dir=data)
    t0 = time.perf_counter()
    rebuild_lake(settings, verify=verify)
    t = time.perf_counter()
    result = load_lake(settings)
    done = time.perf_counter()
    lake = "archive -> sha256, check, type -> lake" if verify else "archive -> check, type -> lake"
    phases = {lake: t - t0, "load": done - t}
    return {"seconds": done - t0, "phases": phases, "rows": _loaded_rows(settings, result)}


def _loaded_rows(settings: Any, result: Any) -> dict[str, int]:
    """Rows the warehouse now reads, per table (counted after the clock stops)."""
    from flows.warehouse import connect

    assert result.load_id is not None
    with connect(settings.build_db_path, read_only=True) as con:
        return {
            t: con.execute(
                f"SELECT count(*) FROM lake.{t} WHERE snapshot_id IN "
                "(SELECT snapshot_id FROM lake.loads)"
            ).fetchone()[0]  # type: ignore[index]
            for t in ("heatmap_coins", "heatmap_cohorts")
        }


def main(variant: str, inp: Path, work: Path, out: Path) -> None:
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    if variant == "floor":
        result = floor(inp, work)
    elif variant == "bulk":
        result = rebuild(inp, work, verify=False)
    elif variant == "live":
        result = live(inp, work)
    elif variant == "rebuild":
        result = rebuild(inp, work, verify=True)
    else:
        raise SystemExit(f"unknown variant {variant!r}; expected one of {VARIANTS}")
    result["variant"] = variant
    result["phases"] = {k: round(v, 4) for k, v in result["phases"].items()}
    result["seconds"] = round(result["seconds"], 4)
    write_json(out, result)


if __name__ == "__main__":
    main(sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]), Path(sys.argv[4]))
