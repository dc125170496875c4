"""The API token never lands anywhere: files, Parquet, DuckDB, Prefect's database, logs."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from flows.hypertracker.errors import PayloadError
from flows.pipeline import elt_flow
from flows.settings import get_settings
from simulator.faults import Fault
from tests.conftest import SIM_TOKEN

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("prefect_harness")]


def files_containing(root: Path, needle: bytes) -> list[Path]:
    hits = []
    for path in root.rglob("*"):
        if path.is_file() and needle in path.read_bytes():
            hits.append(path)
    return hits


def prefect_database() -> Path:
    from prefect.settings import get_current_settings

    url = get_current_settings().server.database.connection_url.get_secret_value()
    return Path(url.split("///", 1)[1])


def test_token_is_in_no_file_log_or_artifact(
    env: Path, sim, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level(logging.DEBUG)
    noisy = [logging.getLogger(name) for name in ("httpx", "httpcore")]
    levels = [logger.level for logger in noisy]
    for logger in noisy:  # the noisiest loggers, at their noisiest
        logger.setLevel(logging.DEBUG)
    try:
        # A full run (snapshot, load, dbt build, publish, run report) ...
        summary = elt_flow()
        assert summary.outcome == "published"
        # ... a run that fails on a bad payload (error text, quarantine note) ...
        sim.advance_to_next_state()
        sim.inject(Fault("bias_out_of_range", path="heatmap", window="all"))
        with pytest.raises(PayloadError):
            elt_flow()
        # ... and a retried one.
        sim.advance_to_next_state()
        sim.inject(Fault("rate_limit", path="heatmap", window="7d", retry_after=0))
        assert elt_flow().outcome == "published"
    finally:
        for logger, level in zip(noisy, levels, strict=True):
            logger.setLevel(level)

    needle = SIM_TOKEN.encode()
    settings = get_settings()
    assert settings.analytics_db_path.exists()
    assert list((env / "quarantine").iterdir())
    assert files_containing(env, needle) == []
    # Prefect's database holds flow and task runs, their parameters, logs and artifacts.
    db = prefect_database()
    assert db.exists()
    assert needle not in db.read_bytes()
    for wal in db.parent.glob(db.name + "*"):
        assert needle not in wal.read_bytes()
    # The settings object shows a mask, not the token.
    assert SIM_TOKEN not in repr(settings)
    assert SIM_TOKEN not in str(settings.model_dump())
    # Everything logged and printed.
    assert caplog.records
    assert all(SIM_TOKEN not in r.getMessage() for r in caplog.records)
    out, err = capfd.readouterr()
    assert SIM_TOKEN not in out
    assert SIM_TOKEN not in err
