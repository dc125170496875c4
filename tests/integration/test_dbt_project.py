"""The dbt project on its own: it builds on an empty warehouse, its unit tests pass, and a
broken invariant in the lake fails the build, naming the test."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pyarrow as pa
import pytest

from flows.lake.parquet import lake_path, write_table
from flows.lake.tables import TABLES
from flows.settings import get_settings
from flows.transform import build
from flows.warehouse import connect, load_lake, register_lake

pytestmark = pytest.mark.integration

SID = "20261101T000000000Z"
AT = datetime(2026, 11, 1)


def test_dbt_builds_on_an_empty_warehouse_with_all_unit_tests(tmp_path: Path) -> None:
    settings = get_settings(data_dir=tmp_path / "data")
    con = connect(settings.build_db_path)
    register_lake(con, settings.lake_dir)
    con.close()
    outcome = build(settings, unit_tests=True)
    assert outcome.success, [f"{f['name']}: {f['message']}" for f in outcome.failures]
    assert outcome.count("unit_test") >= 15
    assert outcome.count("model") >= 15
    # Every node ran (nothing skipped): a skipped node would hide a broken dependency.
    assert not [r for r in outcome.results if r["status"] == "skipped"]


def land(lake_dir: Path, table: str, row: dict[str, object]) -> None:
    schema = TABLES[table]
    write_table(lake_path(lake_dir, table, SID), pa.Table.from_pylist([row], schema=schema))


def test_a_broken_invariant_fails_the_build_and_names_the_test(tmp_path: Path) -> None:
    settings = get_settings(data_dir=tmp_path / "data")
    keys = {"snapshot_id": SID, "last_update": AT, "window": "all"}
    measures = {"count": 4, "count_long": 2, "count_short": 2}
    # A cohort row with more long value than total: its bias comes out above 1.
    land(
        settings.lake_dir,
        "heatmap_cohorts",
        {**keys, "coin": "BTC", "segment_id": 16, "total_value": 200.0, "bias": 0.5,
         "total_long_value": 300.0, "total_short_value": 100.0, **measures,
         "is_known_segment": True},
    )  # fmt: skip
    land(
        settings.lake_dir,
        "heatmap_coins",
        {**keys, "coin": "BTC", "total_value": 200.0, "total_long_value": 100.0,
         "total_short_value": 100.0, **measures, "segment_count": 1},
    )  # fmt: skip
    land(
        settings.lake_dir,
        "snapshots",
        {**keys, "next_update": None, "fetched_at": AT, "url": "http://x/positions/heatmap",
         "http_status": 200, "body_bytes": 10, "body_sha256": "sha", "coin_count": 1},
    )  # fmt: skip
    assert load_lake(settings).snapshot_ids == [SID]
    outcome = build(settings)
    assert not outcome.success
    assert [f["name"] for f in outcome.failures] == ["fct_cohort_snapshots_bias_in_unit_range"]
