"""Bytes per snapshot at each stage: raw JSON, zstd archive, Parquet lake, DuckDB."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.common import dir_bytes


def measure(data_dir: Path, raw_duckdb_bytes: int | None) -> dict[str, Any]:
    """Mean bytes per snapshot of everything a built data folder holds.

    ``raw_duckdb_bytes`` is the build database's size right after the rebuild's load (raw
    tables only, before dbt), taken by the rebuild child.
    """
    from flows.lake.archive import RawArchive
    from flows.lake.parquet import lake_path
    from flows.lake.tables import SNAPSHOT_TABLES
    from flows.settings import get_settings

    settings = get_settings(data_dir=data_dir)
    archive = RawArchive(settings.archive_dir, settings.quarantine_dir)
    manifests = list(archive.manifests())
    n = len(manifests)
    if n == 0:
        return {"snapshots": 0}
    json_bytes = sum(r.body_bytes for m in manifests for r in m.bodies.values())
    archive_bytes = sum(dir_bytes(archive.snapshot_dir(m.snapshot_id)) for m in manifests)
    per_table = {
        t: sum(lake_path(settings.lake_dir, t, m.snapshot_id).stat().st_size for m in manifests)
        for t in SNAPSHOT_TABLES
    }
    parquet_bytes = sum(per_table.values())
    build = settings.build_db_path.stat().st_size if settings.build_db_path.exists() else 0
    analytics = (
        settings.analytics_db_path.stat().st_size if settings.analytics_db_path.exists() else 0
    )
    published = dir_bytes(settings.marts_dir)
    per = {
        "raw_json": json_bytes / n,
        "archive_zstd": archive_bytes / n,
        "parquet_lake": parquet_bytes / n,
        "duckdb_raw": (raw_duckdb_bytes or 0) / n,
        "duckdb_build_with_marts": build / n,
        "analytics_db_plus_marts": (analytics + published) / n,
    }
    # Where a cohort file's bytes go, column by column (one file from the middle).
    import pyarrow.parquet as pq

    sample = lake_path(settings.lake_dir, "heatmap_cohorts", manifests[n // 2].snapshot_id)
    meta = pq.ParquetFile(sample).metadata
    columns: dict[str, int] = {}
    for rg in range(meta.num_row_groups):
        for c in range(meta.num_columns):
            col = meta.row_group(rg).column(c)
            columns[col.path_in_schema] = columns.get(col.path_in_schema, 0) + (
                col.total_compressed_size
            )
    return {
        "cohort_file_columns": {
            "rows": meta.num_rows,
            "bytes_per_row": {
                k: round(v / meta.num_rows, 2)
                for k, v in sorted(columns.items(), key=lambda kv: -kv[1])
            },
        },
        "snapshots": n,
        "bytes_per_snapshot": {k: round(v) for k, v in per.items()},
        "parquet_per_table": {k: round(v / n) for k, v in per_table.items()},
        "totals": {
            "raw_json": json_bytes,
            "archive_zstd": archive_bytes,
            "parquet_lake": parquet_bytes,
            "duckdb_raw": raw_duckdb_bytes,
            "build_duckdb": build,
            "analytics_duckdb": analytics,
            "marts_parquet": published,
        },
        "json_over_parquet": round(json_bytes / parquet_bytes, 2) if parquet_bytes else None,
    }
