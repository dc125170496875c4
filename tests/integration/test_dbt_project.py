"""The dbt project on its own: it builds on an empty warehouse, and its unit tests pass."""

from __future__ import annotations

from pathlib import Path

import pytest

from flows.settings import get_settings
from flows.transform import run_dbt
from flows.warehouse import connect, ensure_raw_schema

pytestmark = pytest.mark.integration


def test_dbt_builds_on_an_empty_warehouse_with_all_unit_tests(tmp_path: Path) -> None:
    settings = get_settings(data_dir=tmp_path / "data")
    con = connect(settings.build_db_path)
    ensure_raw_schema(con)
    con.close()
    outcome = run_dbt(settings, ["build"])
    assert outcome.success, [f"{f['name']}: {f['message']}" for f in outcome.failures]
    assert outcome.count("unit_test") >= 15
    assert outcome.count("model") >= 15
    # Every node ran (nothing skipped): a skipped node would hide a broken dependency.
    assert not [r for r in outcome.results if r["status"] == "skipped"]


def test_a_broken_invariant_fails_the_build_and_names_the_test(tmp_path: Path) -> None:
    settings = get_settings(data_dir=tmp_path / "data")
    con = connect(settings.build_db_path)
    ensure_raw_schema(con)
    # One snapshot whose cohort row breaks count == long + short.
    con.execute(
        """
        insert into raw.snapshots values ('20261101T000000000Z', '2026-11-01 00:00:00', 'all',
            null, '2026-11-01 00:00:01', 'http://x/positions/heatmap?openedWithin=all', 200,
            10, 'sha', 1, 1);
        insert into raw.heatmap_coins values ('20261101T000000000Z', '2026-11-01 00:00:00',
            'all', 'BTC', 200.0, 100.0, 100.0, 4, 2, 2, 1, 1);
        insert into raw.heatmap_cohorts values ('20261101T000000000Z', '2026-11-01 00:00:00',
            'all', 'BTC', 16, 200.0, 100.0, 100.0, 5, 2, 2, 0.5, true, 1);
        insert into raw._loads values (1, '2026-11-01 00:00:02', '2026-11-01 00:00:03',
            'completed', 1, 3, ['20261101T000000000Z'], null);
        """
    )
    con.close()
    outcome = run_dbt(settings, ["build", "--exclude-resource-type", "unit_test"])
    assert not outcome.success
    assert [f["name"] for f in outcome.failures] == ["fct_cohort_snapshots_checks"]
    (failure,) = outcome.failures
    # One test holds all of the fact's row checks: its rows, and the message, say which broke.
    assert failure["failing_checks"] == [
        {
            "check_name": "counts_add_up",
            "failing_rows": 1,
            "example_key": "snapshot_id=20261101T000000000Z, window=all, coin=BTC, segment_id=16",
        }
    ]
    assert "counts_add_up: 1 row(s)" in failure["message"]
