"""Every run completes what an earlier one left undone, and nothing untested is published:
a snapshot archived but never landed, a build never published, a snapshot whose rows fail a
dbt test (held back; the next clean one is published)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest

from flows import pipeline, snapshot
from flows.lake.parquet import lake_path, write_table
from flows.lake.tables import TABLES
from flows.ops import pending_work
from flows.settings import get_settings
from flows.warehouse import connect, held_snapshots, readmit

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("prefect_harness")]


def published_snapshots() -> set[str]:
    con = duckdb.connect(str(get_settings().analytics_db_path), read_only=True)
    try:
        return {r[0] for r in con.execute("SELECT snapshot_id FROM lake.loads").fetchall()}
    finally:
        con.close()


def fact_rows(snapshot_id: str) -> tuple[int, int]:
    """(rows, distinct keys) of one snapshot in the published cohort fact."""
    con = duckdb.connect(str(get_settings().analytics_db_path), read_only=True)
    try:
        row = con.execute(
            'SELECT count(*), count(DISTINCT (snapshot_id, "window", coin, segment_id)) '
            "FROM marts.fct_cohort_snapshots WHERE snapshot_id = ?",
            [snapshot_id],
        ).fetchone()
        assert row is not None
        return int(row[0]), int(row[1])
    finally:
        con.close()


def fail_run_at(module: object, step: str) -> None:
    """One ELT run of a new state in which ``module.step`` fails as on a full disk."""

    def disk_full(*args: object, **kwargs: object) -> None:
        raise OSError(28, "No space left on device")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(module, step, disk_full)
        with pytest.raises(OSError, match="No space left"):
            pipeline.elt_flow()


def test_a_snapshot_archived_but_not_landed_reaches_every_layer_on_the_next_run(
    env: Path, sim
) -> None:
    assert pipeline.elt_flow().outcome == "published"
    sim.advance_to_next_state()
    fail_run_at(snapshot, "land")  # the snapshot is archived, then landing it fails
    stuck = snapshot.snapshot_id_for(sim.last_update)
    assert pipeline.archive_for(get_settings()).has_snapshot(stuck)
    assert stuck not in published_snapshots()

    # The same state again: nothing new to fetch, but the run completes the landing.
    summary = pipeline.elt_flow()
    assert summary.outcome == "published"
    assert not summary.snapshot.stored  # the state was archived already
    assert summary.caught_up == [stuck]
    assert stuck in published_snapshots()
    rows, keys = fact_rows(stuck)
    assert rows == keys > 0  # every row once
    # And then there is nothing left to do.
    assert pipeline.elt_flow().outcome == "no new data"


def test_a_build_that_was_not_published_is_published_by_the_next_run(env: Path, sim) -> None:
    assert pipeline.elt_flow().outcome == "published"
    sim.advance_to_next_state()
    fail_run_at(pipeline, "publish")
    newest = snapshot.snapshot_id_for(sim.last_update)
    assert newest not in published_snapshots()
    summary = pipeline.elt_flow()  # the same state: fetches nothing, publishes the load
    assert summary.outcome == "published"
    assert newest in published_snapshots()


SID = "20261102T120000000Z"
AT = datetime(2026, 11, 2, 12)


def land_bad_snapshot(lake_dir: Path) -> None:
    """A snapshot in the lake whose cohort row has more long value than total: its bias > 1."""
    keys = {"snapshot_id": SID, "last_update": AT, "window": "all"}
    counts = {"count": 4, "count_long": 2, "count_short": 2}
    rows = {
        "heatmap_cohorts": {**keys, "coin": "BTC", "segment_id": 16, "total_value": 200.0,
                            "total_long_value": 300.0, "total_short_value": 100.0, **counts,
                            "bias": 0.5, "is_known_segment": True},
        "heatmap_coins": {**keys, "coin": "BTC", "total_value": 200.0, "total_long_value": 100.0,
                          "total_short_value": 100.0, **counts, "segment_count": 1},
        "snapshots": {**keys, "next_update": None, "fetched_at": AT, "url": "http://x",
                      "http_status": 200, "body_bytes": 1, "body_sha256": "x", "coin_count": 1},
        # Its market, as every landed snapshot has one: here a fetch that failed.
        "market_fetches": {"snapshot_id": SID, "last_update": AT, "dex": "", "status": "failed",
                           "url": "http://x/info", "error": "HTTP 502"},
    }  # fmt: skip
    for table, row in rows.items():
        path = lake_path(lake_dir, table, SID)
        write_table(path, pa.Table.from_pylist([row], schema=TABLES[table]))
    empty = TABLES["market_contexts"].empty_table()
    write_table(lake_path(lake_dir, "market_contexts", SID), empty)


def test_a_snapshot_failing_a_dbt_test_is_held_back_and_the_next_clean_one_published(
    env: Path, sim
) -> None:
    settings = get_settings()
    assert pipeline.elt_flow().outcome == "published"
    before = published_snapshots()
    land_bad_snapshot(settings.lake_dir)

    summary = pipeline.elt_flow()  # no new state; the bad snapshot is taken in, and fails
    assert summary.outcome == "published"
    assert summary.held == [SID]
    assert published_snapshots() == before
    with connect(settings.build_db_path) as con:
        ((held_id, _, tests),) = held_snapshots(con)
    assert held_id == SID
    assert tests == ["fct_cohort_snapshots_bias_in_unit_range"]
    (row,) = [value for label, value in pending_work(settings) if "held back" in label]
    assert SID in row
    assert "ht readmit" in row

    sim.advance_to_next_state()
    summary = pipeline.elt_flow()  # a clean snapshot: published; the held one stays out
    assert summary.outcome == "published"
    assert summary.held == []
    newest = snapshot.snapshot_id_for(sim.last_update)
    assert published_snapshots() == before | {newest}

    with connect(settings.build_db_path) as con:
        assert readmit(con) == [SID]
    summary = pipeline.elt_flow()  # taken back, still broken: held back again
    assert summary.held == [SID]
    assert SID not in published_snapshots()
