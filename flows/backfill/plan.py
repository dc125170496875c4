"""What a backfill will cost, computed before it starts: what ``ht backfill`` prints.

Two depths (history-endpoints.md):

- **quick**: one export per coin and window (``/exports/coins/{coin}/segment-metrics``):
  the last 7 days at 12-hour spacing plus the latest state, every cohort at once. The start
  date does not apply: the export is always the last week.
- **deep**: ``/position-metrics`` per coin x cohort x window, from the start date (or the
  window's history start, if later) until ``end``, 1000 states a page. HyperTracker
  refreshes every 15-30 minutes, so a span holds between span/30 min and span/15 min
  states; the plan's figure is the midpoint (22.5 min, as flows/state_watch.py expects a
  day), with the range beside it. Every series costs at least one call, even one with no
  rows. ``end`` is the API's newest state (``lastUpdate`` of ``/state/status``, asked once
  when a backfill is planned): the API's clock, not ours. Against the real API the two
  differ by the minutes since the last refresh; the simulator's clock is wherever a demo or
  a test put it (weeks from ours), and counting to our clock overstated such a plan's calls
  many times over (and its progress bar's total with them).

Every API call is assumed to cost one request of the quota (the export's redirect is the
call; its pre-signed file is assumed free). The plan then sets the calls against the plan's
settings (``requests_per_minute``/``day``/``month``) and the ledger at ``now`` (our clock,
as the ledger counts days and months), and says what is left for the scheduled runs
(:func:`scheduled_requests_per_day`): each new state costs ``requests_per_run``, each cron
run that finds none 1 request, the cohort ladder 1 a day.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import takewhile
from typing import Literal

from cronsim import CronSim

from flows.hypertracker.history import HISTORY_START, MAX_LIMIT
from flows.quota import Ledger, requests_per_run
from flows.settings import Settings

Depth = Literal["quick", "deep"]
COHORTS = 16
MEAN_STATE_INTERVAL_S = 22.5 * 60  # as flows/state_watch.py
MIN_STATE_INTERVAL_S, MAX_STATE_INTERVAL_S = 15 * 60, 30 * 60
EXPORT_STATES = 2 * 7 + 1  # a week at 12-hour spacing, plus the latest


@dataclass(frozen=True, slots=True)
class Plan:
    """A backfill's cost and what it leaves. ``None`` shares: the plan sets no such cap."""

    depth: Depth
    coins: tuple[str, ...]
    windows: tuple[str, ...]
    starts: dict[str, datetime]  # per window, after the history start (deep only)
    end: datetime  # the newest data asked for: the API's newest state (deep)
    series: int
    calls: int
    calls_low: int
    calls_high: int
    states: int  # states a series is expected to give
    duration_s: float  # the calls at the per-minute limit
    scheduled_per_day: int  # what the scheduled runs spend on an ordinary day
    day_used: int
    day_share: float | None  # of today's cap, with the backfill
    day_left_after: int | None
    scheduled_rest_of_today: int
    month_used: int
    month_share: float | None
    month_left_after: int | None
    scheduled_rest_of_month: int
    days_at_daily_cap: int | None  # days the backfill takes when it must share a daily cap

    @property
    def fits(self) -> bool:
        """True when the scheduled runs still get what they need today and this month."""
        day_ok = self.day_left_after is None or self.day_left_after >= self.scheduled_rest_of_today
        month_ok = (
            self.month_left_after is None or self.month_left_after >= self.scheduled_rest_of_month
        )
        return day_ok and month_ok

    def lines(self) -> list[str]:
        """The plan as ``ht backfill`` prints it before asking for confirmation."""
        what = (
            "exports (last 7 days, every 12 h, all cohorts)"
            if self.depth == "quick"
            else f"position-metrics ({COHORTS} cohorts each)"
        )
        out = [
            f"backfill {self.depth}: {len(self.coins)} coin(s) x {len(self.windows)} window(s), "
            f"{what}: {self.series:,} series of ~{self.states:,} states",
        ]
        if self.depth == "deep":
            out.append(
                "from "
                + ", ".join(f"{w} {t:%Y-%m-%d %H:%M}" for w, t in self.starts.items())
                + f" until {self.end:%Y-%m-%d %H:%M} UTC (the API's newest state)"
            )
        spread = (
            ""
            if self.calls_low == self.calls_high
            else f" ({self.calls_low:,}-{self.calls_high:,} for states every 30-15 min)"
        )
        out.append(
            f"requests: ~{self.calls:,}{spread}, ~{_duration(self.duration_s)} at the rate limit"
        )
        if self.day_share is not None:
            out.append(
                f"today: {self.day_used:,} used + {self.calls:,} = {self.day_share:.0%} of "
                f"the daily cap; {self.day_left_after:,} left, the scheduled runs need "
                f"~{self.scheduled_rest_of_today:,} more today"
            )
        if self.month_share is not None:
            out.append(
                f"this month: {self.month_used:,} used + {self.calls:,} = {self.month_share:.0%} "
                f"of the monthly cap; {self.month_left_after:,} left, the scheduled runs need "
                f"~{self.scheduled_rest_of_month:,} more this month"
            )
        if self.days_at_daily_cap and self.days_at_daily_cap > 1:
            out.append(
                f"at the daily cap, beside the scheduled runs, it takes "
                f"{self.days_at_daily_cap} days"
            )
        if not self.fits:
            out.append(
                "it does not fit: the scheduled runs would run out of requests; choose fewer "
                "coins or windows, a later start, or the quick depth"
            )
        return out


def plan_backfill(
    settings: Settings,
    ledger: Ledger,
    *,
    depth: Depth,
    coins: Sequence[str],
    windows: Sequence[str] | None = None,
    start: datetime | None = None,
    now: datetime | None = None,
    end: datetime | None = None,
    page_limit: int = MAX_LIMIT,
) -> Plan:
    """The plan of a backfill of ``coins`` x ``windows`` (default: the settings') at ``now``
    (the quota's clock), of the history until ``end`` (the API's newest state; default
    ``now``)."""
    now = _utc(now or datetime.now(UTC))
    end = now if end is None else _utc(end)
    wins = tuple(dict.fromkeys(settings.windows if windows is None else windows))
    unknown = [w for w in wins if w not in HISTORY_START]
    if unknown:
        raise ValueError(f"unknown window(s) {unknown}; expected some of {tuple(HISTORY_START)}")
    if not coins or not wins:
        raise ValueError("a backfill needs at least one coin and one window")
    if depth == "quick":
        series = len(coins) * len(wins)
        calls = low = high = series
        states = EXPORT_STATES
        starts: dict[str, datetime] = {}
    elif depth == "deep":
        if start is None:
            raise ValueError("a deep backfill needs a start date")
        starts = {w: max(_utc(start), HISTORY_START[w]) for w in wins}
        per_coin = {
            interval: sum(COHORTS * _pages(starts[w], end, interval, page_limit) for w in wins)
            for interval in (MEAN_STATE_INTERVAL_S, MAX_STATE_INTERVAL_S, MIN_STATE_INTERVAL_S)
        }
        series = len(coins) * COHORTS * len(wins)
        calls = len(coins) * per_coin[MEAN_STATE_INTERVAL_S]
        low = len(coins) * per_coin[MAX_STATE_INTERVAL_S]
        high = len(coins) * per_coin[MIN_STATE_INTERVAL_S]
        longest = max((end - t).total_seconds() for t in starts.values())
        states = max(0, math.ceil(longest / MEAN_STATE_INTERVAL_S))
    else:
        raise ValueError(f"unknown depth {depth!r}; expected quick or deep")

    per_day = scheduled_requests_per_day(settings, now)
    rest_of_day = (_next_day(now) - now).total_seconds() / 86_400
    rest_of_month = (_next_month(now) - now).total_seconds() / 86_400
    day_cap, month_cap = settings.requests_per_day, settings.requests_per_month
    days = None
    if day_cap:
        spare = day_cap - per_day
        days = math.ceil(calls / spare) if spare > 0 else None
    return Plan(
        depth=depth,
        coins=tuple(coins),
        windows=wins,
        starts=starts,
        end=end,
        series=series,
        calls=calls,
        calls_low=low,
        calls_high=high,
        states=states,
        duration_s=calls * 60.0 / settings.requests_per_minute,
        scheduled_per_day=per_day,
        day_used=ledger.day_count,
        day_share=(ledger.day_count + calls) / day_cap if day_cap else None,
        day_left_after=day_cap - ledger.day_count - calls if day_cap else None,
        scheduled_rest_of_today=math.ceil(per_day * rest_of_day),
        month_used=ledger.month_count,
        month_share=(ledger.month_count + calls) / month_cap if month_cap else None,
        month_left_after=month_cap - ledger.month_count - calls if month_cap else None,
        scheduled_rest_of_month=math.ceil(per_day * rest_of_month),
        days_at_daily_cap=days,
    )


def scheduled_requests_per_day(settings: Settings, now: datetime) -> int:
    """What the scheduled runs spend in a day: a run per new state, 1 per empty run, ladder.

    Runs come from the cron (``HT_SCHEDULE_CRON``, or ``HT_SCHEDULE_INTERVAL_S``); at most
    one a state finds a new state (64 a day), the others stop after their first request.
    Polling is left out: it spends only what the budget leaves and pauses when none is.
    """
    if settings.schedule_interval_s:
        runs = 86_400 // settings.schedule_interval_s
    else:
        day = now.replace(hour=0, minute=0, second=0, microsecond=0, tzinfo=None)
        # CronSim yields the times after the one it is given: start just before midnight.
        fires = CronSim(settings.schedule_cron, day - timedelta(seconds=1))
        runs = sum(1 for _ in takewhile(lambda t: t < day + timedelta(days=1), fires))
    states = round(86_400 / MEAN_STATE_INTERVAL_S)
    with_state = min(runs, states)
    return with_state * requests_per_run(settings, with_segments=False) + (runs - with_state) + 1


def eta_s(remaining_calls: float, requests_per_minute: int, paced_s: float | None) -> float:
    """Seconds left for ``remaining_calls``: at the rate limit, or at the pace measured so far
    (``paced_s``: the progress bar's own estimate) when that is slower.

    The pace alone misleads under the client's limiter (any rolling minute): a minute's calls
    go out in a burst, then it waits; the pace of the burst promises a fraction of the time.
    """
    return max(remaining_calls * 60.0 / requests_per_minute, paced_s or 0.0)


def _pages(start: datetime, end: datetime, interval_s: float, limit: int) -> int:
    """Calls for one series: its states at ``interval_s``, ``limit`` a page, at least one."""
    states = max(0.0, (end - start).total_seconds()) / interval_s
    return max(1, math.ceil(states / limit))


def _duration(seconds: float) -> str:
    minutes = round(seconds / 60)
    if minutes < 60:
        return f"{max(minutes, 1)} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes:02d} min"
    return f"{hours / 24:.1f} days"


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _next_day(now: datetime) -> datetime:
    return (now + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)


def _next_month(now: datetime) -> datetime:
    return (now.replace(day=1) + timedelta(days=32)).replace(
        day=1, hour=0, minute=0, second=0, microsecond=0
    )
