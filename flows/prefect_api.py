"""The Prefect API that a command's flow runs report to, and the local server behind it.

Prefect needs an API for every flow run. With ``PREFECT_API_URL`` set (a server of the
user's own), that one is used. Otherwise a command starts a local ``prefect server`` for as
long as it runs, its database under the data folder (``data/prefect``), rather than
Prefect's temporary in-process server: that one is given the whole environment, the API
token included, and outlives a command killed outright. Ours gets none of the pipeline's
settings and dies with the command, whatever kills it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
from rich.console import Console

from flows.settings import Settings


@contextlib.contextmanager
def prefect_api(
    settings: Settings, *, services: bool, console: Console | None = None
) -> Iterator[str]:
    """The API URL this process's flow runs use while the block runs (see the module doc)."""
    from prefect.settings import PREFECT_API_URL, get_current_settings, temporary_settings

    url = get_current_settings().api.url
    if url:
        yield url
        return
    with (
        local_prefect_server(settings, console, services=services) as url,
        temporary_settings(updates={PREFECT_API_URL: url}),
    ):
        yield url


def die_with_parent() -> None:
    # The server must not outlive `serve`, even one killed outright (SIGKILL runs no
    # clean-up): on Linux the kernel sends it SIGTERM when its parent dies.
    if sys.platform.startswith("linux"):
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


def _deliver_queued_records() -> None:
    """Send the logs and events Prefect still queues while the server listens: afterwards its
    workers would print connection errors at exit."""
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    for worker in (APILogWorker, EventsWorker):
        with contextlib.suppress(Exception):
            worker.drain_all(timeout=5)


@contextlib.contextmanager
def local_prefect_server(
    settings: Settings, console: Console | None, *, services: bool
) -> Iterator[str]:
    """Run ``prefect server start`` on a free loopback port while the block runs.

    ``services``: the scheduler and Prefect's other loop services, which ``serve`` needs to
    turn its schedules into runs. A one-off command's server runs without them (and without
    the UI), so that it never schedules runs beside a ``serve`` on the same database.
    """
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    home = settings.data_dir / "prefect"
    home.mkdir(parents=True, exist_ok=True)
    # The server never calls HyperTracker: it gets none of the pipeline's settings, the
    # API token above all.
    env = {k: v for k, v in os.environ.items() if not k.startswith("HT_")}
    env.update(
        {
            "PREFECT_HOME": os.environ.get("PREFECT_HOME", str(home)),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_UI_ENABLED": "true" if services else "false",
        }
    )
    env.pop("PREFECT_API_URL", None)
    log_path = home / "server.log"
    with open(log_path, "ab") as log_file:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "prefect",
                "server",
                "start",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                *([] if services else ["--no-services"]),
            ],
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            preexec_fn=die_with_parent,
        )
    url = f"http://127.0.0.1:{port}/api"
    try:
        deadline = time.monotonic() + 180
        while True:
            if proc.poll() is not None:
                raise RuntimeError(
                    f"the local Prefect server stopped at start-up; its log is {log_path}"
                )
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"the local Prefect server did not answer within 180 s; see {log_path}"
                )
            time.sleep(0.5)
        if console is not None:
            console.print(f"local Prefect server (UI and API) at http://127.0.0.1:{port}")
        yield url
    finally:
        _deliver_queued_records()
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


def quiet_prefect_tracebacks() -> None:
    """Keep tracebacks out of Prefect's console output; its API log keeps them whole."""
    from prefect.logging.handlers import PrefectConsoleHandler

    loggers = [logging.getLogger(), *logging.Logger.manager.loggerDict.values()]
    for logger in loggers:
        for handler in getattr(logger, "handlers", []):
            if isinstance(handler, PrefectConsoleHandler) and not isinstance(
                handler.formatter, _NoTraceback
            ):
                handler.setFormatter(_NoTraceback(handler.formatter or logging.Formatter()))


class _NoTraceback(logging.Formatter):
    """A formatter that leaves the exception's traceback out (the message says what)."""

    def __init__(self, inner: logging.Formatter) -> None:
        super().__init__()
        self.inner = inner

    def format(self, record: logging.LogRecord) -> str:
        # The record is shared by every handler: put back what was taken out.
        saved = record.exc_info, record.exc_text, record.stack_info
        record.exc_info = record.exc_text = record.stack_info = None
        try:
            return self.inner.format(record)
        finally:
            record.exc_info, record.exc_text, record.stack_info = saved
