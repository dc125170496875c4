"""Freshness: how long after HyperTracker publishes a state analysts have it.

The simulator publishes states at its irregular 15-30 minute intervals on a compressed clock
(``follow_wall_clock(speed)``). The watch ``serve`` runs (:class:`flows.state_watch.StateWatch`,
the code itself, in this process) reads the simulator's clock and its waits are divided by
the same speed; each run it starts is a fresh ``ht run`` process against the Prefect
server of the production section, exactly as in production. A run is not compressed: the
simulated clock stops while it runs and then moves on by the run's real duration, so
``published_at`` (``analytics.duckdb``'s time, on the simulated clock) is the detection lag
compressed plus the run's real seconds.

The ``*/15`` cron is evaluated on the same states and the same runs: the first cron tick
at or after each ``lastUpdate``, plus that state's measured run-to-publish seconds. Its
requests: the run that finds the state, plus one status request for every other tick.
Requests are HyperTracker's, the ones the quota counts (Hyperliquid's info API is free).
(Running ``serve`` itself under a compressed clock is not possible: its cron and its watch
read the wall clock; the budget is the Pulse plan's, 50,000 requests a month.)

``python -m bench.freshness OUT_JSON PREFECT_URL STATES SPEED`` with ``HT_DATA_DIR`` set.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from bench.common import MARKET_START, SEED, WORK, child_env, say

PULSE_REQUESTS_PER_MONTH = 50_000
CRON_S = 15 * 60


def _percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (small samples: no interpolation beyond the data)."""
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * q // 100))
    return ordered[int(rank) - 1]


def _cron_tick_at_or_after(t: datetime) -> datetime:
    base = t.replace(minute=0, second=0, microsecond=0)
    ticks = -(-(t - base).total_seconds() // CRON_S)
    return base + timedelta(seconds=ticks * CRON_S)


def child(out: Path, prefect_url: str, states: int, speed: float) -> None:
    from flows.hypertracker.client import HyperTrackerClient, StateStatus
    from flows.quota import Ledger
    from flows.settings import get_settings
    from flows.state_watch import StateWatch
    from simulator.server import SimulatedApi

    token = secrets.token_urlsafe(24)
    api = SimulatedApi(seed=SEED, token=token, start=MARKET_START).start()
    os.environ.update(
        {"HT_BASE_URL": api.base_url, "HT_API_TOKEN": token, "HT_HYPERLIQUID_URL": api.info_url,
         "PREFECT_API_URL": prefect_url}
    )  # fmt: skip
    settings = get_settings()
    # A day's start, after the history and the production section's states: the watch's
    # budget is then the whole day's share of the month (the README's ~1,660 for Pulse).
    start = datetime.fromisoformat(os.environ["BENCH_FRESHNESS_START"])
    api.set_time(start)
    api.follow_wall_clock(speed)
    runs: list[dict[str, Any]] = []
    analytics = settings.analytics_db_path

    def start_run(status: StateStatus) -> None:
        started_sim = api.now
        api.set_time(started_sim)  # the clock stands still while the run runs
        spawn = time.time()
        proc = subprocess.run(
            [sys.executable, "-m", "flows.cli", "run"], env=os.environ.copy(), cwd=WORK,
            capture_output=True, text=True,
        )  # fmt: skip
        wall = time.time() - spawn
        if proc.returncode != 0:
            sys.stderr.write(proc.stdout[-3000:] + proc.stderr[-3000:])
            raise SystemExit(f"ht run failed (exit {proc.returncode})")
        to_publish = analytics.stat().st_mtime - spawn
        runs.append(
            {
                "snapshot_id": status.snapshot_id,
                "last_update": status.last_update.isoformat(),
                "run_started_sim": started_sim.isoformat(),
                "detection_s": (started_sim - status.last_update).total_seconds(),
                "run_to_publish_s": round(to_publish, 3),
                "run_wall_s": round(wall, 3),
                "lag_s": round((started_sim - status.last_update).total_seconds() + to_publish, 3),
                "polls_before": watch.polls,
                "requests_before": _quota_requests(api),
            }
        )
        say("freshness", f"state {status.snapshot_id}: run started "
            f"{runs[-1]['detection_s']:.0f} s (simulated) after lastUpdate, published "
            f"{to_publish:.1f} s later; {watch.polls} polls so far")  # fmt: skip
        api.set_time(started_sim + timedelta(seconds=wall))
        api.follow_wall_clock(speed)

    watch = StateWatch(settings, start_run, now=lambda: api.now)
    stop = threading.Event()
    with HyperTrackerClient(settings, on_request=lambda: Ledger.open(settings).record()) as client:
        # One more than asked: the first state (the one current at the start) is a warm-up.
        while len(runs) < states + 1:
            wait_s = watch.step(client)
            stop.wait(wait_s / speed)
        end_sim = api.now
        requests_end = _quota_requests(api)
        polls_end = watch.polls
    api_paths = [r.path for r in api.request_log]
    api.stop()
    measured = runs[1:]
    # Requests from the warm-up's run on to the last measured run's end, per state.
    n_requests = requests_end - runs[1]["requests_before"]
    n_polls = polls_end - runs[1]["polls_before"]
    poll_lags = [r["lag_s"] / 60 for r in measured]
    cron_lags, cron_requests = [], 0.0
    per_run = n_requests - n_polls  # the runs' own requests in the window
    per_run /= len(measured)
    for i, r in enumerate(measured):
        last = datetime.fromisoformat(r["last_update"])
        tick = _cron_tick_at_or_after(last)
        cron_lags.append(((tick - last).total_seconds() + r["run_to_publish_s"]) / 60)
        following = (
            datetime.fromisoformat(measured[i + 1]["last_update"]) if i + 1 < len(measured)
            else end_sim
        )  # fmt: skip
        ticks = int(-(-(following - tick).total_seconds() // CRON_S))
        cron_requests += per_run + max(ticks - 1, 0)
    minutes = (end_sim - datetime.fromisoformat(runs[1]["last_update"])).total_seconds() / 60
    states_per_day = len(measured) / minutes * 1440
    result = {
        "speed": speed,
        "states": len(measured),
        "simulated_minutes": round(minutes, 1),
        "poll_interval_floor_s": settings.poll_interval_s,
        "requests_per_month": settings.requests_per_month,
        "poll": {
            "lag_minutes_p50": round(_percentile(poll_lags, 50), 2),
            "lag_minutes_p95": round(_percentile(poll_lags, 95), 2),
            "requests_per_state": round(n_requests / len(measured), 2),
            "polls_per_state": round(n_polls / len(measured), 2),
            "requests_per_day_at_this_rate": round(n_requests / len(measured) * states_per_day),
        },
        "cron": {
            "lag_minutes_p50": round(_percentile(cron_lags, 50), 2),
            "lag_minutes_p95": round(_percentile(cron_lags, 95), 2),
            "requests_per_state": round(cron_requests / len(measured), 2),
            "requests_per_day_at_this_rate": round(cron_requests / len(measured) * states_per_day),
        },
        "runs": runs,
        "status_requests": sum(p.endswith("/state/status") for p in api_paths),
    }
    out.write_text(json.dumps(result, indent=2))


def _quota_requests(api: Any) -> int:
    """HyperTracker requests so far: what the plan's quota counts. A run's requests to
    Hyperliquid's info API (the market, the price history; free) are not among them."""
    return sum(r.path != "/info" for r in api.request_log)


def section_freshness(data_dir: Path, prefect_url: str, start: datetime, *, states: int,
                      speed: float) -> dict[str, Any]:  # fmt: skip
    """Run the child (its own environment: the Pulse plan, the bench's isolation)."""
    out = WORK / "freshness.json"
    env = child_env(
        HT_DATA_DIR=str(data_dir),
        HT_REQUESTS_PER_MONTH=str(PULSE_REQUESTS_PER_MONTH),
        HT_POLL="true",
        PREFECT_HOME=str(WORK / "prefect-production-client"),
        BENCH_FRESHNESS_START=start.isoformat(),
    )
    say("freshness", f"{states} states at {speed:g}x, the watch on the Pulse plan's budget")
    subprocess.run(
        [sys.executable, "-m", "bench.freshness", str(out), prefect_url, str(states), str(speed)],
        env=env, cwd=WORK, check=True,
    )  # fmt: skip
    result = json.loads(out.read_text())
    say("freshness", f"poll {result['poll']}; cron {result['cron']}")
    return result


def markdown(results: dict[str, Any]) -> str:
    result = results.get("freshness")
    if not result:
        return ""
    rows = []
    for mode in ("poll", "cron"):
        r = result[mode]
        rows.append(
            f"| {mode} | {r['lag_minutes_p50']:.2f} | {r['lag_minutes_p95']:.2f} | "
            f"{r['requests_per_state']:.2f} | {r['requests_per_day_at_this_rate']:,} |"
        )
    return "\n".join(
        [
            "## Freshness (published_at - lastUpdate, simulated minutes)",
            "",
            f"{result['states']} states over {result['simulated_minutes']} simulated minutes at "
            f"{result['speed']:g}x; each run a fresh `ht run` (not compressed). The cron row "
            "is the */15 schedule on the same states and runs.",
            "",
            "| schedule | p50 | p95 | requests / state | requests / day |",
            "|---|---:|---:|---:|---:|",
            *rows,
            "",
        ]
    )


if __name__ == "__main__":
    child(Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]), float(sys.argv[4]))
