"""Scheduled runs in a long-lived process, as ``serve`` runs them.

The child (``python -m bench.scheduled CMD_FD RES_FD``, ``HT_DATA_DIR`` set) starts the
simulated API in-process (as ``flows/demo.py`` does), then obeys one JSON command per line
on ``CMD_FD`` and answers one JSON line on ``RES_FD``:

- ``{"cmd": "boot"}``: an empty flow, so that Prefect's API server is up before the runs;
- ``{"cmd": "setup"}``: load what the lake holds and the warehouse does not, dbt build,
  publish (see :func:`setup`);
- ``{"cmd": "run", "at": ISO}``: freeze the simulated clock at ``at`` (a state's publication
  time), then ``elt_flow()``: snapshot over HTTP -> lake -> load -> dbt build -> publish;
- ``{"cmd": "quit"}``.

The parent (:class:`ScheduledWorker`) keeps two of these alive, one per history, and
alternates runs between them, so both see the same states and the same machine load.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
import traceback
from datetime import datetime
from typing import Any

from bench.common import MARKET_START, SEED, WORK


def _summary(summary: Any, wall: float) -> dict[str, Any]:
    dbt = summary.dbt
    snap = summary.snapshot
    return {
        "outcome": summary.outcome,
        "error": summary.error,
        "wall_s": round(wall, 3),
        "seconds": summary.seconds,
        "timings": summary.timings,
        "snapshot_id": getattr(snap, "snapshot_id", None),
        "bytes_fetched": getattr(snap, "bytes_fetched", None),
        "load_rows": getattr(summary.load, "rows", None),
        "dbt_nodes": len(dbt.results) if dbt else 0,
        "dbt_node_seconds": round(sum(r["seconds"] for r in dbt.results), 3) if dbt else 0,
        "dbt_slowest": [
            {"name": r["name"], "type": r["resource_type"], "seconds": r["seconds"]}
            for r in sorted(dbt.results, key=lambda r: -r["seconds"])[:6]
        ]
        if dbt
        else [],
        "publish_seconds": getattr(summary.publish, "seconds", None),
    }


def setup() -> dict[str, Any]:
    """Load and build what the lake holds but the warehouse does not, without Prefect.

    The 30-day history was built by the measured rebuild and has nothing to add; the 1-day
    one is loaded here with the production functions (plain dbt: this is set-up, not a
    measurement). Prefect starts with the first run, a warm-up.
    """
    from flows.publish import publish
    from flows.settings import get_settings
    from flows.transform import build
    from flows.warehouse import load_lake

    settings = get_settings()
    t = time.perf_counter()
    loaded = load_lake(settings)
    if loaded.load_id is None:
        return {"wall_s": round(time.perf_counter() - t, 3), "loaded_snapshots": 0}
    outcome = build(settings, unit_tests=True)
    if not outcome.success:
        raise RuntimeError(f"dbt build failed in set-up: {outcome.failures[:3]}")
    publish(settings)
    return {
        "wall_s": round(time.perf_counter() - t, 3),
        "loaded_snapshots": len(loaded.snapshot_ids),
        "dbt_nodes": len(outcome.results),
    }


def boot_flow() -> None:
    """An empty flow: starts Prefect's temporary API server, as a process's first run does."""
    from prefect import flow

    @flow(name="bench-boot")
    def boot() -> None:
        return None

    boot()


def child(cmd_fd: int, res_fd: int) -> None:
    from simulator.server import SimulatedApi

    token = secrets.token_urlsafe(24)
    api = SimulatedApi(seed=SEED, token=token, start=MARKET_START).start()
    os.environ.update(
        {"HT_BASE_URL": api.base_url, "HT_API_TOKEN": token, "HT_HYPERLIQUID_URL": api.info_url}
    )
    t = time.perf_counter()
    from flows.pipeline import elt_flow

    import_s = time.perf_counter() - t
    commands = os.fdopen(cmd_fd, "r")
    answers = os.fdopen(res_fd, "w")
    for line in commands:
        request = json.loads(line)
        answer: dict[str, Any] = {"cmd": request["cmd"]}
        try:
            if request["cmd"] == "quit":
                break
            if request["cmd"] == "boot":
                t = time.perf_counter()
                boot_flow()
                answer.update(wall_s=round(time.perf_counter() - t, 3))
            elif request["cmd"] == "setup":
                answer.update(setup(), import_s=round(import_s, 3))
            elif request["cmd"] == "run":
                api.set_time(datetime.fromisoformat(request["at"]))
                t = time.perf_counter()
                summary = elt_flow()
                answer.update(_summary(summary, time.perf_counter() - t))
        except Exception as exc:
            answer.update(error=f"{type(exc).__name__}: {exc}", trace=traceback.format_exc())
        answers.write(json.dumps(answer, default=str) + "\n")
        answers.flush()
    api.stop()


class ScheduledWorker:
    """The parent's handle on one long-lived child; ``peak_rss_bytes`` once it has quit."""

    def __init__(self, name: str, env: dict[str, str]) -> None:
        self.name = name
        cmd_r, self._cmd_w = os.pipe()
        self._res_r, res_w = os.pipe()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.scheduled", str(cmd_r), str(res_w)],
            env=env,
            cwd=WORK,
            pass_fds=(cmd_r, res_w),
        )
        os.close(cmd_r)
        os.close(res_w)
        self._cmd = os.fdopen(self._cmd_w, "w")
        self._res = os.fdopen(self._res_r, "r")
        self.peak_rss_bytes = 0

    def ask(self, cmd: str, **fields: Any) -> dict[str, Any]:
        """Send a command and wait for its answer."""
        self.send(cmd, **fields)
        return self.receive()

    def send(self, cmd: str, **fields: Any) -> None:
        self._cmd.write(json.dumps({"cmd": cmd, **fields}) + "\n")
        self._cmd.flush()

    def receive(self) -> dict[str, Any]:
        line = self._res.readline()
        if not line:
            raise RuntimeError(f"scheduled worker {self.name} ended (exit {self.proc.wait()})")
        answer = json.loads(line)
        if answer.get("trace"):
            print(answer["trace"], file=sys.stderr)
        return answer

    def quit(self) -> None:
        self._cmd.write(json.dumps({"cmd": "quit"}) + "\n")
        self._cmd.flush()
        self._cmd.close()
        _, status, usage = os.wait4(self.proc.pid, 0)
        self.proc.returncode = os.waitstatus_to_exitcode(status)
        self.peak_rss_bytes = usage.ru_maxrss * 1024
        self._res.close()


if __name__ == "__main__":
    child(int(sys.argv[1]), int(sys.argv[2]))
