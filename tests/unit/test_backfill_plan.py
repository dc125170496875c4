"""The backfill plan: calls, time at the rate limit, and what the quota leaves the runs."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from rich.console import Console
from rich.progress import Progress

from flows.backfill.plan import eta_s, plan_backfill, scheduled_requests_per_day
from flows.backfill.run import Options, _EtaColumn, run_backfill
from flows.quota import Ledger
from flows.settings import Settings
from simulator import SimulatedApi

NOW = datetime(2026, 12, 2, 6, 0, tzinfo=UTC)
COINS = [f"C{i}" for i in range(330)]


def settings(**overrides: object) -> Settings:
    return Settings(_env_file=None, api_token="t", **overrides)  # type: ignore[arg-type, call-arg]


def ledger(day: int = 0, month: int = 0) -> Ledger:
    return Ledger(Path("/nonexistent/quota.json"), "2026-12-02", "2026-12", day, month)


def test_quick_is_one_call_per_coin_and_window() -> None:
    plan = plan_backfill(settings(), ledger(month=5_000), depth="quick", coins=COINS, now=NOW)
    assert plan.calls == 1_320  # as history-endpoints.md counts it
    assert plan.duration_s == pytest.approx(1_320)  # 60 a minute: 22 minutes
    assert plan.month_share == pytest.approx(6_320 / 50_000)
    assert plan.month_left_after == 50_000 - 6_320
    assert plan.day_share is None  # Pulse has no daily cap
    assert plan.fits
    assert "requests: ~1,320, ~22 min at the rate limit" in plan.lines()


def test_deep_everything_costs_what_the_reference_says() -> None:
    plan = plan_backfill(
        settings(),
        ledger(),
        depth="deep",
        coins=COINS,
        start=datetime(2026, 1, 1, tzinfo=UTC),
        now=NOW,
    )
    assert plan.starts["all"] == datetime(2026, 2, 19, tzinfo=UTC)  # the history's start
    assert plan.starts["24h"] == datetime(2026, 3, 19, tzinfo=UTC)
    assert plan.series == 330 * 16 * 4
    # "roughly 280k-540k calls" for ~285 days.
    assert 270_000 < plan.calls_low < plan.calls < plan.calls_high < 560_000
    assert not plan.fits
    assert any("it does not fit" in line for line in plan.lines())


def test_deep_for_a_few_coins_and_a_week() -> None:
    plan = plan_backfill(
        settings(windows="all"),
        ledger(),
        depth="deep",
        coins=["BTC", "ETH"],
        start=datetime(2026, 11, 25, 6, tzinfo=UTC),
        now=NOW,
    )
    # 7 days = 448 states at 22.5 min (672 at 15): one page a series, two at most.
    assert plan.calls == plan.calls_low == 2 * 16
    assert plan.calls_high == 2 * 16 * 1
    assert plan.states == 448
    assert plan.fits


def test_deep_counts_the_states_until_the_apis_newest_not_until_our_clock() -> None:
    # The integration tests' simulator: its clock a month behind ours, 1 h 30 of history.
    start = datetime(2026, 11, 2, tzinfo=UTC)
    api_newest = start + timedelta(hours=1, minutes=30)
    two = settings(windows="all,24h")
    plan = plan_backfill(
        two, ledger(), depth="deep", coins=["BTC", "ETH"], start=start, now=NOW,
        end=api_newest, page_limit=200,
    )  # fmt: skip
    assert plan.calls == plan.calls_high == 2 * 16 * 2  # one page a series
    assert plan.states == 4
    assert plan.duration_s == pytest.approx(64)
    assert plan.end == api_newest
    assert "until 2026-11-02 01:30 UTC (the API's newest state)" in plan.lines()[1]
    # Counted to our clock instead, the same backfill looked ten times as dear.
    ours = plan_backfill(
        two, ledger(), depth="deep", coins=["BTC", "ETH"], start=start, now=NOW, page_limit=200
    )
    assert ours.calls == 640
    # The quota is ours: today's and this month's rest come from `now`, not the API's clock.
    assert plan.scheduled_rest_of_today == ours.scheduled_rest_of_today
    assert plan.scheduled_rest_of_month == ours.scheduled_rest_of_month


def test_a_backfill_plans_the_calls_it_makes_against_an_api_a_month_behind(
    tmp_path: Path,
) -> None:
    start = datetime(2026, 11, 2, tzinfo=UTC)
    with SimulatedApi(token="t", start=start - timedelta(days=1), history_days=2) as api:
        api.set_time(start + timedelta(hours=1))
        ours = settings(
            base_url=api.base_url, data_dir=tmp_path, windows="all", requests_per_minute=100_000
        )
        options = Options(depth="deep", coins=("BTC",), top=None, windows=None, start=start)
        quiet = Console(quiet=True)
        outcome = run_backfill(
            ours, options, console=quiet, progress_console=quiet, confirm=None, force=False,
            build=lambda: None,
        )  # fmt: skip
        paths = [r.path for r in api.request_log]
    assert outcome.plan.end == api.last_update  # the newest state, asked once
    assert paths[0].endswith("/hypertracker/state/status")
    assert len(paths) == 1 + outcome.plan.calls == 1 + 16
    assert Ledger.open(ours).day_count == len(paths)


def test_the_eta_is_the_calls_left_at_the_rate_limit_unless_the_pace_is_slower() -> None:
    assert eta_s(120, 60, None) == 120
    assert eta_s(120, 60, 6.0) == 120  # a burst of the limiter's minute promises 6 s
    assert eta_s(120, 60, 300.0) == 300  # a slow server: the pace wins
    assert eta_s(50, 100, None) == 30
    with Progress(_EtaColumn(60), console=Console(file=io.StringIO())) as bar:
        task = bar.add_task("deep", total=200)
        bar.advance(task, 80)
        assert str(_EtaColumn(60).render(bar.tasks[0])) == "0:02:00"
        bar.advance(task, 120)
        assert str(_EtaColumn(60).render(bar.tasks[0])) == "0:00:00"


def test_a_daily_cap_is_shared_with_the_scheduled_runs() -> None:
    free = settings(requests_per_day=100, requests_per_month=None, schedule_cron="0 */2 * * *")
    assert scheduled_requests_per_day(free, NOW) == 73  # as the README's table says
    plan = plan_backfill(free, ledger(day=30), depth="quick", coins=COINS[:10], now=NOW)
    assert plan.day_share == pytest.approx(70 / 100)
    assert plan.day_left_after == 30
    assert plan.scheduled_rest_of_today == 55  # 18 of 24 hours left
    assert not plan.fits
    assert plan.days_at_daily_cap == 2  # 27 spare a day beside the runs
    assert any("it takes 2 days" in line for line in plan.lines())


def test_scheduled_runs_per_plan() -> None:
    assert scheduled_requests_per_day(settings(), NOW) == 64 * 6 + 32 + 1
    assert (
        scheduled_requests_per_day(settings(schedule_interval_s=3600, windows="all"), NOW)
        == 24 * 3 + 1
    )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"depth": "deep", "coins": ["BTC"]}, "needs a start date"),
        ({"depth": "quick", "coins": []}, "at least one coin"),
        ({"depth": "quick", "coins": ["BTC"], "windows": ["1h"]}, "unknown window"),
        ({"depth": "full", "coins": ["BTC"]}, "unknown depth"),
    ],
)
def test_refusals(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        plan_backfill(settings(), ledger(), now=NOW, **kwargs)
