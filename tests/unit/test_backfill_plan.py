"""The backfill plan: calls, time at the rate limit, and what the quota leaves the runs."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from flows.backfill.plan import plan_backfill, scheduled_requests_per_day
from flows.quota import Ledger
from flows.settings import Settings

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
