"""Backfill throughput against the rate limit (issue 15): ``ht backfill`` at a plan's rate.

The simulator enforces the Pulse plan's 60 requests a minute (any rolling minute; beyond it
429 with ``Retry-After``: ``SimulatedApi(requests_per_minute=...)``), and the backfills are
the production command, ``python -m flows.cli backfill ... --yes``, each a fresh process,
with ``HT_REQUESTS_PER_MINUTE`` at the same 60 (and Pulse's 50,000 a month):

- **deep**: two coins x the four windows x 16 cohorts from a start date 17.5 days before
  the simulator's newest state: more than 1000 states, so two pages a series (the API's
  1000 a page), 256 position-metrics calls: one minute's burst, then over 3 minutes of
  fetching at the limit;
- **quick**: the top 25 coins (one heatmap request ranks them: the data folder has no live
  heatmap) x four windows: 100 exports.

The simulator computes a coin's rows from its whole market the first time a state is asked
for (a second or more per day of history on this machine) where the real API reads stored
rows; that is the simulator's cost, not the client's, so before the deep run the states of
its span are computed once (over HTTP, with no rate limit yet, not counted). The quick run
is measured cold. The clock is frozen (the backfill asks for the API's newest state: the
plan then counts the calls against the API's clock, not ours).

Measured, from the simulator's side (it runs in this process): every API request's arrival
and end; the statuses (429 = an overrun); pages per series; the fetch phase from the first
request to the last. The quota ledger (``state/quota.json``) must count the same requests
(pre-signed export files are free on both sides). Then the rest of the command from its
files: landing ends with the newest ``lake/backfill_states`` file, the build (Prefect,
load, dbt build) with ``analytics.duckdb`` being published, then the summary and the exit.

The throughput: with at most N requests in any rolling minute, n requests need at least
``floor((n - 1) / N)`` minutes between the first and the last (a burst of N each minute);
the share of the plan's rate is that least time over the time taken. A fetch that is
rate-bound is near 100%; the simulator's or the client's own seconds show as less.

``python -m bench.backfill OUT_JSON MODE`` (full or quick) runs the section's child.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import sys
import time
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from bench.common import MARKET_START, SEED, WORK, child_env, say

PLAN = "Pulse"
PER_MINUTE = 60  # the Pulse plan's rate (hypertracker-api.md; README's plan table)
PER_MONTH = 50_000
SHARE_TARGET = 0.90
# The simulator's newest state (its clock, frozen): 2026-10-19 12:00 UTC, 18.5 days into
# the market; the deep start date is a day after the market's start.
SIM_NOW = MARKET_START + timedelta(days=18, hours=12)
DEEP_START = MARKET_START + timedelta(days=1)
EXPORT_DAYS = 7  # what a quick backfill's exports cover
SIZES = {
    "full": {"deep_coins": ("BTC", "ETH"), "deep_windows": None, "quick_top": 25},
    "quick": {"deep_coins": ("BTC",), "deep_windows": "all", "quick_top": 3},
}


# ---------------------------------------------------------------------------- the child


def _timed_api(**kwargs: Any) -> Any:
    """The simulated API, noting each request's path, arrival and end (monotonic seconds)."""
    from simulator.server import SimulatedApi

    class TimedApi(SimulatedApi):
        timings: list[tuple[str, float, float]]

        def _handle(self, h: Any, method: str) -> None:
            arrived = time.monotonic()
            try:
                super()._handle(h, method)
            finally:
                self.timings.append((urlsplit(h.path).path, arrived, time.monotonic()))

    api = TimedApi(**kwargs)
    api.timings = []
    return api


def _logged_limit() -> Any:
    """The plan's limit, noting each decision: (arrival, admitted)."""
    from simulator.faults import RateLimit

    class LoggedLimit(RateLimit):
        decisions: list[tuple[float, bool]]

        def admit(self) -> int | None:
            answer = super().admit()
            self.decisions.append((self._clock(), answer is None))
            return answer

    limit = LoggedLimit(PER_MINUTE)
    limit.decisions = []
    return limit


def _short_of_the_window(decisions: list[tuple[float, bool]]) -> list[float]:
    """For each refused request: how many ms before the oldest of the minute's N admitted
    left the window it arrived (what the client's pacing was off by, at the server)."""
    admitted: list[float] = []
    short = []
    for at, ok in decisions:
        if ok:
            admitted.append(at)
        elif len(admitted) >= PER_MINUTE:
            short.append(round((admitted[-PER_MINUTE] + 60.0 - at) * 1000, 1))
    return short


def _warm(api: Any, token: str, coins: tuple[str, ...], start: datetime) -> float:
    """Compute the deep span's states for ``coins`` once (4 states a request: the market
    keeps 4; coins taken in turn, so each state is emitted once for all of them)."""
    import httpx

    t0 = time.perf_counter()
    m = api.market
    k_lo, k_hi = m.state_index_at(start), m.state_index_at(api.now)
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=api.base_url, headers=headers, timeout=600) as http:
        for k in range(k_lo, k_hi + 1, 4):
            span = {
                "start": m.state_time(k).isoformat(),
                "end": m.state_time(min(k + 3, k_hi)).isoformat(),
                "limit": "4",
            }
            for coin in coins:
                http.get(f"/position-metrics/coin/{coin}/segment/1", params=span).raise_for_status()
    return time.perf_counter() - t0


def _newest_mtime(folder: Path, pattern: str) -> float | None:
    times = [p.stat().st_mtime for p in folder.glob(pattern)]
    return max(times) if times else None


def _backfill(
    api: Any, token: str, name: str, args: list[str], *, deep_start: datetime | None
) -> dict[str, Any]:
    """One ``ht backfill`` in a fresh process, measured from the simulator and its files."""
    from simulator.server import API_PREFIX

    data_dir = WORK / "backfill" / name
    env = child_env(
        HT_DATA_DIR=str(data_dir),
        HT_BASE_URL=api.base_url,
        HT_API_TOKEN=token,
        HT_HYPERLIQUID_URL=api.info_url,
        HT_REQUESTS_PER_MINUTE=str(PER_MINUTE),
        HT_REQUESTS_PER_MONTH=str(PER_MONTH),
        PREFECT_HOME=str(WORK / "prefect-backfill"),
    )
    # A fresh minute: an earlier run's requests are out of the window (the client's limiter
    # lives in its process; a run right after another would meet the other's last minute).
    api.rate_limit = _logged_limit()
    api.clear_request_log()
    api.timings.clear()
    offset = time.time() - time.monotonic()  # wall = monotonic + offset
    load_before = os.getloadavg()[0]
    say("backfill", f"{name}: ht backfill {' '.join(args)} (Pulse: {PER_MINUTE}/min)")
    spawn = time.monotonic()
    out_path = WORK / "backfill" / f"{name}.out"
    with open(out_path, "w") as out:
        proc = subprocess.run(
            [sys.executable, "-m", "flows.cli", "backfill", *args, "--yes"],
            env=env, cwd=WORK, stdout=out, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
    exited = time.monotonic()
    said = out_path.read_text(errors="replace")
    if proc.returncode != 0:
        say("backfill", f"{name}: exit {proc.returncode}; the end of its output:\n{said[-3000:]}")

    log = api.request_log
    api_calls = [r for r in log if not r.path.startswith("/files/")]
    statuses = Counter(r.status for r in api_calls)
    timed = [t for t in api.timings if t[0].startswith(API_PREFIX)]
    arrivals = sorted(t[1] for t in timed)
    first, last_arrival = arrivals[0], arrivals[-1]
    last_end = max(t[2] for t in timed)
    admitted = api.rate_limit.admitted
    span_s = last_arrival - first
    fastest_s = (admitted - 1) // PER_MINUTE * 60.0
    busy_s = sum(t[2] - t[1] for t in api.timings if t[1] >= first)
    max_in_minute = max(
        sum(1 for a in arrivals[i:] if a < t + 60.0) for i, t in enumerate(arrivals)
    )
    ledger = json.loads((data_dir / "state" / "quota.json").read_bytes())
    landed = _newest_mtime(data_dir / "lake" / "backfill_states", "date=*/*.parquet")
    published = _newest_mtime(data_dir / "warehouse", "analytics.duckdb")
    land_end = (landed - offset) if landed else last_end
    build_end = (published - offset) if published else exited

    series = Counter(
        (r.path, r.query.get("positionRecencyTimeframe"))
        for r in api_calls
        if "/position-metrics/" in r.path and r.status == 200
    )
    exports = [r for r in api_calls if "/exports/" in r.path and r.status == 302]
    calls = sum(series.values()) if series else len(exports)
    coins = {r.path.split("/coin/")[1].split("/")[0] for r in api_calls if "/coin/" in r.path} or {
        r.path.split("/coins/")[1].split("/")[0] for r in exports
    }
    plan_line = next((line for line in said.splitlines() if line.startswith("requests: ~")), "")
    planned = re.match(r"requests: ~([\d,]+)(?: \(([\d,]+)-([\d,]+))?", plan_line)
    end_line = next((line for line in said.splitlines() if " until " in line), "")
    result: dict[str, Any] = {
        "args": args,
        "returncode": proc.returncode,
        "coins": len(coins),
        "requests_simulator": len(api_calls),
        "requests_ledger": ledger.get("month_count", 0),
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "overruns_429": statuses.get(429, 0),
        "refused_by_rate_limit": api.rate_limit.refused,
        "refused_ms_short_of_the_window": _short_of_the_window(api.rate_limit.decisions),
        "file_fetches": len(log) - len(api_calls),
        "history_calls": calls,
        "series": len(series) if series else len(exports),
        "pages_per_series": (
            {
                "min": min(series.values()),
                "max": max(series.values()),
                "mean": round(sum(series.values()) / len(series), 2),
            }
            if series
            else {"min": 1, "max": 1, "mean": 1.0}
        ),
        "plan_line": plan_line,
        "plan_calls": int(planned[1].replace(",", "")) if planned else None,
        "plan_range": (
            [int(planned[2].replace(",", "")), int(planned[3].replace(",", ""))]
            if planned and planned[2]
            else None
        ),
        "plan_end_line": end_line,
        "fetch_seconds": round(last_end - first, 2),
        "first_to_last_request_s": round(span_s, 2),
        "requests_per_minute": round((len(arrivals) - 1) / span_s * 60, 1) if span_s else None,
        "fastest_allowed_s": fastest_s,
        "share_of_plan_rate": round(fastest_s / span_s, 4) if span_s and fastest_s else None,
        "max_requests_in_a_rolling_minute": max_in_minute,
        "server_busy_share": round(busy_s / (last_end - first), 4) if last_end > first else None,
        "seconds": {
            "start-up + plan (to the first request)": round(first - spawn, 2),
            "fetch": round(last_end - first, 2),
            "land": round(land_end - last_end, 2),
            "build (Prefect, load, dbt build, publish)": round(build_end - land_end, 2),
            "summary + exit": round(exited - build_end, 2),
            "total": round(exited - spawn, 2),
        },
        "load_average": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "output_tail": said[-1500:],
    }
    if deep_start is not None:
        m = api.market
        newest = m.state_time(m.state_index_at(api.now))
        days = (newest - deep_start).total_seconds() / 86_400
        windows = len({w for _, w in series})
        result |= {
            "days": round(days, 2),
            "windows": windows,
            "states_in_span": m.state_index_at(newest) - m.state_index_at(deep_start) + 1,
            "calls_per_day_per_coin": round(calls / len(coins) / days, 2),
            "calls_per_day_per_coin_and_window": round(calls / len(coins) / windows / days, 2),
        }
    else:
        windows = len({r.path.rsplit("/", 1)[1] for r in exports})
        result |= {
            "days": EXPORT_DAYS,
            "windows": windows,
            "calls_per_coin": round(calls / len(coins), 2),
            "calls_per_day_per_coin": round(calls / len(coins) / EXPORT_DAYS, 3),
        }
    say("backfill", f"{name}: {len(api_calls)} requests (ledger {result['requests_ledger']}), "
        f"{result['overruns_429']} x 429, fetch {result['fetch_seconds']:.0f}s at "
        f"{result['requests_per_minute']}/min = {result['share_of_plan_rate']} of the "
        f"plan's rate; {result['seconds']}")  # fmt: skip
    return result


def _long_run_calls(coins: int, windows: int) -> dict[str, float]:
    """The plan's calls per day of history per coin for long spans (computed, not measured)."""
    from flows.backfill.plan import plan_backfill
    from flows.quota import Ledger
    from flows.settings import Settings

    wins = ("24h", "7d", "30d", "all")[-windows:]
    settings = Settings(_env_file=None, api_token="t", windows=",".join(wins))  # type: ignore[call-arg]  # noqa: S106
    ledger = Ledger(Path("/nonexistent/quota.json"), "-", "-")
    out = {}
    for days in (7, 30, 90, 180):  # 180: as far back as the 24h/7d/30d history goes
        start = SIM_NOW - timedelta(days=days)
        plan = plan_backfill(
            settings, ledger, depth="deep", coins=["C"] * coins, start=start, now=SIM_NOW,
            end=SIM_NOW,
        )  # fmt: skip
        out[f"{days} days"] = round(plan.calls / coins / days, 2)
    return out


def child(out: Path, mode: str) -> None:
    sizes = SIZES[mode]
    token = secrets.token_urlsafe(24)
    api = _timed_api(seed=SEED, token=token, start=MARKET_START, now=SIM_NOW).start()
    try:
        coins = sizes["deep_coins"]
        say("backfill", f"computing the deep span's states for {', '.join(coins)} once "
            "(the simulator's cost, not the client's; no rate limit yet)")  # fmt: skip
        warm_s = _warm(api, token, coins, DEEP_START)
        say("backfill", f"states computed in {warm_s:.0f}s")
        deep_args = [
            "--depth",
            "deep",
            "--coins",
            ",".join(coins),
            "--start",
            f"{DEEP_START:%Y-%m-%d}",
        ]
        if sizes["deep_windows"]:
            deep_args += ["--windows", sizes["deep_windows"]]
        deep = _backfill(api, token, "deep", deep_args, deep_start=DEEP_START)
        quick = _backfill(
            api, token, "quick", ["--depth", "quick", "--top", str(sizes["quick_top"])],
            deep_start=None,
        )  # fmt: skip
    finally:
        api.stop()
    result = {
        "plan": PLAN,
        "requests_per_minute": PER_MINUTE,
        "requests_per_month": PER_MONTH,
        "simulator_now": SIM_NOW.isoformat(),
        "warm_seconds": round(warm_s, 1),
        "deep": deep,
        "quick": quick,
        "deep_calls_per_day_per_coin_long_spans": _long_run_calls(1, deep["windows"]),
    }
    out.write_text(json.dumps(result, indent=2))


# -------------------------------------------------------------------------- the section


def section_backfill(quick: bool) -> dict[str, Any]:
    """Run the child (it hosts the simulator and starts each ``ht backfill``)."""
    out = WORK / "backfill.json"
    (WORK / "backfill").mkdir(parents=True, exist_ok=True)
    mode = "quick" if quick else "full"
    subprocess.run(
        [sys.executable, "-m", "bench.backfill", str(out), mode],
        env=child_env(), cwd=WORK, check=True,
    )  # fmt: skip
    return json.loads(out.read_text())


def _share(run: dict[str, Any]) -> str:
    share = run.get("share_of_plan_rate")
    return "-" if share is None else f"{share:.0%}"


def targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """The backfill's targets, as bench/report.py lists them."""
    bf = results.get("backfill")
    if not bf:
        return []
    deep, quick = bf["deep"], bf["quick"]
    share = deep.get("share_of_plan_rate") or 0.0
    overruns = deep["overruns_429"] + quick["overruns_429"]
    why = []
    if deep["returncode"] or quick["returncode"]:
        why.append(f"a backfill failed (exit {deep['returncode']} / {quick['returncode']})")
    if share < SHARE_TARGET:
        why.append(
            f"the fetch took {deep['first_to_last_request_s']:.0f} s where the limit allows "
            f"{deep['fastest_allowed_s']:.0f} s; the simulator was busy answering for "
            f"{deep['server_busy_share']:.0%} of it (the rest is the client's own time, its "
            "waits for the limit and any Retry-After)"
        )
    if overruns:
        shorts = deep.get("refused_ms_short_of_the_window", []) + quick.get(
            "refused_ms_short_of_the_window", []
        )
        when = f", arriving {', '.join(f'{x:g}' for x in shorts)} ms" if shorts else ""
        why.append(
            f"{overruns} request(s) met 429{when} "
            f"before the oldest of the minute's {PER_MINUTE} left the server's window: the "
            "client's limiter stamps a request when it takes its slot, and the quota ledger's "
            "write (two fsyncs) and the sending come after; when the request a minute earlier "
            "spent longer there than this one, the server counts both in one minute (each 429 "
            "then costs a Retry-After of 1 s)"
        )
    # Within one minute's allowance the limit never binds: nothing to measure the rate by.
    bound = deep["fastest_allowed_s"] > 0
    agree = all(r["requests_simulator"] == r["requests_ledger"] for r in (deep, quick))
    low, high = deep.get("plan_range") or (deep.get("plan_calls"), deep.get("plan_calls"))
    in_range = low is not None and low <= deep["history_calls"] <= high
    return [
        {
            "name": f"backfill throughput against the rate limit (deep, {PLAN} {PER_MINUTE}/min)",
            "target": f">= {SHARE_TARGET:.0%} of the plan's rate, 0 overruns",
            "measured": f"{_share(deep)} ({deep['requests_simulator']} requests in "
            f"{deep['first_to_last_request_s']:.0f} s), {overruns} overruns (429: deep "
            f"{deep['overruns_429']}, quick {quick['overruns_429']})",
            "met": (share >= SHARE_TARGET and overruns == 0 and not why) if bound else None,
            "why": "; ".join(why) if bound else "fewer requests than one minute allows",
        },
        {
            "name": "backfill requests: simulator's log = quota ledger",
            "target": "equal",
            "measured": f"deep {deep['requests_simulator']} = {deep['requests_ledger']}, "
            f"quick {quick['requests_simulator']} = {quick['requests_ledger']}",
            "met": agree,
            "why": "" if agree else "a request was sent without being recorded, or recorded "
            "and never sent",
        },
        {
            "name": "deep plan's calls (on the API's clock) vs calls made",
            "target": "within the plan's range",
            "measured": f"{deep['history_calls']} made; planned {deep['plan_line'][10:]}",
            "met": in_range,
            "why": "" if in_range else "the plan counts states at 15-30 min over the span to "
            "the API's newest state; the simulator's were outside it",
        },
    ]  # fmt: skip


def markdown(results: dict[str, Any]) -> str:
    bf = results.get("backfill")
    if not bf:
        return ""
    deep, quick = bf["deep"], bf["quick"]
    runs = (deep, quick)

    def row(label: str, cell: Any) -> str:
        return f"| {label} | " + " | ".join(str(cell(r)) for r in runs) + " |"

    def _planned(r: dict[str, Any]) -> str:
        low_high = r.get("plan_range")
        return f"{r['plan_calls']}" + (f" ({low_high[0]}-{low_high[1]})" if low_high else "")

    def pages(r: dict[str, Any]) -> str:
        p = r["pages_per_series"]
        return f"{p['mean']:g}" if p["min"] == p["max"] else f"{p['min']}-{p['max']} ({p['mean']})"

    lines = [
        "",
        f"## Backfill throughput against the rate limit (`ht backfill`, {bf['plan']} "
        f"{bf['requests_per_minute']}/min)",
        "",
        f"The simulator enforces {bf['requests_per_minute']} requests in any rolling minute "
        "(429 + Retry-After beyond it); each backfill is a fresh `python -m flows.cli "
        f"backfill ... --yes` with `HT_REQUESTS_PER_MINUTE={bf['requests_per_minute']}`. "
        f"Deep: its span's states computed once beforehand ({bf['warm_seconds']:.0f} s, the "
        "simulator's cost); quick: cold. The share of the plan's rate is the least time a "
        "rolling-minute limit allows between the first and the last request (a burst a "
        "minute) over the time taken.",
        "",
        "| | deep | quick |",
        "|---|---:|---:|",
        row("command", lambda r: "`" + " ".join(r["args"]) + "`"),
        row("coins x windows", lambda r: f"{r['coins']} x {r['windows']}"),
        row("days of history", lambda r: f"{r['days']:g}"),
        row("requests (simulator's log)", lambda r: r["requests_simulator"]),
        row("requests (quota ledger)", lambda r: r["requests_ledger"]),
        row("history calls (position-metrics / exports)", lambda r: r["history_calls"]),
        row("planned (range at states every 30-15 min)", _planned),
        row("series; pages per series", lambda r: f"{r['series']}; {pages(r)}"),
        row("429s received (overruns)", lambda r: r["overruns_429"]),
        row(
            "their arrival before the window allowed (ms)",
            lambda r: (
                ", ".join(f"{x:g}" for x in r.get("refused_ms_short_of_the_window", [])) or "-"
            ),
        ),
        row(
            "most arrivals in a rolling minute (refused included)",
            lambda r: r["max_requests_in_a_rolling_minute"],
        ),
        row("first to last request (s)", lambda r: f"{r['first_to_last_request_s']:.1f}"),
        row("the least the limit allows (s)", lambda r: f"{r['fastest_allowed_s']:.0f}"),
        row("**share of the plan's rate**", lambda r: f"**{_share(r)}**"),
        row(
            "requests per minute (with the first minute's burst)",
            lambda r: r["requests_per_minute"],
        ),
        row("simulator busy (share of the fetch)", lambda r: f"{r['server_busy_share']:.0%}"),
        row(
            "**calls per day of history per coin**", lambda r: f"**{r['calls_per_day_per_coin']}**"
        ),
    ]
    for part in deep["seconds"]:
        lines.append(row(f"{part} (s)", lambda r, p=part: f"{r['seconds'][p]:.1f}"))
    lines.append(row("load average (start, end)", lambda r: r["load_average"]))
    long = ", ".join(f"{k} {v}" for k, v in bf["deep_calls_per_day_per_coin_long_spans"].items())
    lines += [
        "",
        f"- deep per coin and window: {deep['calls_per_day_per_coin_and_window']} calls a day "
        f"of history over {deep['days']:g} days ({deep['states_in_span']} states: 16 cohorts "
        "x ceil(states / 1000) pages a window); the plan's figure for longer spans, all "
        f"{deep['windows']} window(s), per coin and day: {long} (1000 states a page last "
        f"10-21 days, so the cost per day falls towards {deep['windows']} x 16 x 64 / 1000 = "
        f"{deep['windows'] * 16 * 64 / 1000:.1f} as spans grow)",
        f"- quick: {quick['calls_per_coin']:g} calls a coin (one export per window, all 16 "
        f"cohorts, {EXPORT_DAYS} days at 12-hour spacing + the latest); its "
        f"{quick['requests_simulator']} requests include the one heatmap that ranks the top "
        "coins; pre-signed files (free): "
        f"{quick['file_fetches']}",
        f"- deep plan as printed: `{deep['plan_line']}`; `{deep['plan_end_line']}`",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    child(Path(sys.argv[1]), sys.argv[2])
