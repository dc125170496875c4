"""What every benchmark section shares: paths, sizes, the child-process environment, timing.

Each measured thing runs in its own child process, started by :func:`run_child`, so that
its peak memory is its own (``os.wait4`` returns the rusage of that one child) and its
settings come from the environment alone, as a user's would.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
PROJECT_ROOT = BENCH_DIR.parent
WORK = BENCH_DIR / "work"
RESULTS = BENCH_DIR / "results"
PREFECT_HOME = WORK / "prefect"
DBT_PROJECT = WORK / "dbt_project"
PEER_VENV = BENCH_DIR / ".venv"

SEED = 7
# A fixed market so that every run of the bench sees the same payloads. History starts a
# day after the market does, so listings and biases have already moved, and at 20:00 UTC:
# the measured runs then land late in a day that already holds 40 snapshots, the costly
# end of the daily marts' day-sized incremental rebuild (a run at 00:30 rebuilds 1).
MARKET_START = datetime(2026, 10, 1, tzinfo=UTC)
HISTORY_START = MARKET_START + timedelta(days=1, hours=20)
CADENCE = timedelta(minutes=30)
WINDOWS = ("24h", "7d", "30d", "all")
# What the archive records as the URL of a generated body (the live runs record the
# simulator's real address).
ARCHIVED_BASE_URL = "http://127.0.0.1/api/external"


@dataclass(frozen=True)
class Sizes:
    """How big each section is: ``full`` for the report, ``quick`` for a smoke run."""

    history_days: float
    short_days: float
    runs: int
    warmups: int
    load_snapshots: int
    load_repeats: int
    workers: int = 2
    freshness_states: int = 8
    freshness_speed: float = 180.0  # simulated seconds per wall-clock second

    @property
    def history_end(self) -> datetime:
        return HISTORY_START + timedelta(days=self.history_days)


FULL = Sizes(history_days=30, short_days=1, runs=5, warmups=1, load_snapshots=25, load_repeats=3)
QUICK = Sizes(
    history_days=2, short_days=1, runs=2, warmups=1, load_snapshots=5, load_repeats=1,
    freshness_states=2,
)  # fmt: skip


# --------------------------------------------------------------------------- progress

# Children inherit the bench's start (wall clock), so every line counts from the same zero.
_T0 = float(os.environ.setdefault("BENCH_T0", str(time.time())))


def say(section: str, message: str) -> None:
    """One progress line, stamped with the time since the bench started."""
    elapsed = time.time() - _T0
    print(f"[{int(elapsed // 60):02d}:{elapsed % 60:04.1f}] {section:<10} {message}", flush=True)


# ----------------------------------------------------------------------- environment


def child_env(**overrides: str) -> dict[str, str]:
    """The environment of a measured child: offline, its own Prefect home, bench dbt copy.

    ``HT_*`` variables and ``PREFECT_API_URL`` of the caller are dropped, so a user's
    ``.env`` or running Prefect server never leaks into the measurements.
    """
    env = {
        k: v for k, v in os.environ.items() if not k.startswith("HT_") and k != "PREFECT_API_URL"
    }
    env.update(
        {
            "PYTHONPATH": str(PROJECT_ROOT),
            "PYTHONUNBUFFERED": "1",
            "PREFECT_HOME": str(PREFECT_HOME),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
            "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180",
            # Runs log at INFO to Prefect's API as `serve` does; only the console is quieter.
            "PREFECT_LOGGING_LEVEL": "INFO",
            "PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL": "WARNING",
            "HT_DBT_PROJECT_DIR": str(DBT_PROJECT),
            # No `.env` at all: settings read the project root's wherever the child runs.
            "HT_ENV_FILE": "",
            # dbt's own console lines (one per node) would drown the progress; its log file
            # under bench/work/dbt_project/logs keeps them.
            "DBT_QUIET": "true",
            # The simulator has no rate limit and no quota (as in flows/demo.py).
            "HT_REQUESTS_PER_MINUTE": "1000000",
            "HT_REQUESTS_PER_MONTH": "100000000",
            "HT_SEGMENTS_REFRESH_HOURS": "1000000",
        }
    )
    env.update(overrides)
    return env


# -------------------------------------------------------------------- child processes


@dataclass
class ChildResult:
    """How a child process ended, how long it took and how much memory it held at most."""

    returncode: int
    wall_s: float
    peak_rss_bytes: int
    tree_peak_rss_bytes: int
    output: dict[str, Any] = field(default_factory=dict)


def _tree_rss(pid: int) -> int:
    """RSS of ``pid`` and all its descendants, from /proc (0 when gone)."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat") as fh:
                stat = fh.read()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2 :].split()
        p = int(entry.name)
        children.setdefault(int(fields[1]), []).append(p)
        rss[p] = int(fields[21]) * os.sysconf("SC_PAGE_SIZE")
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        total += rss.get(p, 0)
        todo.extend(children.get(p, []))
    return total


def run_child(
    args: Sequence[str],
    *,
    env: dict[str, str],
    out_json: Path | None = None,
    cwd: Path = WORK,
    python: str = sys.executable,
) -> ChildResult:
    """Run ``python args...``; wall time, its own peak RSS (wait4) and its tree's (sampled).

    The child writes its findings to ``out_json``; they come back in ``output``.
    """
    started = time.perf_counter()
    proc = subprocess.Popen([python, *args], env=env, cwd=cwd)
    peak_tree = 0
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak_tree
        while not stop.wait(0.1):
            peak_tree = max(peak_tree, _tree_rss(proc.pid))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    stop.set()
    sampler.join()
    proc.returncode = os.waitstatus_to_exitcode(status)
    output = json.loads(out_json.read_text()) if out_json and out_json.exists() else {}
    return ChildResult(
        returncode=proc.returncode,
        wall_s=wall,
        peak_rss_bytes=usage.ru_maxrss * 1024,
        tree_peak_rss_bytes=max(peak_tree, usage.ru_maxrss * 1024),
        output=output,
    )


def peak_rss_self() -> int:
    """This process's peak RSS so far, in bytes."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


# ---------------------------------------------------------------------------- numbers


def median(values: Iterable[float]) -> float:
    vals = list(values)
    return statistics.median(vals) if vals else float("nan")


def dir_bytes(path: Path) -> int:
    """Bytes of every file under ``path`` (0 when absent)."""
    if not path.exists():
        return 0
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, default=str))


def mb(n: float) -> str:
    return f"{n / 1e6:,.1f} MB"
