"""The state watch: when it polls, when it starts a run, what the budget lets it spend."""

from __future__ import annotations

import logging
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from flows.hypertracker.client import StateStatus
from flows.quota import Ledger, requests_per_run
from flows.settings import get_settings
from flows.state_watch import PAUSE_S, RETRY_RUN_S, StateWatch, affordable_interval

T0 = datetime(2026, 11, 20, 0, 0, tzinfo=UTC)


@pytest.fixture
def settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    for key in ("HT_REQUESTS_PER_DAY", "HT_REQUESTS_PER_MONTH"):
        monkeypatch.delenv(key, raising=False)
    return get_settings(data_dir=tmp_path, requests_per_day=None, requests_per_month=None)


def status(last: datetime) -> StateStatus:
    return StateStatus(
        last_update=last,
        next_update=last + timedelta(minutes=15),
        next_update_threshold=last + timedelta(minutes=30),
        fetched=None,  # type: ignore[arg-type]
    )


class FakeApi:
    """The status the watch sees: ``lands`` is when each state is published."""

    def __init__(self, lands: list[datetime], clock: list[datetime], spend=None) -> None:
        self.lands = lands
        self.clock = clock
        self.polls = 0
        self.spend = spend  # settings whose ledger counts each poll, as the client's hook does

    def status(self) -> StateStatus:
        self.polls += 1
        if self.spend is not None:
            Ledger.open(self.spend).record()
        published = [t for t in self.lands if t <= self.clock[0]]
        return status(published[-1])


class FakeArchive:
    """The archive as the watch sees it: a state is archived once its run started, unless
    the runs fail (``archives=False``)."""

    def __init__(self, started: list[str], archives: bool) -> None:
        self.started, self.archives = started, archives

    def has_snapshot(self, sid: str) -> bool:
        return self.archives and sid in self.started


@pytest.fixture(autouse=True)
def archive(monkeypatch: pytest.MonkeyPatch) -> dict[str, bool]:
    from flows import state_watch

    options = {"archives": True}
    monkeypatch.setattr(
        state_watch, "archive_for", lambda s: FakeArchive(STARTED[-1], options["archives"])
    )
    return options


STARTED: list[list[str]] = []


def watch_for(settings, api: FakeApi, clock: list[datetime]) -> tuple[StateWatch, list[str]]:
    started: list[str] = []
    STARTED.append(started)
    mono = [0.0]

    def monotonic() -> float:
        return (clock[0] - T0).total_seconds() + mono[0]

    watch = StateWatch(
        settings, start_run=lambda s: started.append(s.snapshot_id), now=lambda: clock[0],
        monotonic=monotonic,
    )  # fmt: skip
    return watch, started


def drive(watch: StateWatch, api: FakeApi, clock: list[datetime], until: datetime) -> list[float]:
    waits = []
    while clock[0] < until:
        wait = watch.step(api)  # type: ignore[arg-type]
        waits.append(wait)
        clock[0] += timedelta(seconds=wait)
    return waits


def test_it_sleeps_until_next_update_then_polls_and_starts_a_run_once(settings) -> None:
    clock = [T0 + timedelta(minutes=1)]
    second = T0 + timedelta(minutes=21, seconds=7)
    api = FakeApi([T0, second], clock)
    watch, started = watch_for(settings, api, clock)
    first_wait = watch.step(api)  # type: ignore[arg-type]
    # The state is new to the archive: a run at once; then nothing until nextUpdate (+1 s).
    assert started == [status(T0).snapshot_id]
    assert first_wait == pytest.approx(14 * 60 + 1)
    clock[0] += timedelta(seconds=first_wait)
    drive(watch, api, clock, second + timedelta(minutes=2))
    assert started == [status(T0).snapshot_id, status(second).snapshot_id]
    # Polled every 15 s from nextUpdate to the change, and then slept until the next one.
    assert 20 <= api.polls <= 30


def test_the_run_starts_within_one_poll_interval_of_the_change(settings) -> None:
    clock = [T0 + timedelta(minutes=15, seconds=1)]
    second = T0 + timedelta(minutes=17, seconds=3)
    api = FakeApi([T0, second], clock)
    watch, started = watch_for(settings, api, clock)
    seen_at = []
    watch.start_run = lambda s: (started.append(s.snapshot_id), seen_at.append(clock[0]))
    drive(watch, api, clock, second + timedelta(minutes=1))
    assert started[-1] == status(second).snapshot_id
    assert timedelta(0) <= seen_at[-1] - second <= timedelta(seconds=settings.poll_interval_s)


def test_a_state_already_archived_starts_no_run(settings, monkeypatch) -> None:
    from flows import state_watch

    monkeypatch.setattr(state_watch, "archive_for", lambda s: FakeArchive([], archives=False))
    monkeypatch.setattr(FakeArchive, "has_snapshot", lambda self, sid: True)
    clock = [T0 + timedelta(minutes=1)]
    watch, started = watch_for(settings, FakeApi([T0], clock), clock)
    watch.step(FakeApi([T0], clock))  # type: ignore[arg-type]
    assert started == []


def test_a_run_that_did_not_archive_its_state_is_started_again_later(settings, archive) -> None:
    archive["archives"] = False
    clock = [T0 + timedelta(minutes=16)]
    api = FakeApi([T0], clock)
    watch, started = watch_for(settings, api, clock)
    watch.step(api)  # type: ignore[arg-type]
    clock[0] += timedelta(seconds=30)
    watch.step(api)  # type: ignore[arg-type]
    assert len(started) == 1  # still on its way
    clock[0] += timedelta(seconds=RETRY_RUN_S)
    watch.step(api)  # type: ignore[arg-type]
    assert len(started) == 2


def test_past_the_threshold_it_backs_off_up_to_the_cap(settings) -> None:
    clock = [T0 + timedelta(minutes=31)]
    api = FakeApi([T0], clock)
    watch, _ = watch_for(settings, api, clock)
    waits = drive(watch, api, clock, T0 + timedelta(minutes=45))
    assert waits[0] >= settings.poll_interval_s
    assert waits == sorted(waits)
    assert max(waits) == settings.poll_max_interval_s


def test_a_state_days_late_waits_the_cap_without_overflowing(settings) -> None:
    # An API that stopped updating: 2**(days / interval) would overflow a float.
    clock = [T0 + timedelta(days=30)]
    api = FakeApi([T0], clock)
    watch, _ = watch_for(settings, api, clock)
    assert watch.step(api) == settings.poll_max_interval_s  # type: ignore[arg-type]


def test_no_budget_limit_polls_at_the_set_interval(settings) -> None:
    assert affordable_interval(settings, Ledger.open(settings), T0) == settings.poll_interval_s


def test_the_pulse_plan_affords_polls_every_minute_or_so(tmp_path: Path) -> None:
    """Pulse: 50k a month. After the runs the day needs, about 18 polls a state are left."""
    pulse = get_settings(data_dir=tmp_path, requests_per_day=None, requests_per_month=50_000)
    # On the 20th, having spent the month's first 19 days at the pace the plan allows.
    interval = affordable_interval(pulse, _spent(tmp_path, 0, month=19 * 50_000 // 30), T0)
    assert interval is not None
    assert 15 <= interval <= 60
    # Polling at that interval for a day stays within the day's share of the month.
    states = 24 * 3600 / (22.5 * 60)
    polls = states * (15 * 60 / 2 / interval + 1)
    runs = states * 6 + 96
    assert polls + runs <= (50_000 - 19 * 50_000 // 30) / 11


def test_a_day_on_the_pulse_plan_spends_at_most_its_share_and_sees_states_within_a_minute(
    tmp_path: Path,
) -> None:
    """A whole day at 1x: a state every 15-30 minutes, the watch polling at what the budget
    affords, each run's requests counted as a run spends them. The day stays within its even
    share of what the month has left, and still sees every state within a minute."""
    pulse = get_settings(data_dir=tmp_path, requests_per_day=None, requests_per_month=50_000)
    spent_before = 19 * 50_000 // 30  # the 20th, the month spent at the plan's pace
    ledger = Ledger.open(pulse)
    ledger.month_count = spent_before
    ledger._save()
    share = (50_000 - spent_before) / 11  # the 20th to the 30th
    rng = random.Random(13)
    lands = [T0 - timedelta(minutes=20)]
    while lands[-1] < T0 + timedelta(days=1):
        lands.append(lands[-1] + timedelta(seconds=rng.uniform(15 * 60, 30 * 60)))
    clock = [T0]
    api = FakeApi(lands, clock, spend=pulse)
    watch, started = watch_for(pulse, api, clock)
    seen_after: list[float] = []

    def start_run(s: StateStatus) -> None:
        started.append(s.snapshot_id)
        seen_after.append((clock[0] - s.last_update).total_seconds())
        Ledger.open(pulse).record(requests_per_run(pulse, with_segments=False))

    watch.start_run = start_run
    drive(watch, api, clock, T0 + timedelta(days=1))
    runs = len(started)
    spent = api.polls + runs * requests_per_run(pulse, with_segments=False)
    assert spent <= share
    # Every state that landed in the day was seen (but one in its last poll interval).
    day = [status(t).snapshot_id for t in lands if T0 < t <= clock[0] - timedelta(minutes=1)]
    assert set(day) <= set(started)
    later = sorted(seen_after[1:])  # the first state was 20 minutes old when the watch began
    assert later[int(0.95 * len(later))] <= 60


def test_the_free_plan_affords_no_polling(tmp_path: Path) -> None:
    free = get_settings(data_dir=tmp_path, requests_per_day=100, requests_per_month=None)
    assert affordable_interval(free, Ledger.open(free), T0) is None


def test_the_watch_pauses_once_the_budget_is_spent_and_says_so_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # A day budget that affords polling with nothing spent, and none once a few polls are.
    clock = [T0 + timedelta(minutes=16)]

    # The smallest day budget that affords polling with nothing spent: one poll spends it.
    def affords(budget: int) -> bool:
        settings = get_settings(data_dir=tmp_path, requests_per_day=budget)
        return affordable_interval(settings, _spent(tmp_path, 0), clock[0]) is not None

    budget = next(b for b in range(100, 5000) if affords(b))
    settings = get_settings(data_dir=tmp_path, requests_per_day=budget)
    api = FakeApi([T0], clock, spend=settings)
    watch, _ = watch_for(settings, api, clock)
    caplog.set_level(logging.INFO, logger="flows.state_watch")
    waits = [watch.step(api), watch.step(api)]  # type: ignore[arg-type]
    assert api.polls == 1
    assert waits[1] == PAUSE_S
    assert caplog.text.count("state watch paused") == 1
    assert watch.step(api) == PAUSE_S  # type: ignore[arg-type]
    assert caplog.text.count("state watch paused") == 1  # said once
    assert Ledger.open(settings).day_count == api.polls


def _spent(tmp_path: Path, day: int, month: int | None = None) -> Ledger:
    ledger = Ledger.open(get_settings(data_dir=tmp_path))
    ledger.day_count, ledger.month_count = day, day if month is None else month
    return ledger
