"""What the CLI does: run once, serve on a schedule, rebuild, and tell the state of things."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import httpx
from rich.console import Console
from rich.table import Table

from flows.settings import Settings, get_settings
from flows.transform import read_freshness

DEPLOYMENT_NAME = "scheduled"


def run_once(*, force: bool, console: Console) -> int:
    """One ELT run, then the report when it published; prints the run's report.

    Exit code 0 unless the run failed.
    """
    from flows.pipeline import elt_flow, report_flow

    try:
        summary = elt_flow(force=force)
    except Exception as exc:
        console.print(f"[red bold]run failed[/]: {exc}")
        last = get_settings().state_dir / "last_run.json"
        if last.exists():
            console.print(f"the run report is in {last}")
        return 1
    console.print(summary.to_markdown())
    if summary.outcome == "published":
        try:
            console.print(f"heatmap report: {report_flow()}")
        except Exception as exc:  # the data is published; a report must not undo that
            console.print(f"[yellow]the heatmap report could not be written[/]: {exc}")
    return 0


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
        description="The heatmap report from the newest analytics.duckdb",
        tags=["hypertracker"],
    )


def serve_forever(*, console: Console) -> None:
    """Serve the scheduled deployments (ELT and report) in this process until stopped.

    Prefect's schedules are turned into runs by a server's scheduler, which the temporary
    in-process API lacks. So with no Prefect server configured (``PREFECT_API_URL`` unset),
    a local one is started for as long as ``serve`` runs, its database under
    ``data/prefect``; its UI shows the runs. With ``PREFECT_API_URL`` set (for example to
    a ``prefect server start`` of your own), that server is used.
    """
    from prefect import serve
    from prefect.settings import PREFECT_API_URL, get_current_settings, temporary_settings

    settings = get_settings()
    when = (
        f"every {settings.schedule_interval_s}s"
        if settings.schedule_interval_s
        else f"cron '{settings.schedule_cron}' (UTC)"
    )
    with contextlib.ExitStack() as stack:
        url = get_current_settings().api.url
        if not url:
            url = stack.enter_context(local_prefect_server(settings, console))
            stack.enter_context(temporary_settings(updates={PREFECT_API_URL: url}))
        report_when = f"cron '{settings.report_cron}'"
        console.print(
            f"serving [bold]hypertracker-elt/{DEPLOYMENT_NAME}[/] on {when} and "
            f"[bold]hypertracker-report/{DEPLOYMENT_NAME}[/] on {report_when}; "
            f"data in {settings.data_dir}; Prefect API {url}. Ctrl-C stops."
        )
        serve(build_deployment(settings), build_report_deployment(settings))


def _die_with_parent() -> None:
    # The server must not outlive `serve`, even one killed outright (SIGKILL runs no
    # clean-up): on Linux the kernel sends it SIGTERM when its parent dies.
    if sys.platform.startswith("linux"):
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


@contextlib.contextmanager
def local_prefect_server(settings: Settings, console: Console) -> Iterator[str]:
    """Run ``prefect server start`` on a free loopback port while the block runs."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    home = settings.data_dir / "prefect"
    home.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "PREFECT_HOME": os.environ.get("PREFECT_HOME", str(home)),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    }
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
            ],
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            preexec_fn=_die_with_parent,
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
        console.print(f"local Prefect server (UI and API) at http://127.0.0.1:{port}")
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


def rebuild_all(*, lake_only: bool, console: Console) -> None:
    """Lake, warehouse and marts again from the raw archive alone (resumable)."""
    from flows.pipeline import rebuild_flow

    rebuild_flow(lake_only=lake_only)
    console.print("[green]rebuild complete[/]")


def _dir_size(path: Path) -> int:
    if not path.exists():
        return 0
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _human(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1024 or unit == "TB":
            return f"{n:,.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n:.1f} TB"


def print_status(settings: Settings, *, console: Console) -> None:
    """Freshness, the last run, row counts and disk use."""
    table = Table(title=f"hypertracker warehouse: {settings.data_dir}", show_header=False)
    table.add_column("what", style="bold")
    table.add_column("value")
    db = settings.analytics_db_path
    if db.exists():
        con = duckdb.connect(str(db), read_only=True)
        try:
            about = con.execute(
                "SELECT newest_snapshot_at, snapshot_count, published_at FROM marts.about"
            ).fetchone()
            if about and about[0] is not None:
                age = datetime.now(UTC).replace(tzinfo=None) - about[0]
                table.add_row(
                    "newest snapshot",
                    f"{about[0]} UTC ({age.total_seconds() / 60:,.0f} min ago)",
                )
                table.add_row("snapshots", f"{about[1]:,}")
                table.add_row("published at", f"{about[2]} UTC")
            for (name,) in con.execute(
                "SELECT table_name FROM information_schema.tables "
                "WHERE table_schema = 'marts' ORDER BY 1"
            ).fetchall():
                if name.startswith("fct_"):
                    # A view over the whole lake: counting it would read every file.
                    table.add_row(f"  marts.{name}", "view over the lake")
                    continue
                n = con.execute(f'SELECT count(*) FROM marts."{name}"').fetchone()[0]  # type: ignore[index]
                table.add_row(f"  marts.{name}", f"{n:,} rows")
        finally:
            con.close()
    else:
        table.add_row(
            "analytics.duckdb", "[yellow]not published yet[/]: run `make demo` or `ht run`"
        )
    freshness = read_freshness(settings)
    if freshness is not None:
        colour = {"pass": "green", "warn": "yellow"}.get(freshness.status, "red")
        table.add_row(
            "freshness (dbt)",
            f"[{colour}]{freshness.status}[/] as of {freshness.snapshotted_at} "
            "(thresholds: dbt_project/models/staging/hypertracker/_hypertracker__sources.yml)",
        )
    last = settings.state_dir / "last_run.json"
    if last.exists():
        run = json.loads(last.read_bytes())
        table.add_row(
            "last run",
            f"{run.get('started_at')}: {run.get('outcome')} ({run.get('seconds') or 0:.1f}s)",
        )
        if run.get("error"):
            table.add_row("  error", str(run["error"]))
    quarantined = (
        len(list(settings.quarantine_dir.iterdir())) if settings.quarantine_dir.exists() else 0
    )
    table.add_row("quarantined fetches", str(quarantined))
    for label, path in (
        ("archive", settings.archive_dir),
        ("lake", settings.lake_dir),
        ("warehouse", settings.warehouse_dir),
        ("reports", settings.reports_dir),
    ):
        table.add_row(f"disk: {label}", _human(_dir_size(path)))
    console.print(table)


def print_query(settings: Settings, sql: str, *, limit: int, console: Console) -> None:
    """Run read-only SQL against analytics.duckdb and print the first ``limit`` rows."""
    db = settings.analytics_db_path
    if not db.exists():
        raise SystemExit(f"{db} does not exist yet: run `make demo` (or `ht run`) first")
    con = duckdb.connect(str(db), read_only=True)
    try:
        cur = con.execute(sql)
        cols = [d[0] for d in cur.description or []]
        rows = cur.fetchmany(limit)
    except duckdb.Error as exc:
        raise SystemExit(f"query failed: {exc}") from None
    finally:
        con.close()
    table = Table(*cols)
    for row in rows:
        table.add_row(
            *("" if v is None else f"{v:,.4f}" if isinstance(v, float) else str(v) for v in row)
        )
    console.print(table)
    console.print(f"{len(rows)} row(s) shown (limit {limit})")
