"""The API quota ledger: how many requests this installation has spent, per UTC day and month.

HyperTracker counts requests across the whole API and per plan (Free: 100 a day; Pulse:
50k a month at 60 a minute). A scheduled job left running for months must never blow the
budget: before a run starts, the requests it may need are checked against what is left,
and a run that does not fit does not start and says when one can.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from flows import atomic
from flows.settings import Settings


class QuotaWouldBeExceeded(RuntimeError):
    """A run would spend more requests than the plan has left."""

    def __init__(self, message: str, next_possible: datetime) -> None:
        super().__init__(message)
        self.next_possible = next_possible


def requests_per_run(settings: Settings, *, with_segments: bool) -> int:
    """Requests one run may make: state before and after, each window, maybe the ladder.

    A state change mid-fetch costs a refetch; that is not budgeted up front (it is rare),
    but every request actually made is recorded.
    """
    return 2 + len(settings.windows) + (1 if with_segments else 0)


@dataclass
class Ledger:
    path: Path
    day: str
    month: str
    day_count: int = 0
    month_count: int = 0

    @classmethod
    def open(cls, settings: Settings, now: datetime | None = None) -> Ledger:
        now = now or datetime.now(UTC)
        path = settings.state_dir / "quota.json"
        day, month = now.strftime("%Y-%m-%d"), now.strftime("%Y-%m")
        ledger = cls(path=path, day=day, month=month)
        raw = _read(path)
        if raw.get("day") == day:
            ledger.day_count = int(raw.get("day_count", 0))
        if raw.get("month") == month:
            ledger.month_count = int(raw.get("month_count", 0))
        return ledger

    def check(self, settings: Settings, needed: int, now: datetime | None = None) -> None:
        """Raise ``QuotaWouldBeExceeded`` if ``needed`` more requests do not fit."""
        now = now or datetime.now(UTC)
        if settings.requests_per_day and self.day_count + needed > settings.requests_per_day:
            tomorrow = (now + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
            raise QuotaWouldBeExceeded(
                f"daily API budget: {self.day_count} of {settings.requests_per_day} requests "
                f"used today and a run needs {needed}; the next run can start after "
                f"{tomorrow:%Y-%m-%d %H:%M} UTC (HT_REQUESTS_PER_DAY sets the budget)",
                tomorrow,
            )
        if settings.requests_per_month and (
            self.month_count + needed > settings.requests_per_month
        ):
            first = (now.replace(day=1) + timedelta(days=32)).replace(
                day=1, hour=0, minute=0, second=0, microsecond=0
            )
            raise QuotaWouldBeExceeded(
                f"monthly API budget: {self.month_count} of {settings.requests_per_month} "
                f"requests used this month and a run needs {needed}; the next run can start "
                f"after {first:%Y-%m-%d %H:%M} UTC (HT_REQUESTS_PER_MONTH sets the budget)",
                first,
            )

    def record(self, requests: int = 1) -> None:
        """Add requests actually made and save the ledger atomically (before each is sent:
        a killed run's requests count too).

        Two processes may spend at once (a run, and serve's watch of the state): each adds
        to the ledger as it is on disk, under a file lock, never to a copy it read earlier.
        """
        now = datetime.now(UTC)
        self.day, self.month = now.strftime("%Y-%m-%d"), now.strftime("%Y-%m")
        with _exclusive(self.path):
            # Whoever writes the ledger holds this lock: a temporary file of it now is one a
            # killed writer left.
            for stale in self.path.parent.glob(f"{atomic.TMP_PREFIX}{self.path.name}*"):
                stale.unlink(missing_ok=True)
            on_disk = _read(self.path)
            self.day_count = on_disk.get("day_count", 0) if on_disk.get("day") == self.day else 0
            self.month_count = (
                on_disk.get("month_count", 0) if on_disk.get("month") == self.month else 0
            )
            self.day_count += requests
            self.month_count += requests
            self._save()

    def _save(self) -> None:
        payload = {
            "day": self.day,
            "day_count": self.day_count,
            "month": self.month,
            "month_count": self.month_count,
        }
        atomic.write_bytes(self.path, json.dumps(payload, indent=2).encode())


def _read(path: Path) -> dict:
    return json.loads(path.read_bytes()) if path.exists() else {}


@contextlib.contextmanager
def _exclusive(path: Path) -> Iterator[None]:
    """An OS lock beside the ledger (released by the kernel if its holder dies)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "a") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        yield
