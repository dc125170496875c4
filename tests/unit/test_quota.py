"""The quota ledger: every request counted once, whoever spends it."""

from __future__ import annotations

import json
import multiprocessing
from pathlib import Path

import pytest

from flows.quota import Ledger, QuotaWouldBeExceeded
from flows.settings import get_settings


@pytest.fixture
def settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.setenv("HT_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("HT_REQUESTS_PER_DAY", "100")
    return get_settings()


def test_two_ledgers_open_at_once_lose_no_request(settings) -> None:
    """A run and serve's watch of the state spend at the same time: both counts add up."""
    run, watch = Ledger.open(settings), Ledger.open(settings)
    run.record()
    watch.record()
    run.record(2)
    assert json.loads((settings.state_dir / "quota.json").read_bytes())["day_count"] == 4
    assert Ledger.open(settings).day_count == 4


def _spend(data_dir: str, n: int) -> None:
    import os

    os.environ["HT_DATA_DIR"] = data_dir
    from flows.settings import get_settings

    ledger = Ledger.open(get_settings())
    for _ in range(n):
        ledger.record()


def test_processes_spending_at_once_are_all_counted(settings) -> None:
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_spend, args=(str(settings.data_dir), 25)) for _ in range(3)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
        assert worker.exitcode == 0
    assert Ledger.open(settings).day_count == 75
    with pytest.raises(QuotaWouldBeExceeded, match="75 of 100"):
        Ledger.open(settings).check(settings, 26)
