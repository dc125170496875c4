"""A run killed outright (SIGKILL of its whole process group) at each phase, then one run of
the same state: every archived state reaches the lake, the warehouse and the published
marts, once, and nothing is left half-written."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from flows.pipeline import elt_flow
from flows.settings import get_settings

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("prefect_harness")]
ROOT = Path(__file__).resolve().parents[2]

# Lines of a run's log, in the order a run writes them: the kill lands just after each.
PHASES = [
    "HyperTracker state",  # the state is read, the windows are being fetched
    "archived and landed",  # archive and lake written, nothing loaded yet
    "load ",  # the warehouse took the snapshot in; dbt about to start
    "START sql view model",  # dbt is building
    "dbt build:",  # dbt done, publishing
]


def run_and_kill(marker: str) -> str:
    """Start an ELT run in a fresh process and SIGKILL its process group at ``marker``."""
    from prefect.settings import PREFECT_API_URL

    env = {**os.environ, "PREFECT_API_URL": str(PREFECT_API_URL.value())}
    proc = subprocess.Popen(
        [sys.executable, "-c", "from flows.pipeline import elt_flow; elt_flow()"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    seen = []
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            seen.append(line)
            if marker in line:
                os.killpg(proc.pid, signal.SIGKILL)
                break
        else:
            pytest.fail(f"the run ended before {marker!r}:\n{''.join(seen[:60])}")
    finally:
        proc.wait(timeout=60)
    return "".join(seen)


def check_every_layer(data: Path) -> None:
    settings = get_settings()
    archived = {p.name.split("=")[1] for p in (data / "archive").glob("date=*/snapshot_id=*")}
    landed = {p.stem for p in (data / "lake" / "snapshots").glob("date=*/*.parquet")}
    assert archived <= landed
    con = duckdb.connect(str(settings.analytics_db_path), read_only=True)
    try:
        published = {r[0] for r in con.execute("SELECT snapshot_id FROM lake.loads").fetchall()}
        duplicates = con.execute(
            'SELECT count(*) FROM (SELECT snapshot_id, "window", coin, segment_id '
            "FROM marts.fct_cohort_snapshots GROUP BY ALL HAVING count(*) > 1)"
        ).fetchone()
    finally:
        con.close()
    assert archived == published
    assert duplicates == (0,)
    assert not list((data / "archive" / "_incoming").glob("*"))
    assert not [p for p in data.rglob(".tmp-*") if p.is_file()]


def test_a_run_killed_at_any_phase_is_completed_by_the_next(env: Path, sim) -> None:
    assert elt_flow().outcome == "published"
    for marker in PHASES:
        sim.advance_to_next_state()
        run_and_kill(marker)
        # The same state, once more: the run completes what the killed one began.
        summary = elt_flow()
        assert summary.outcome in ("published", "no new data"), (marker, summary.error)
        check_every_layer(env)
