"""Serving: the scheduled deployments, and ``serve``, which runs them until it is stopped.

``serve`` is a supervisor and a worker. The worker (its own session) holds Prefect's runner,
the local Prefect server and the flow-run processes; the supervisor only waits, so that a
terminal's Ctrl-C or a service manager's SIGTERM reaches it alone and it decides how the
worker stops. ``deploy_environment`` gives ``prefect deploy`` (prefect.yaml) the same
schedules from the settings, for teams that run their own Prefect server and workers.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from typing import Any

from rich.console import Console

from flows.hypertracker.client import StateStatus
from flows.prefect_api import die_with_parent, prefect_api, quiet_prefect_tracebacks
from flows.settings import Settings, get_settings
from flows.state_watch import StateWatch

DEPLOYMENT_NAME = "scheduled"


def _one_at_a_time():  # -> ConcurrencyLimitConfig
    # A run that falls due while the previous one still runs is cancelled, not queued: every
    # run catches up on all that is pending, so queued runs would only stack up behind the
    # run lock (and, on a slow day, swamp the Prefect server).
    from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy

    return ConcurrencyLimitConfig(limit=1, collision_strategy=ConcurrencyLimitStrategy.CANCEL_NEW)


def build_deployment(settings: Settings | None = None):  # -> RunnerDeployment
    """The scheduled deployment of the ELT flow (what ``serve`` runs)."""
    from flows.pipeline import elt_flow

    settings = settings or get_settings()
    when: dict[str, Any] = (
        {"interval": settings.schedule_interval_s}
        if settings.schedule_interval_s
        else {"cron": settings.schedule_cron}
    )
    return elt_flow.to_deployment(
        name=DEPLOYMENT_NAME,
        **when,
        concurrency_limit=_one_at_a_time(),
        description="HyperTracker heatmap snapshot -> lake -> DuckDB -> dbt -> publish",
        tags=["hypertracker"],
    )


def build_report_deployment(settings: Settings | None = None):  # -> RunnerDeployment
    """The heatmap report on its own schedule (``serve`` runs it beside the ELT runs)."""
    from flows.pipeline import report_flow

    settings = settings or get_settings()
    # Always on its cron, even when the ELT runs every few seconds (trials, tests): each
    # scheduled run is a process of its own, and drawing PNGs that often starves the runs.
    return report_flow.to_deployment(
        name=DEPLOYMENT_NAME,
        cron=settings.report_cron,
        concurrency_limit=_one_at_a_time(),
        description="The heatmap report from the newest analytics.duckdb",
        tags=["hypertracker"],
    )


# How long `serve` gives its worker to stop after SIGINT or SIGTERM before killing it: a run
# in flight is abandoned at that point (the next run completes what it began).
SERVE_STOP_S = 8.0
# How often serve's runner looks for runs to start (Prefect's default: 10 s).
RUNNER_POLL_S = 2


def serve_forever(*, console: Console, debug: bool = False) -> int:
    """Serve the scheduled deployments until SIGINT (Ctrl-C) or SIGTERM; return the exit code.

    The scheduler, the Prefect server and the runs live in a worker process of their own
    session, so that a terminal's Ctrl-C (sent to the whole foreground group) reaches this
    process alone: it asks the worker to stop (SIGTERM: Prefect's runner shuts down, the
    server with it), waits ``SERVE_STOP_S``, then kills the worker's whole group. A run
    in flight is either done by then or abandoned; nothing it wrote is half-visible, and
    the next run completes it. One line says what happened.
    """
    worker = subprocess.Popen(
        [sys.executable, "-c", "from flows.serving import serve_worker; serve_worker()"],
        env={**os.environ, "HT_DEBUG": "1" if debug else ""},
        start_new_session=True,
        preexec_fn=die_with_parent,
    )
    received: list[int] = []

    def stop(signum: int, frame: object) -> None:
        if not received:
            received.append(signum)
            with contextlib.suppress(ProcessLookupError):
                worker.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    deadline = None
    how = "stopped"
    while worker.poll() is None:
        if received and deadline is None:
            deadline = time.monotonic() + SERVE_STOP_S
        if deadline is not None and time.monotonic() > deadline:
            how = f"stopped (a run in flight was abandoned after {SERVE_STOP_S:g} s)"
            break
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(worker.pid, signal.SIGKILL)  # whatever of its group is left
    worker.wait()
    if not received:
        return worker.returncode
    name = signal.Signals(received[0]).name
    # One line, whatever the terminal's width: it is what a log shows of the stop.
    console.print(
        f"serve {how} on {name}; the next start goes on where it left off", soft_wrap=True
    )
    return 130 if received[0] == signal.SIGINT else 0


def serve_worker() -> None:
    """The worker of :func:`serve_forever`: Prefect's serve of both deployments.

    Prefect's schedules are turned into runs by a server's scheduler, which the temporary
    in-process API lacks. So with no Prefect server configured (``PREFECT_API_URL`` unset),
    a local one is started for as long as the worker runs, its database under
    ``data/prefect``; its UI shows the runs. With ``PREFECT_API_URL`` set (for example to
    a ``prefect server start`` of your own), that server is used.
    """
    from prefect import serve
    from prefect.settings import PREFECT_RUNNER_POLL_FREQUENCY, temporary_settings

    console = Console()
    settings = get_settings()
    when = (
        f"every {settings.schedule_interval_s}s"
        if settings.schedule_interval_s
        else f"cron '{settings.schedule_cron}' (UTC)"
    )
    if not os.environ.get("HT_DEBUG"):
        quiet_prefect_tracebacks()
    with (
        prefect_api(settings, services=True, console=console) as url,
        # The runner looks for runs to start every 10 s by default: a run the state watch
        # starts should not wait that long.
        temporary_settings(updates={PREFECT_RUNNER_POLL_FREQUENCY: RUNNER_POLL_S}),
    ):
        skipped = skip_late_runs()
        if skipped:
            console.print(
                f"{skipped} scheduled run(s) fell due while serve was stopped: skipped (the "
                "first run catches up on everything)"
            )
        report_when = f"cron '{settings.report_cron}'"
        watch = "; runs also start as soon as a new state is out (HT_POLL)" if settings.poll else ""
        console.print(
            f"serving [bold]hypertracker-elt/{DEPLOYMENT_NAME}[/] on {when}{watch}, and "
            f"[bold]hypertracker-report/{DEPLOYMENT_NAME}[/] on {report_when}; "
            f"data in {settings.data_dir}; Prefect API {url}. Ctrl-C stops."
        )
        stop = threading.Event()
        if settings.poll:
            state_watch = StateWatch(settings, start_run=start_elt_run)
            # The Prefect API's address is a context variable (temporary_settings above),
            # which a new thread does not inherit: the watch runs in a copy of this context.
            context = contextvars.copy_context()
            threading.Thread(
                target=context.run,
                args=(watch_once_served, state_watch, stop),
                name="state-watch",
                daemon=True,
            ).start()
        try:
            serve(build_deployment(settings), build_report_deployment(settings))
        finally:
            stop.set()


def watch_once_served(state_watch: StateWatch, stop: threading.Event) -> None:
    """Run the state watch once Prefect's ``serve`` has registered the ELT deployment: a run
    the watch starts before then would fail (``ObjectNotFound``) and wait a minute."""
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    from flows.pipeline import elt_flow

    with get_client(sync_client=True) as client:
        while not stop.is_set():
            try:
                client.read_deployment_by_name(f"{elt_flow.name}/{DEPLOYMENT_NAME}")
                break
            except ObjectNotFound:
                stop.wait(0.5)
    state_watch.run(stop)


def start_elt_run(status: StateStatus) -> None:
    """A run of the scheduled ELT deployment, now, for the state the watch saw."""
    from prefect.deployments import run_deployment

    from flows.pipeline import elt_flow

    run_deployment(
        f"{elt_flow.name}/{DEPLOYMENT_NAME}",
        timeout=0,
        as_subflow=False,
        flow_run_name=f"state {status.snapshot_id}",
        tags=["state-watch"],
    )


def skip_late_runs() -> int:
    """Cancel the runs of our deployments whose time passed while nothing served them.

    Prefect keeps scheduled runs in its database; after serve was stopped, those that fell
    due would all start at once. Every run catches up on all that is pending, so one run on
    the schedule is enough: the late ones are cancelled. Returns how many.
    """
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        DeploymentFilter,
        DeploymentFilterName,
        FlowRunFilter,
        FlowRunFilterExpectedStartTime,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType
    from prefect.states import Cancelled

    now = datetime.now(UTC)
    with get_client(sync_client=True) as client:
        late = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(
                state=FlowRunFilterState(
                    type=FlowRunFilterStateType(any_=[StateType.SCHEDULED, StateType.PENDING])
                ),
                expected_start_time=FlowRunFilterExpectedStartTime(before_=now),
            ),
            deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=[DEPLOYMENT_NAME])),
        )
        for run in late:
            client.set_flow_run_state(
                run.id, Cancelled(message="fell due while serve was stopped"), force=True
            )
    return len(late)


def deploy_environment(settings: Settings) -> dict[str, str]:
    """The environment of ``prefect deploy`` for prefect.yaml: its schedules from the settings.

    prefect.yaml reads ``HT_SCHEDULE_CRON``, ``HT_REPORT_CRON`` and ``HT_PROJECT_DIR`` from
    the environment (Prefect's ``{{ $VAR }}`` placeholders), so that a team's deployments
    run on the schedule the settings say, wherever they are set (.env or the environment).
    Deploying never calls HyperTracker: the token stays out.
    """
    from flows.settings import PROJECT_ROOT

    env = {k: v for k, v in os.environ.items() if k != "HT_API_TOKEN"}
    env.update(
        {
            "HT_SCHEDULE_CRON": settings.schedule_cron,
            "HT_REPORT_CRON": settings.report_cron,
            "HT_PROJECT_DIR": str(PROJECT_ROOT),
        }
    )
    return env


def deploy(settings: Settings, *, console: Console) -> int:
    """``prefect deploy --all`` from the project folder with :func:`deploy_environment`."""
    from flows.settings import PROJECT_ROOT

    if settings.schedule_interval_s:
        console.print(
            "[yellow]HT_SCHEDULE_INTERVAL_S is for `serve` trials only: the deployment runs on "
            f"HT_SCHEDULE_CRON '{settings.schedule_cron}'[/]"
        )
    command = [sys.executable, "-m", "prefect", "--no-prompt", "deploy", "--all"]
    return subprocess.run(command, cwd=PROJECT_ROOT, env=deploy_environment(settings)).returncode
