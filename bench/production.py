"""Scheduled runs the way production runs them: a fresh ``ht run`` process per state.

Under ``serve`` (and a cron'd ``ht run``) every run is a new process that imports the
pipeline, creates its flow run on a Prefect server that is already up, runs, and exits. This
section measures exactly that: a local ``prefect server start`` (as ``serve`` starts one,
flows/prefect_api.py) and the simulated API run for the whole section; each run is
``python -m flows.cli run`` with ``PREFECT_API_URL`` pointing at that server.

Where the time goes comes from the run's own records and from timestamps:

- spawn -> the flow run's ``created`` (Prefect API): interpreter, imports, settings, CLI;
- ``created`` -> the flow body's start (``RunSummary.started_at``): Prefect's flow start
  (the first task's own start-up is in the first step, "quota");
- ``RunSummary.timings`` (state/last_run.json) for the steps, and the snapshot's ``phases``
  (fetch, checks, archive, market, lake) inside its step;
- the ``dbt build`` step split by dbt's own log (``dbt/logs/dbt.log`` in the data folder):
  start + parse (invocation start -> "Concurrency:"), run ("Concurrency:" -> "Finished
  running"), the rest (Prefect task, artifacts, results);
- after publish, inside the flow: alerts and the moves (untimed), then the price history;
- ``finished_at`` -> the heatmap report line on stdout: ``ht run``'s report (``serve``
  draws it on its own schedule instead); then the process's exit;
- spawn -> ``analytics.duckdb`` written (its mtime): how long a new state waits for analysts.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from bench.common import MARKET_START, SEED, WORK, child_env, median, say

# The parts of a run, in order; every one is in seconds.
PARTS = (
    "interpreter + imports",
    "Prefect flow start",
    "quota + catch up",
    "fetch",
    "checks",
    "archive",
    "market",
    "lake",
    "snapshot (tasks, rest)",
    "load",
    "dbt start + parse",
    "dbt run",
    "dbt (rest)",
    "publish",
    "alerts, moves, record (untimed)",
    "price history (after the publish)",
    "report (ht run only)",
    "exit",
)


@contextlib.contextmanager
def prefect_server(home: Path) -> Iterator[str]:
    """``prefect server start`` on a free loopback port, as ``serve`` starts it (services on)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    home.mkdir(parents=True, exist_ok=True)
    env = child_env(PREFECT_HOME=str(home), PREFECT_UI_ENABLED="false")
    with open(home / "server.log", "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1",
             "--port", str(port)],
            env=env, cwd=WORK, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}/api"
    try:
        deadline = time.monotonic() + 180
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"the Prefect server stopped; see {home / 'server.log'}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError("the Prefect server did not answer within 180 s")
            time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


def run_env(data_dir: Path, api: Any, token: str, prefect_url: str, **extra: str) -> dict[str, str]:
    """A fresh run's environment: the bench's isolated one, the simulator, the server."""
    return child_env(
        HT_DATA_DIR=str(data_dir),
        HT_BASE_URL=api.base_url,
        HT_API_TOKEN=token,
        HT_HYPERLIQUID_URL=api.info_url,
        PREFECT_API_URL=prefect_url,
        PREFECT_HOME=str(WORK / "prefect-production-client"),
        **extra,
    )


def ht_run(env: dict[str, str]) -> dict[str, float | int]:
    """``python -m flows.cli run`` in a fresh process; wall-clock marks of what it printed."""
    marks: dict[str, float | int] = {"spawn": time.time()}
    proc = subprocess.Popen(
        [sys.executable, "-m", "flows.cli", "run"],
        env=env, cwd=WORK, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    assert proc.stdout is not None
    tail: list[str] = []
    for line in proc.stdout:
        if line.startswith("# HyperTracker ELT run"):
            marks["summary printed"] = time.time()
        elif line.startswith("heatmap report"):
            marks["report done"] = time.time()
        tail = [*tail[-30:], line]
    marks["returncode"] = proc.wait()
    marks["exit"] = time.time()
    if marks["returncode"] != 0:
        sys.stderr.write("".join(tail))
    return marks


def _ts(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def prefect_marks(url: str) -> dict[str, float]:
    """The newest ELT flow run's creation and its first task's start (epoch seconds)."""
    with httpx.Client(base_url=url, timeout=10) as client:
        runs = client.post(
            "/flow_runs/filter",
            json={"flows": {"name": {"any_": ["hypertracker-elt"]}}, "sort": "START_TIME_DESC",
                  "limit": 1},
        ).json()  # fmt: skip
        run = runs[0]
        tasks = client.post(
            "/task_runs/filter",
            json={"flow_runs": {"id": {"any_": [run["id"]]}}, "sort": "EXPECTED_START_TIME_ASC",
                  "limit": 1},
        ).json()  # fmt: skip
    first = tasks[0].get("start_time") or tasks[0]["expected_start_time"]
    return {"flow run created": _ts(run["created"]), "first task started": _ts(first)}


_LOG_LINE = re.compile(r"^(?:\x1b\[0m)?(\d\d):(\d\d):(\d\d\.\d+) \[(\w+)\s*\]")


def dbt_build_marks(data_dir: Path) -> dict[str, float]:
    """Seconds of the last ``dbt build`` in dbt's log: start + parse, then the run.

    An invocation starts at "Running with dbt="; its nodes start after "Concurrency:"; it
    ends at "Finished running N models, ..." (a ``dbt source freshness`` run by hand
    finishes "running N sources" and is skipped).
    """
    stamps = []  # (seconds of the day, text) of dbt's info lines
    # dbt rolls its log over at 10 MB: the build may have begun in the rolled-over file.
    logs = data_dir / "dbt" / "logs"
    text = "".join(
        path.read_text(errors="replace") for path in (logs / "dbt.log.1", logs / "dbt.log")
        if path.exists()
    )  # fmt: skip
    for line in text.splitlines():
        m = _LOG_LINE.match(line)
        if m and m[4] == "info":
            stamps.append((int(m[1]) * 3600 + int(m[2]) * 60 + float(m[3]), line))
    finished = max(
        i for i, (_, text) in enumerate(stamps) if "Finished running" in text and "model" in text
    )
    began = max(i for i in range(finished) if "Running with dbt=" in stamps[i][1])
    nodes = next(i for i in range(began, finished) if "Concurrency:" in stamps[i][1])
    return {
        "dbt start + parse": round(stamps[nodes][0] - stamps[began][0], 3),
        "dbt run": round(stamps[finished][0] - stamps[nodes][0], 3),
    }


def split(marks: dict[str, Any], pref: dict[str, float], last: dict[str, Any],
          dbt: dict[str, float], published: float) -> dict[str, float]:  # fmt: skip
    """Each part of one run (:data:`PARTS`), from its marks and records; ``published``:
    when ``analytics.duckdb`` was written (epoch seconds)."""
    t = last["timings"]
    phases = (last.get("snapshot") or {}).get("phases") or {}
    started, finished = _ts(last["started_at"]), _ts(last["finished_at"])
    steps_end = started + sum(t.values())
    report_done = marks.get("report done", marks.get("summary printed", marks["exit"]))
    parts = {
        "interpreter + imports": pref["flow run created"] - marks["spawn"],
        # Creating the run, its state changes, the engine: until the flow's body begins.
        "Prefect flow start": started - pref["flow run created"],
        "quota + catch up": t.get("quota", 0) + t.get("catch up", 0),
        **{p: phases.get(p, 0.0) for p in ("fetch", "checks", "archive", "market", "lake")},
        "snapshot (tasks, rest)": t.get("snapshot", 0) - sum(phases.values()),
        "load": t.get("load", 0),
        **dbt,
        "dbt (rest)": t.get("dbt build", 0) - sum(dbt.values()),
        "publish": t.get("publish", 0),
        "alerts, moves, record (untimed)": finished - steps_end,
        "price history (after the publish)": t.get("price history", 0),
        "report (ht run only)": report_done - finished,
        "exit": marks["exit"] - report_done,
    }
    out = {k: round(v, 3) for k, v in parts.items()}
    out["first task started (after creation)"] = round(
        pref["first task started"] - pref["flow run created"], 3
    )
    out["total"] = round(marks["exit"] - marks["spawn"], 3)
    out["total without the report"] = round(out["total"] - out["report (ht run only)"], 3)
    out["spawn -> published"] = round(published - marks["spawn"], 3)
    return out


def one_run(data_dir: Path, env: dict[str, str], prefect_url: str) -> dict[str, Any]:
    marks = ht_run(env)
    last = json.loads((data_dir / "state" / "last_run.json").read_text())
    if marks["returncode"] != 0 or last.get("outcome") != "published":
        raise SystemExit(
            f"ht run did not publish (exit {marks['returncode']}): {last.get('error')}"
        )
    published = (data_dir / "warehouse" / "analytics.duckdb").stat().st_mtime
    parts = split(marks, prefect_marks(prefect_url), last, dbt_build_marks(data_dir), published)
    return {
        "snapshot_id": (last.get("snapshot") or {}).get("snapshot_id"),
        "parts": parts,
        "timings": last["timings"],
        "phases": (last.get("snapshot") or {}).get("phases"),
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }


def setup_history(data_dir: Path) -> None:
    """Load and build what the lake holds and the warehouse lacks (bench/scheduled.py)."""
    subprocess.run(
        [sys.executable, "-c", "from bench.scheduled import setup; print(setup())"],
        env=child_env(HT_DATA_DIR=str(data_dir)), cwd=WORK, check=True,
    )  # fmt: skip


def section_production(
    sizes: Any, homes: dict[str, Path], states: list[str], url: str
) -> dict[str, Any]:
    """Warm-up then ``sizes.runs`` fresh-process runs per history, alternating; medians.

    ``states``: the publication times to run at (ISO); ``url``: the Prefect server's API.
    """
    import secrets

    from simulator.server import SimulatedApi

    for name, path in homes.items():
        if not (path / "warehouse" / "analytics.duckdb").exists():
            say("production", f"[{name}] loading its history (set-up, not measured)")
            setup_history(path)
    token = secrets.token_urlsafe(24)
    api = SimulatedApi(seed=SEED, token=token, start=MARKET_START).start()
    out: dict[str, Any] = {name: {"runs": [], "warmups": []} for name in homes}
    loads: list[list[float]] = []
    names = list(homes)
    try:
        for i, at in enumerate(states):
            kind = "warmups" if i < sizes.warmups else "runs"
            # Alternate who goes first: the second run finds the simulator's cache warm.
            for name in names if i % 2 == 0 else names[::-1]:
                api.set_time(datetime.fromisoformat(at))
                res = one_run(homes[name], run_env(homes[name], api, token, url), url)
                out[name][kind].append(res)
                loads.append(res["load_average"])
                p = res["parts"]
                say("production", f"[{name}] {kind[:-1]} {i + 1}/{len(states)} "
                    f"{res['snapshot_id']}: {p['total']:.2f}s (imports "
                    f"{p['interpreter + imports']:.2f}, flow start "
                    f"{p['Prefect flow start']:.2f}, dbt {p['dbt start + parse']:.2f}+"
                    f"{p['dbt run']:.2f}, report {p['report (ht run only)']:.2f}) "
                    f"load {res['load_average'][0]}")  # fmt: skip
    finally:
        api.stop()
    for name in homes:
        runs = out[name]["runs"]
        keys = list(runs[0]["parts"])
        out[name]["median"] = {k: round(median(r["parts"][k] for r in runs), 3) for k in keys}
    short, long_ = (out[n]["median"] for n in homes)
    out["flatness"] = {
        k: round(long_[k] / short[k], 3) for k in ("total", "total without the report")
    }
    out["load_average_during"] = {
        "min_1min": min(x[0] for x in loads), "max_1min": max(x[0] for x in loads),
        "median_1min": median(x[0] for x in loads),
    }  # fmt: skip
    return out


def markdown(results: dict[str, Any]) -> str:
    result = results.get("production")
    if not result:
        return ""
    names = [n for n in result if isinstance(result[n], dict) and "median" in result[n]]
    lines = [
        "## Production-mode scheduled run (fresh `ht run` process, Prefect server up)",
        "",
        f"Median of {len(result[names[0]]['runs'])} runs after a warm-up, in seconds.",
        "",
        "| part | " + " | ".join(names) + " |",
        "|---|" + "---:|" * len(names),
    ]
    for part in [*PARTS, "total", "total without the report", "spawn -> published"]:
        cells = " | ".join(f"{result[n]['median'].get(part, float('nan')):.2f}" for n in names)
        lines.append(f"| {part} | {cells} |")
    lines += [
        "",
        f"Flatness (30 d / 1 d medians): total {result['flatness']['total']}, without the "
        f"report {result['flatness']['total without the report']} (target <= 1.2).",
        f"Load average (1 min) at the runs' ends: {result['load_average_during']}.",
        "",
    ]
    return "\n".join(lines)


def targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """The production run's and the freshness's targets, as bench/report.py lists them."""
    out = []
    prod = results.get("production")
    if prod:
        long_name = f"{results['sizes']['history_days']:g} days"
        total = prod[long_name]["median"]["total"]
        out.append(
            {
                "name": f"production-mode run, {long_name} (fresh process)",
                "measured": f"{total:.2f} s",
                "target": "<= 8 s",
                "met": total <= 8,
            }
        )
        flat = prod["flatness"]["total"]
        out.append(
            {
                "name": "production-mode flatness (30 d / 1 d)",
                "measured": f"{flat:.2f}",
                "target": "<= 1.2",
                "met": flat <= 1.2,
            }
        )
    fresh = results.get("freshness")
    if fresh:
        p95, per_day = (
            fresh["poll"]["lag_minutes_p95"],
            fresh["poll"]["requests_per_day_at_this_rate"],
        )
        out.append(
            {
                "name": "freshness p95 with polling (Pulse budget)",
                "measured": f"{p95:.2f} min, {per_day:,} requests/day",
                "target": "<= 2 min, <= ~1,660/day",
                "met": p95 <= 2 and per_day <= 1660,
            }
        )
    return out  # fmt: skip
