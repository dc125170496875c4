"""Start a run as soon as HyperTracker has a new state: serve's watch of the state's clock.

HyperTracker publishes a state every 15-30 minutes, and its status
(``/hypertracker/state/status``, one cheap request) says when the next is due: not before
``nextUpdate``, usually by ``nextUpdateThreshold``. A fixed cron sees a new state 7.5
minutes late on average. The watch sleeps until ``nextUpdate``, then asks the status every
poll interval until ``lastUpdate`` moves, and starts a run at once; past the threshold it
backs off. The cron stays: it is the fallback, and the only schedule when the plan's quota
cannot afford polling.

The quota decides how often the watch may ask (:func:`affordable_interval`): a day's polls
must fit in what the day's budget leaves after the runs the day may still need. When the
budget affords none, the watch pauses and says so once.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from flows.hypertracker.client import HyperTrackerClient, StateStatus
from flows.lake.from_archive import archive_for
from flows.quota import Ledger, requests_per_run
from flows.settings import Settings

log = logging.getLogger(__name__)

# HyperTracker's cadence: a state every 15-30 minutes; the midpoint is what a day expects.
MEAN_STATE_INTERVAL_S = 22.5 * 60
# When the budget affords no polling, look again this much later (a new day, a new month).
PAUSE_S = 600.0
# A run started for a state that, this long after, is still not archived (the run was
# cancelled because another one was running, or failed) is started again.
RETRY_RUN_S = 180.0


def _seconds_left_today(now: datetime) -> float:
    tomorrow = (now + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    return (tomorrow - now).total_seconds()


def daily_budget_left(settings: Settings, ledger: Ledger, now: datetime) -> float | None:
    """Requests the rest of today may spend (None: the plan sets no limit).

    A monthly budget is spread evenly over the month's remaining days, so that polling
    never eats what the end of the month needs. Today's share is fixed at the day's start
    (what the month had left then, over the days left including today) and what today spent
    comes off it: a share recomputed from the month's remainder after each request would
    shrink by only 1/days_left of it, and let one day spend a third more than its share.
    """
    left: list[float] = []
    if settings.requests_per_day:
        left.append(settings.requests_per_day - ledger.day_count)
    if settings.requests_per_month:
        first_next = (now.replace(day=1) + timedelta(days=32)).replace(day=1)
        days_left = (first_next.date() - now.date()).days
        month_left_at_dawn = settings.requests_per_month - (ledger.month_count - ledger.day_count)
        left.append(month_left_at_dawn / days_left - ledger.day_count)
    return min(left) if left else None


def affordable_interval(settings: Settings, ledger: Ledger, now: datetime) -> float | None:
    """Seconds between two polls that the rest of today's budget affords; None: no polling.

    What the rest of the day needs is set aside first: a run for every state still to come
    (``requests_per_run`` each) and one request for each cron run that finds nothing new.
    What is left is shared between the states still to come; a state's window for polls is
    ``nextUpdate``-``nextUpdateThreshold`` (15 minutes), and the state lands in it
    uniformly, so polling every P seconds costs about ``window / 2 / P + 1`` polls a state.
    """
    budget = daily_budget_left(settings, ledger, now)
    if budget is None:
        return settings.poll_interval_s
    seconds = _seconds_left_today(now)
    states = max(seconds / MEAN_STATE_INTERVAL_S, 1.0)
    cron_runs = seconds / 900.0  # the fallback's runs, at their most frequent: every 15 min
    reserve = states * requests_per_run(settings, with_segments=False) + cron_runs
    polls_per_state = (budget - reserve) / states
    if polls_per_state < 2:
        return None
    window_s = 15 * 60
    return max(settings.poll_interval_s, window_s / 2 / (polls_per_state - 1))


@dataclass
class WatchState:
    """What the watch knows between two polls."""

    status: StateStatus | None = None
    started_for: str | None = None  # the snapshot id a run was last started for
    started_at: float = 0.0
    paused: bool = False


class StateWatch:
    """The watch loop: run it in a thread (``run(stop)``) beside Prefect's runner.

    ``start_run`` starts an ELT run now (serve: a flow run of the deployment); ``now`` and
    ``sleep`` are the clock (tests and the freshness benchmark give their own).
    """

    def __init__(
        self,
        settings: Settings,
        start_run: Callable[[StateStatus], None],
        *,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.start_run = start_run
        self.now = now
        self.monotonic = monotonic
        self.state = WatchState()
        self.polls = 0

    def run(self, stop: threading.Event) -> None:
        """Poll and start runs until ``stop`` is set; never raises (a failed poll is retried)."""
        with HyperTrackerClient(self.settings, on_request=self._count_request) as client:
            while not stop.is_set():
                try:
                    wait_s = self.step(client)
                except Exception as exc:  # the watch must outlive any one failed poll
                    log.warning(
                        "state watch: %s (%s); asking again in 60 s",
                        " ".join(str(exc).split()),
                        type(exc).__name__,
                        exc_info=bool(os.environ.get("HT_DEBUG")),
                    )
                    wait_s = 60.0
                stop.wait(wait_s)

    def _count_request(self) -> None:
        # A fresh ledger each time: the watch lives for months, across days and months.
        Ledger.open(self.settings).record()

    def step(self, client: HyperTrackerClient) -> float:
        """One poll if one is due and affordable; returns the seconds to wait before the next."""
        now = self.now()
        interval = affordable_interval(self.settings, Ledger.open(self.settings), now)
        if interval is None:
            if not self.state.paused:
                log.info(
                    "state watch paused: the API budget left today affords no polling; the "
                    "cron (%s) carries on alone",
                    self.settings.schedule_cron,
                )
                self.state.paused = True
            return PAUSE_S
        if self.state.paused:
            log.info("state watch resumed: the budget affords a poll every %.0f s", interval)
            self.state.paused = False
        status = client.status()
        self.polls += 1
        self.state.status = status
        self._start_run_if_new(status)
        return self._wait_after(status, interval, now)

    def _start_run_if_new(self, status: StateStatus) -> None:
        sid = status.snapshot_id
        archive = archive_for(self.settings)
        if archive.has_snapshot(sid):
            return
        since = self.monotonic() - self.state.started_at
        if self.state.started_for == sid and since < RETRY_RUN_S:
            return  # started already; its run is on its way
        log.info(
            "state watch: new HyperTracker state %s%s: starting a run",
            status.last_update.isoformat(),
            " (again: the last start did not archive it)" if self.state.started_for == sid else "",
        )
        self.state.started_for, self.state.started_at = sid, self.monotonic()
        self.start_run(status)

    def _wait_after(self, status: StateStatus, interval: float, now: datetime) -> float:
        """Until ``nextUpdate`` if it is ahead; else the poll interval, doubled for every
        interval past the threshold (capped): a late state is rarely minutes away."""
        if status.next_update and status.next_update > now:
            return (status.next_update - now).total_seconds() + 1.0
        threshold = status.next_update_threshold
        if threshold is None or now <= threshold:
            return interval
        # Capped before the power: a state days late (an API that stopped updating) would
        # overflow a float.
        late_intervals = min((now - threshold).total_seconds() / interval, 32.0)
        backed_off = min(interval * 2**late_intervals, self.settings.poll_max_interval_s)
        return max(interval, backed_off)
