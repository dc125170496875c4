"""The peer: dlt loading the same JSON payloads into DuckDB (run with bench/.venv's Python).

``bench/.venv/bin/python bench/peer_dlt.py INPUT WORK OUT.json``. dlt is not a project
dependency: it lives in the bench's own virtual environment. It reads the same files as
the load-path section, yields each coin with its snapshot id and window, and lets dlt
unnest ``segments`` into a child table, with its fastest file format (``parquet``: the
normalizer writes Parquet and DuckDB copies it in). Standard library and dlt only here.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from pathlib import Path

WINDOWS = ("24h", "7d", "30d", "all")


def main(inp: Path, work: Path, out: Path) -> None:
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    os.environ["RUNTIME__DLTHUB_TELEMETRY"] = "false"
    os.environ["DLT_DATA_DIR"] = str(work / "dlt-data")
    t_import = time.perf_counter()
    import dlt
    import orjson

    imported = time.perf_counter() - t_import
    files = sorted((inp / "json").glob("*/*.json"))

    @dlt.resource(name="heatmap_coins", write_disposition="append")
    def coins():  # type: ignore[no-untyped-def]
        for path in files:
            snapshot_id, window = path.parent.name, path.stem
            for coin in orjson.loads(path.read_bytes())["heatmap"]:
                coin["snapshot_id"] = snapshot_id
                coin["window"] = window
                yield coin

    pipeline = dlt.pipeline(
        pipeline_name="bench_peer",
        pipelines_dir=str(work / "pipelines"),
        destination=dlt.destinations.duckdb(str(work / "dlt.duckdb")),
        dataset_name="raw",
        progress=None,
    )
    phases = {}
    t0 = time.perf_counter()
    pipeline.extract(coins(), loader_file_format="parquet")
    phases["extract"] = time.perf_counter() - t0
    t = time.perf_counter()
    pipeline.normalize()
    phases["normalize"] = time.perf_counter() - t
    t = time.perf_counter()
    pipeline.load()
    phases["load"] = time.perf_counter() - t
    seconds = time.perf_counter() - t0

    import duckdb

    con = duckdb.connect(str(work / "dlt.duckdb"), read_only=True)
    rows = {
        "heatmap_coins": con.execute("select count(*) from raw.heatmap_coins").fetchone()[0],
        "heatmap_cohorts": con.execute(
            "select count(*) from raw.heatmap_coins__segments"
        ).fetchone()[0],
    }
    con.close()
    from importlib.metadata import version

    out.write_text(
        json.dumps(
            {
                "seconds": round(seconds, 4),
                "phases": {k: round(v, 4) for k, v in phases.items()},
                "import_seconds": round(imported, 3),
                "rows": rows,
                "versions": {p: version(p) for p in ("dlt", "duckdb", "pyarrow")},
                "files": len(files),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]))
