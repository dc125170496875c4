"""The state watch over real HTTP against the simulator: a run starts within one poll
interval of a state change, and polling stops when the budget says so."""

from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from flows.hypertracker.client import StateStatus
from flows.quota import Ledger
from flows.settings import get_settings
from flows.state_watch import StateWatch, affordable_interval

pytestmark = pytest.mark.integration


def status_requests(sim) -> int:
    return sum(r.path.endswith("/state/status") for r in sim.request_log)


def test_a_run_starts_within_one_poll_interval_of_a_state_change(
    env: Path, sim, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HT_POLL_INTERVAL_S", "5")
    settings = get_settings()
    # Twenty seconds before the next state lands, the simulated clock running in real time.
    sim.advance_to_next_state()
    change_at = sim.now
    sim.set_time(change_at - timedelta(seconds=20))
    sim.follow_wall_clock()
    started: list[tuple[str, datetime]] = []

    def start_run(status: StateStatus) -> None:
        started.append((status.snapshot_id, sim.now))

    watch = StateWatch(settings, start_run, now=lambda: sim.now)
    stop = threading.Event()
    thread = threading.Thread(target=watch.run, args=(stop,), daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 120
        while len(started) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        stop.set()
        thread.join(timeout=60)
    # The first poll finds a state the archive lacks: a run at once. Then the change.
    assert len(started) == 2, started
    new_id, seen_at = started[1]
    assert new_id > started[0][0]
    assert timedelta(0) <= seen_at - change_at <= timedelta(seconds=5 + 2)
    # Every poll is in the quota ledger.
    assert Ledger.open(settings).day_count == status_requests(sim) == watch.polls


def test_the_quota_guard_stops_polling_when_the_budget_says_so(
    env: Path, sim, monkeypatch: pytest.MonkeyPatch
) -> None:
    sim.follow_wall_clock()
    now = sim.now
    # A day budget that the runs still to come today need whole: nothing left to poll with.
    budget = next(
        b
        for b in range(100, 5000)
        if affordable_interval(
            get_settings(requests_per_day=b), Ledger.open(get_settings()), now
        ) is not None
    ) - 1  # fmt: skip
    monkeypatch.setenv("HT_REQUESTS_PER_DAY", str(budget))
    settings = get_settings()
    watch = StateWatch(settings, lambda status: None, now=lambda: sim.now)
    stop = threading.Event()
    thread = threading.Thread(target=watch.run, args=(stop,), daemon=True)
    thread.start()
    time.sleep(3)
    stop.set()
    thread.join(timeout=60)
    assert watch.polls == 0
    assert status_requests(sim) == 0
    assert watch.state.paused
