"""`serve` as users leave it running: stopped by Ctrl-C or SIGTERM, idle or mid-run, and
killed outright then started again; and `ht run` killed outright. Each stop is quick and in
one line, nothing outlives the process, nothing is half-written, and a restart runs at most
one catch-up run."""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pytest

from flows.pipeline import elt_flow
from flows.settings import get_settings
from simulator.faults import Fault

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("prefect_harness")]
ROOT = Path(__file__).resolve().parents[2]
STOP_BOUND_S = 10
STOPPED_LINE = (
    r"serve stopped( \(a run in flight was abandoned after 8 s\))? on {signal}; "
    r"the next start goes on where it left off"
)


def descendants(pid: int) -> set[int]:
    """Every live process below ``pid`` (from /proc: no library needed)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found: set[int] = set()
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def flow_run_processes(pid: int) -> set[int]:
    """The flow-run processes (``python -m prefect.engine``) below ``pid``."""
    found = set()
    for child in descendants(pid):
        try:
            cmdline = Path(f"/proc/{child}/cmdline").read_bytes()
        except OSError:
            continue
        if b"prefect.engine" in cmdline:
            found.add(child)
    return found


def alive(pids: set[int]) -> set[int]:
    living = set()
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z":
            living.add(pid)
    return living


class Served:
    """`ht serve` in a fresh process with its own local Prefect server; its output collected."""

    def __init__(self, env_dir: Path, *, interval_s: int) -> None:
        child_env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
        child_env.update(
            {
                "HT_SCHEDULE_INTERVAL_S": str(interval_s),
                # The scheduler looks for due runs every 60 s by default; a test can't wait.
                "PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS": "2",
                "PREFECT_HOME": str(env_dir / "prefect-home"),
            }
        )
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "flows.cli", "serve"],
            cwd=ROOT,
            env=child_env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        self.started_at = datetime.now(UTC)

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def wait_for(self, text: str, *, after: int = 0, timeout: float = 300) -> int:
        """Wait until a line from index ``after`` on holds ``text``; return its index."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for i, line in enumerate(self.lines[after:], start=after):
                if text in line:
                    return i
            assert self.proc.poll() is None, f"serve ended early:\n{self.output[-4000:]}"
            time.sleep(0.2)
        pytest.fail(f"no {text!r} within {timeout} s:\n{self.output[-4000:]}")

    def stop(self, signum: int) -> tuple[float, int, str]:
        """Send ``signum``; return how long serve took to exit, its exit code and last line."""
        sent = time.monotonic()
        self.proc.send_signal(signum)
        code = self.proc.wait(timeout=60)
        took = time.monotonic() - sent
        self.reader.join(timeout=10)
        last = self.lines[-1].strip() if self.lines else ""
        return took, code, last

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def published_runs(data: Path) -> list[dict]:
    runs = data / "state" / "runs.jsonl"
    if not runs.exists():
        return []
    return [json.loads(line) for line in runs.read_text().splitlines() if line.strip()]


def wait_published(data: Path, served: Served, count: int, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if sum(r["outcome"] == "published" for r in published_runs(data)) >= count:
            return
        assert served.proc.poll() is None, served.output[-4000:]
        time.sleep(0.5)
    pytest.fail(f"fewer than {count} published runs within {timeout} s:\n{served.output[-4000:]}")


def assert_nothing_half_written(data: Path) -> None:
    assert not list((data / "archive" / "_incoming").glob("*"))
    assert not [p for p in data.rglob(".tmp-*") if p.is_file()]


def assert_every_state_published(data: Path) -> None:
    archived = {p.name.split("=")[1] for p in (data / "archive").glob("date=*/snapshot_id=*")}
    con = duckdb.connect(str(get_settings().analytics_db_path), read_only=True)
    try:
        published = {r[0] for r in con.execute("SELECT snapshot_id FROM lake.loads").fetchall()}
    finally:
        con.close()
    assert archived == published


def test_sigint_stops_an_idle_serve_quickly_in_one_line(env: Path, sim) -> None:
    # The state watch starts a run for the simulator's state as soon as serve is up; the
    # schedule's first run is ten minutes away and the simulated clock stands still, so
    # serve then idles.
    served = Served(env, interval_s=600)
    try:
        wait_published(env, served, 1)
        assert "state watch: new HyperTracker state" in served.output
        assert "WARNING | flows.state_watch" not in served.output, served.output[-4000:]
        while flow_run_processes(served.proc.pid):  # the run's process ends after its record
            time.sleep(0.2)
        tree = descendants(served.proc.pid)
        assert tree, "serve runs its worker and the Prefect server as children"
        took, code, last = served.stop(signal.SIGINT)
        assert took < STOP_BOUND_S
        assert code == 130
        assert re.fullmatch(STOPPED_LINE.format(signal="SIGINT"), last), served.output[-2000:]
        assert "Traceback" not in served.output
        time.sleep(1)
        assert not alive(tree), served.output[-2000:]
        assert_nothing_half_written(env)
    finally:
        served.kill()


def test_sigterm_mid_run_abandons_it_safely_and_the_next_run_completes_it(env: Path, sim) -> None:
    served = Served(env, interval_s=15)
    try:
        wait_published(env, served, 1)
        mark = len(served.lines)
        # A new state, served slowly: the next run is in the middle of fetching it.
        sim.advance_to_next_state()
        sim.inject(Fault(kind="slow", path="heatmap", delay_s=4.0, times=4))
        served.wait_for("HyperTracker state", after=mark)
        tree = descendants(served.proc.pid)
        took, code, last = served.stop(signal.SIGTERM)
        assert took < STOP_BOUND_S
        assert code == 0
        # Prefect's runner cancels the run in flight, or serve abandons it after 8 s.
        assert re.fullmatch(STOPPED_LINE.format(signal="SIGTERM"), last), served.output[-2000:]
        assert "Traceback" not in served.output, served.output[-4000:]
        time.sleep(1)
        assert not alive(tree), served.output[-2000:]
    finally:
        served.kill()
    sim.clear_faults()
    summary = elt_flow()
    assert summary.outcome == "published"
    assert_nothing_half_written(env)
    assert_every_state_published(env)


def test_a_restart_after_sigkill_runs_at_most_one_catch_up_run(env: Path, sim) -> None:
    served = Served(env, interval_s=15)
    try:
        wait_published(env, served, 1)
        tree = descendants(served.proc.pid)
        served.proc.kill()  # as the OOM killer does: serve's process alone, no clean-up
        served.proc.wait()
        deadline = time.monotonic() + 120  # PDEATHSIG stops them; a busy machine is slow
        while alive(tree) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not alive(tree), "a child of serve outlived it"
    finally:
        served.kill()
    # Scheduled runs fall due while nothing serves them.
    time.sleep(20)
    sim.advance_to_next_state()
    restarted = Served(env, interval_s=15)
    try:
        wait_published(env, restarted, 2)
        took, code, _ = restarted.stop(signal.SIGTERM)
        assert took < STOP_BOUND_S
        assert code == 0
    finally:
        restarted.kill()
    db = sqlite3.connect(env / "prefect-home" / "prefect.db")
    try:
        # The runs that fell due while serve was down: none of them ran after the restart.
        late_ones_that_ran = db.execute(
            "SELECT count(*) FROM flow_run WHERE expected_start_time < ? "
            "AND start_time >= ? AND deployment_id IS NOT NULL",
            [
                restarted.started_at.strftime("%Y-%m-%d %H:%M:%S"),
                restarted.started_at.strftime("%Y-%m-%d %H:%M:%S"),
            ],
        ).fetchone()[0]
    finally:
        db.close()
    assert late_ones_that_ran <= 1
    # Said once, if any had fallen due (serve's runner may have paused the deployments as
    # PDEATHSIG stopped it, and then none were scheduled).
    assert restarted.output.count("fell due while serve was stopped") <= 1
    assert_nothing_half_written(env)


def test_ht_run_killed_outright_leaves_no_process_behind(env: Path, sim) -> None:
    """With no Prefect server configured, `ht run` starts its own; SIGKILL of `ht run`
    alone (no clean-up runs) takes that server down too."""
    child_env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
    child_env["PREFECT_HOME"] = str(env / "prefect-home")
    sim.inject(Fault(kind="slow", path="heatmap", delay_s=3.0, times=2))
    proc = subprocess.Popen(
        [sys.executable, "-m", "flows.cli", "run"],
        cwd=ROOT,
        env=child_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if "HyperTracker state" in line:
                break
        else:
            pytest.fail("".join(lines))
        tree = descendants(proc.pid)
        assert tree, "`ht run` starts a local Prefect server"
        proc.kill()
        proc.wait()
        deadline = time.monotonic() + 120  # PDEATHSIG stops them; a busy machine is slow
        while alive(tree) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not alive(tree), "the local Prefect server outlived `ht run`"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    sim.clear_faults()
    assert elt_flow().outcome == "published"
    assert_nothing_half_written(env)
    assert_every_state_published(env)


def test_ht_deploy_registers_both_schedules_from_the_settings(env: Path) -> None:
    """`ht deploy` against a Prefect server with a process pool: prefect.yaml's two
    deployments, on the crons the settings give, one run at a time."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.settings import PREFECT_API_URL

    with get_client(sync_client=True) as client:
        try:
            client.create_work_pool(WorkPoolCreate(name="hypertracker", type="process"))
        except Exception as exc:  # an earlier test session's pool on the same server
            if "already exists" not in str(exc):
                raise
    child_env = {
        **os.environ,
        "PREFECT_API_URL": str(PREFECT_API_URL.value()),
        "HT_SCHEDULE_CRON": "*/20 * * * *",
        "HT_REPORT_CRON": "9 * * * *",
    }
    done = subprocess.run(
        [sys.executable, "-m", "flows.cli", "deploy"],
        cwd=ROOT,
        env=child_env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert os.environ["HT_API_TOKEN"] not in done.stdout + done.stderr
    with get_client(sync_client=True) as client:
        crons = {}
        for name in ("hypertracker-elt/scheduled", "hypertracker-report/scheduled"):
            deployment = client.read_deployment_by_name(name)
            assert deployment.work_pool_name == "hypertracker"
            assert deployment.global_concurrency_limit.limit == 1
            assert deployment.concurrency_options.collision_strategy == "CANCEL_NEW"
            crons[name] = [s.schedule.cron for s in deployment.schedules]
    assert crons == {
        "hypertracker-elt/scheduled": ["*/20 * * * *"],
        "hypertracker-report/scheduled": ["9 * * * *"],
    }
