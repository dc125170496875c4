"""The command line: ``python -m flows.cli --help`` (or ``ht --help`` once installed)."""

from __future__ import annotations

import contextlib
import os
import sys
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from flows.settings import get_settings

app = typer.Typer(
    help="Hyperliquid cohort positioning warehouse: HyperTracker heatmap snapshots, kept.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,  # locals could hold the settings, token included
)
console = Console()


def _offline() -> None:
    # Nothing here may phone home: Prefect's telemetry and dbt's usage stats stay off.
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DBT_SEND_ANONYMOUS_USAGE_STATS", "false")
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "INFO")
    # The pipeline's modules log to their own loggers (flows.*); Prefect carries them into
    # each run's log.
    os.environ.setdefault("PREFECT_LOGGING_EXTRA_LOGGERS", "flows")
    # Outside a run (the demo's collection, a rebuild's lake) they log to the console only.
    os.environ.setdefault("PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW", "ignore")
    # With no Prefect server configured, each process starts a temporary one; on a busy
    # 2-core machine that can take longer than Prefect's default 20 s.
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")


@app.command()
def demo(
    days: Annotated[float, typer.Option(help="Simulated days of history to collect.")] = 7.0,
    seed: Annotated[int, typer.Option(help="Seed of the simulated market.")] = 7,
    data_dir: Annotated[
        Path, typer.Option(help="Where the demo writes (kept apart from real data).")
    ] = Path("data/demo"),
) -> None:
    """The whole product in one command, against the simulated API: no token needed."""
    _offline()
    from flows.demo import run_demo

    run_demo(days=days, seed=seed, data_dir=data_dir.resolve(), console=console)


@app.command()
def run(
    force: Annotated[bool, typer.Option(help="Fetch again even if the state is stored.")] = False,
) -> None:
    """Run the pipeline once: snapshot -> load -> dbt build -> publish."""
    _offline()
    from flows.ops import run_once

    sys.exit(run_once(force=force, console=console))


@app.command()
def serve() -> None:
    """Run the pipeline on its schedule (HT_SCHEDULE_CRON, default every 15 min) until stopped."""
    _offline()
    from flows.ops import serve_forever

    serve_forever(console=console)


@app.command()
def rebuild(
    keep_warehouse: Annotated[
        bool, typer.Option(help="Only rebuild the lake; leave DuckDB alone.")
    ] = False,
) -> None:
    """Rebuild the lake, the warehouse and the marts from the raw archive alone."""
    _offline()
    from flows.ops import rebuild_all

    rebuild_all(lake_only=keep_warehouse, console=console)


@app.command()
def status() -> None:
    """Freshness, the last run, row counts and disk use."""
    from flows.ops import print_status

    print_status(get_settings(), console=console)


@app.command()
def query(
    sql: Annotated[str, typer.Argument(help="SQL to run against analytics.duckdb.")],
    limit: Annotated[int, typer.Option(help="Rows to print at most.")] = 50,
) -> None:
    """Run SQL against the published analytics database (read-only) and print a table."""
    from flows.ops import print_query

    print_query(get_settings(), sql, limit=limit, console=console)


@app.command()
def report(
    coin: Annotated[str, typer.Option(help="Coin of the history charts (case-sensitive).")] = "BTC",
    snapshot: Annotated[str | None, typer.Option(help="Snapshot id (default: the newest).")] = None,
    day: Annotated[str | None, typer.Option(help="A day's close instead (YYYY-MM-DD).")] = None,
    top: Annotated[
        int | None, typer.Option(help="Coins on the board (default HT_TOP_COINS).")
    ] = None,
    day_over_day_png: Annotated[
        bool, typer.Option(help="Also write the day-over-day board as a PNG.")
    ] = False,
) -> None:
    """Write the heatmap report (HTML + PNGs) from analytics.duckdb into data/reports/."""
    import datetime as dt

    from flows.analyst import write_report
    from flows.analyst.data import ReportDataError

    try:
        path = write_report(
            get_settings(),
            coin=coin,
            snapshot_id=snapshot,
            day=dt.date.fromisoformat(day) if day else None,
            top_n=top,
            day_over_day_png=day_over_day_png,
        )
    except ReportDataError as exc:
        raise SystemExit(str(exc)) from None
    console.print(f"report written: [bold]{path}[/]")


@app.command()
def docs(
    serve: Annotated[bool, typer.Option(help="Serve docs and reports on 127.0.0.1.")] = False,
    port: Annotated[int, typer.Option(help="Port for --serve.")] = 8000,
) -> None:
    """Build the dbt docs site (one self-contained page) and optionally serve it."""
    _offline()
    from flows.analyst import build_docs, serve_site

    settings = get_settings()
    console.print(f"docs written: [bold]{build_docs(settings)}[/]")
    if serve:
        serve_site(settings, port)


@app.command()
def simulate(
    port: Annotated[int, typer.Option(help="Port on 127.0.0.1 (0 = any free port).")] = 8765,
    seed: Annotated[int, typer.Option(help="Seed of the simulated market.")] = 7,
    token: Annotated[
        str, typer.Option(envvar="HT_API_TOKEN", help="Token the simulator accepts.")
    ] = "sim-token",  # noqa: S107 - the simulator's own stand-in token, not a secret
) -> None:
    """Serve the simulated HyperTracker API until Ctrl-C (for trying `run`/`serve` locally)."""
    from simulator.server import SimulatedApi

    with SimulatedApi(seed=seed, token=token, port=port) as api:
        console.print(f"simulated HyperTracker API at [bold]{api.base_url}[/]  (Ctrl-C stops)")
        console.print(f"try: HT_BASE_URL={api.base_url} HT_API_TOKEN=<token> make run")
        with contextlib.suppress(KeyboardInterrupt):
            while True:
                time.sleep(3600)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
