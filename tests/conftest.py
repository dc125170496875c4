"""Shared fixtures: one Prefect test server per session, a simulated API per test.

The Prefect harness costs about ten seconds to start, so it is started once, lazily, by the
first test that asks for it (unit tests never do). Every integration test gets its own
simulated HyperTracker API on a free loopback port and its own data folder, with the
pipeline's settings pointed at both through the environment, as a user would set them.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

# Before anything imports flows.settings: no test reads a developer's .env (an empty
# HT_ENV_FILE means no file); each test sets what it needs through the environment.
os.environ["HT_ENV_FILE"] = ""
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ["DBT_SEND_ANONYMOUS_USAGE_STATS"] = "false"
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "INFO")
os.environ.setdefault("PREFECT_LOGGING_EXTRA_LOGGERS", "flows")
os.environ.setdefault("PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW", "ignore")

# A token no test could produce by accident: the secrecy test searches every file for it.
SIM_TOKEN = "tok_SECRET_7f3a9c_do_not_leak_e41b"
SIM_START = datetime(2026, 11, 1, tzinfo=UTC)


@pytest.fixture(scope="session")
def prefect_harness(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """A throwaway Prefect API (SQLite in a temp dir) shared by the whole session."""
    from prefect.testing.utilities import prefect_test_harness

    home = tmp_path_factory.mktemp("prefect-home")
    os.environ["PREFECT_HOME"] = str(home)
    # On a machine whose cores are held by other work, starting the server can take minutes:
    # the suite waits for it rather than failing every test that needs it.
    with prefect_test_harness(server_startup_timeout=600):
        yield


@pytest.fixture
def sim() -> Iterator[object]:
    """A simulated HyperTracker API (and Hyperliquid info API) on a free loopback port, its
    clock a day into history; prices reach back two days before the start (a first price
    history is then ~70 candles a coin, not 5000)."""
    from simulator.server import SimulatedApi

    api = SimulatedApi(seed=11, token=SIM_TOKEN, start=SIM_START, history_days=2)
    api.start()
    api.set_time(SIM_START + timedelta(days=1))
    try:
        yield api
    finally:
        api.stop()


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    path = tmp_path / "data"
    path.mkdir()
    return path


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, sim: object, data_dir: Path) -> Path:
    """Settings for the pipeline, through the environment, pointed at ``sim`` and a temp dir."""
    for key in list(os.environ):
        if key.startswith("HT_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("HT_BASE_URL", sim.base_url)  # type: ignore[attr-defined]
    monkeypatch.setenv("HT_HYPERLIQUID_URL", sim.info_url)  # type: ignore[attr-defined]
    monkeypatch.setenv("HT_HYPERLIQUID_WEIGHT_PER_MINUTE", "1000000")
    monkeypatch.setenv("HT_HYPERLIQUID_MAX_RETRY_WAIT_S", "5")
    monkeypatch.setenv("HT_PRICE_HISTORY_WEIGHT_PER_RUN", "1000000")
    monkeypatch.setenv("HT_API_TOKEN", SIM_TOKEN)
    monkeypatch.setenv("HT_DATA_DIR", str(data_dir))
    monkeypatch.setenv("HT_BACKOFF_BASE_S", "0.01")
    monkeypatch.setenv("HT_MAX_RETRY_WAIT_S", "5")
    monkeypatch.setenv("HT_REQUESTS_PER_MINUTE", "100000")
    monkeypatch.setenv("HT_READ_TIMEOUT_S", "2")
    return data_dir


@pytest.fixture(scope="session")
def demo_warehouse(
    prefect_harness: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Path]:
    """A warehouse built by the demo's own path (2 simulated days), shared by the session.

    Yields the data folder; ``HT_DATA_DIR`` points at it while the session runs, so
    ``get_settings()`` finds its analytics database. Tests must only read it.
    """
    from rich.console import Console

    from flows.demo import build_demo_warehouse

    data_dir = tmp_path_factory.mktemp("demo") / "data"
    saved = {k: v for k, v in os.environ.items() if k.startswith("HT_")}
    # Seed 7 (the demo's own) lists or delists a coin inside these two days at any time of
    # day the suite runs (the market starts three days before now): the README's listings
    # question has something to answer. Seed 5 did so for 5 hours in 12 only.
    build_demo_warehouse(days=2, seed=7, data_dir=data_dir, console=Console(quiet=True))
    yield data_dir
    for key in [k for k in os.environ if k.startswith("HT_")]:
        del os.environ[key]
    os.environ.update(saved)


@pytest.fixture(scope="session")
def demo_backfilled_warehouse(
    prefect_harness: None, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """A warehouse built as ``make demo`` builds it: a quick backfill of the simulated market
    (2 days) plus its last 6 hours of live states, shared by the session; tests must only
    read it. The environment is restored once it is built (``demo_warehouse`` keeps
    ``HT_DATA_DIR``): pass its folder explicitly, e.g. ``get_settings(data_dir=...)``.
    """
    from rich.console import Console

    from flows.demo import build_demo_warehouse

    data_dir = tmp_path_factory.mktemp("demo-backfilled") / "data"
    saved = {k: v for k, v in os.environ.items() if k.startswith("HT_")}
    try:
        build_demo_warehouse(
            days=2, seed=7, data_dir=data_dir, console=Console(quiet=True), live_hours=6
        )
    finally:
        for key in [k for k in os.environ if k.startswith("HT_")]:
            del os.environ[key]
        os.environ.update(saved)
    return data_dir
