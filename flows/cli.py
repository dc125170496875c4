"""The command line, ``ht`` (``.venv/bin/ht`` in the project's environment).

Every command takes ``--data-dir`` (it sets ``HT_DATA_DIR`` for everything the command
runs) and ``--debug``. A configuration problem is one line on stderr and exit code 2,
found before Prefect or dbt start; any other failure is one line and exit code 1;
``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Iterator
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

app = typer.Typer(
    name="ht",
    help="Hyperliquid cohort positioning warehouse: HyperTracker heatmap snapshots, kept. "
    "Every command takes --data-dir (default: HT_DATA_DIR, else data/) and --debug.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,  # locals could hold the settings, token included
)
console = Console()
err_console = Console(stderr=True, soft_wrap=True, highlight=False)

DataDir = Annotated[
    Path | None,
    typer.Option(
        "--data-dir",
        help="The data folder (sets HT_DATA_DIR). Default: HT_DATA_DIR, else data/.",
        show_default=False,
    ),
]
Debug = Annotated[bool, typer.Option("--debug", help="Show the traceback of an error.")]


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
    # With no Prefect server configured, commands start a local one of their own
    # (flows/prefect_api.py), never Prefect's temporary server, which would inherit the token.
    os.environ.setdefault("PREFECT_SERVER_ALLOW_EPHEMERAL_MODE", "false")


def _fail(message: str, code: int) -> None:
    line = " ".join(message.split())  # one line, whatever the message held
    err_console.print(f"[bold red]error[/]: {line}", markup=True)
    raise SystemExit(code)


@contextlib.contextmanager
def _command(name: str, data_dir: Path | None, debug: bool) -> Iterator[None]:
    """Point the command at its data folder; turn what it raises into one line."""
    from flows.ops import ConfigError, RunFailed

    if data_dir is not None:
        os.environ["HT_DATA_DIR"] = str(data_dir.expanduser().resolve())
    try:
        yield
    except KeyboardInterrupt:
        if debug:
            raise
        err_console.print("interrupted")
        raise SystemExit(130) from None
    except ConfigError as exc:
        if debug:
            raise
        _fail(str(exc), 2)
    except RunFailed as exc:  # already told on the console, step by step
        if debug:
            raise exc.__cause__ or exc from None
        raise SystemExit(1) from None
    except Exception as exc:
        if debug:
            raise
        detail = str(exc) or type(exc).__name__
        _fail(f"ht {name} failed: {detail} (--debug shows the traceback)", 1)


@app.command()
def demo(
    days: Annotated[
        float, typer.Option(help="Simulated days of history (backfill: up to 7).")
    ] = 7.0,
    live_hours: Annotated[
        float,
        typer.Option(
            help="Hours of live snapshots at the end; the rest comes from a quick backfill "
            "(as long as --days: every state live)."
        ),
    ] = 6.0,
    seed: Annotated[int, typer.Option(help="Seed of the simulated market.")] = 7,
    data_dir: Annotated[
        Path, typer.Option("--data-dir", help="Where the demo writes (kept apart from data/).")
    ] = Path("data/demo"),
    debug: Debug = False,
) -> None:
    """The whole product in one command, against the simulated API: no token needed."""
    with _command("demo", data_dir, debug):
        from flows.ops import load_settings, preflight

        preflight(load_settings(), token=False)
        _offline()
        from flows.demo import run_demo
        from flows.prefect_api import prefect_api

        with prefect_api(load_settings(), services=False):
            run_demo(
                days=days,
                live_hours=live_hours,
                seed=seed,
                data_dir=data_dir.resolve(),
                console=console,
            )


@app.command()
def run(
    force: Annotated[bool, typer.Option(help="Fetch again even if the state is stored.")] = False,
    data_dir: DataDir = None,
    debug: Debug = False,
) -> None:
    """Run the pipeline once: snapshot -> load -> dbt build -> publish (needs HT_API_TOKEN).

    Exit codes: 0 done (published, or no new data), 1 failed, 2 bad configuration, 75 did
    not start (the API quota would be exceeded, or another run is writing).
    """
    with _command("run", data_dir, debug):
        from flows.ops import load_settings, preflight, run_once

        preflight(load_settings(), token=True)
        _offline()
        code = run_once(force=force, console=console, debug=debug)
    raise SystemExit(code)


@app.command()
def serve(data_dir: DataDir = None, debug: Debug = False) -> None:
    """Run the pipeline on its schedule (HT_SCHEDULE_CRON, default every 15 min) until stopped."""
    with _command("serve", data_dir, debug):
        from flows.ops import load_settings, preflight
        from flows.serving import serve_forever

        preflight(load_settings(), token=True)
        _offline()
        code = serve_forever(console=console, debug=debug)
    raise SystemExit(code)


@app.command()
def deploy(data_dir: DataDir = None, debug: Debug = False) -> None:
    """Register the scheduled runs on a Prefect server of your own (prefect.yaml, pool
    hypertracker), on the schedules the settings give; `prefect worker start --pool
    hypertracker` then runs them. Single users want `ht serve` instead."""
    with _command("deploy", data_dir, debug):
        from flows.ops import load_settings
        from flows.serving import deploy

        _offline()
        code = deploy(load_settings(), console=console)
    raise SystemExit(code)


@app.command()
def rebuild(
    keep_warehouse: Annotated[
        bool, typer.Option(help="Only rebuild the lake; leave DuckDB alone.")
    ] = False,
    data_dir: DataDir = None,
    debug: Debug = False,
) -> None:
    """Rebuild the lake, the warehouse and the marts from the raw archive alone."""
    with _command("rebuild", data_dir, debug):
        from flows.ops import load_settings, preflight, rebuild_all

        preflight(load_settings(), token=False)
        _offline()
        rebuild_all(lake_only=keep_warehouse, console=console, debug=debug)


class BackfillDepth(StrEnum):
    quick = "quick"
    deep = "deep"


@app.command()
def backfill(
    depth: Annotated[
        BackfillDepth,
        typer.Option(
            help="quick: one export per coin and window (7 days, 12-hourly); "
            "deep: position-metrics per coin, cohort and window, every state."
        ),
    ] = BackfillDepth.quick,
    coins: Annotated[
        str | None, typer.Option(help="Comma-separated coins (default: the --top N).")
    ] = None,
    top: Annotated[int, typer.Option(help="The N coins of largest open interest.")] = 5,
    windows: Annotated[
        str | None, typer.Option(help="Comma-separated windows (default: HT_WINDOWS).")
    ] = None,
    start: Annotated[
        str | None, typer.Option(help="deep: from this UTC date, YYYY-MM-DD (default: all).")
    ] = None,
    page_limit: Annotated[int, typer.Option(help="deep: states per page (1..1000).")] = 1000,
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
    force: Annotated[
        bool, typer.Option(help="Start even when the plan eats into the scheduled runs' quota.")
    ] = False,
    data_dir: DataDir = None,
    debug: Debug = False,
) -> None:
    """History on day one from HyperTracker's history endpoints: prints the plan (calls,
    time, quota), asks, fetches resumably (run it again to resume), lands the states and
    builds (needs HT_API_TOKEN)."""
    with _command("backfill", data_dir, debug):
        from flows.backfill.run import Options, parse_start, run_backfill, summary_lines
        from flows.ops import load_settings, preflight
        from flows.prefect_api import prefect_api, quiet_prefect_tracebacks

        settings = load_settings()
        preflight(settings, token=True)
        _offline()
        options = Options(
            depth=depth.value,
            coins=tuple(c.strip() for c in (coins or "").split(",") if c.strip()),
            top=top,
            windows=tuple(w.strip() for w in windows.split(",")) if windows else None,
            start=parse_start(start),
            page_limit=page_limit,
        )
        if not debug:
            quiet_prefect_tracebacks()

        def build() -> None:
            from flows.pipeline import backfill_build_flow

            # Prefect only for the build: the fetch starts at once, without a server.
            with prefect_api(settings, services=False):
                backfill_build_flow()

        outcome = run_backfill(
            settings,
            options,
            console=console,
            progress_console=err_console,
            confirm=None if yes else lambda: typer.confirm("start the backfill?"),
            force=force,
            build=build,
        )
        for line in summary_lines(outcome):
            console.print(line, soft_wrap=True, highlight=False)
    raise SystemExit(75 if outcome.paused else 0)


@app.command()
def readmit(
    snapshot_ids: Annotated[
        list[str] | None, typer.Argument(help="Held snapshot ids (default: every one).")
    ] = None,
    data_dir: DataDir = None,
    debug: Debug = False,
) -> None:
    """Take snapshots held back by failed dbt tests back into the warehouse (`ht status`
    lists them); the next run tests them again."""
    with _command("readmit", data_dir, debug):
        from flows.ops import load_settings, readmit_snapshots

        readmit_snapshots(load_settings(), snapshot_ids or [], console=console)


@app.command()
def status(data_dir: DataDir = None, debug: Debug = False) -> None:
    """Freshness, the last run, row counts and disk use."""
    with _command("status", data_dir, debug):
        from flows.ops import load_settings, print_status

        print_status(load_settings(), console=console)


class Format(StrEnum):
    table = "table"
    csv = "csv"
    json = "json"


@app.command()
def query(
    sql: Annotated[
        str,
        typer.Argument(
            help="SQL to run, or the path of a file of SQL, or - to read SQL from stdin."
        ),
    ],
    format: Annotated[
        Format, typer.Option("--format", "-f", help="table for people; csv or json for scripts.")
    ] = Format.table,
    limit: Annotated[
        int | None,
        typer.Option(help="Rows to print at most (default: 50 for a table, all for csv/json)."),
    ] = None,
    data_dir: DataDir = None,
    debug: Debug = False,
) -> None:
    """Run SQL against the published analytics.duckdb (read-only) and print the rows."""
    with _command("query", data_dir, debug):
        from flows.ops import load_settings, print_query, read_sql

        print_query(
            load_settings(),
            read_sql(sql),
            limit=limit if limit is not None else (50 if format is Format.table else None),
            fmt=format.value,
            console=console,
        )


@app.command()
def signals(
    signal_type: Annotated[
        list[str] | None,
        typer.Option("--type", "-t", help="flip, extreme or divergence (repeat for several)."),
    ] = None,
    coin: Annotated[str | None, typer.Option(help="One coin (case-sensitive).")] = None,
    since: Annotated[
        str | None,
        typer.Option(
            help="From a day (2026-11-30), a UTC time (2026-11-30T12:00) or an age "
            "before the newest event (6h, 2d)."
        ),
    ] = None,
    format: Annotated[
        Format, typer.Option("--format", "-f", help="table for people; csv or json for scripts.")
    ] = Format.table,
    limit: Annotated[
        int | None,
        typer.Option(help="Rows to print at most (default: 50 for a table, all for csv/json)."),
    ] = None,
    data_dir: DataDir = None,
    debug: Debug = False,
) -> None:
    """Signal events (flips, extremes, divergences), newest first, from analytics.duckdb."""
    with _command("signals", data_dir, debug):
        from flows.alerts.query import SignalsQueryError, signals_sql
        from flows.ops import ConfigError, load_settings, print_query

        try:
            sql = signals_sql(types=signal_type or [], coin=coin, since=since)
        except SignalsQueryError as exc:
            raise ConfigError(str(exc)) from None
        print_query(
            load_settings(),
            sql,
            limit=limit if limit is not None else (50 if format is Format.table else None),
            fmt=format.value,
            console=console,
        )


@app.command(
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
)
def shell(ctx: typer.Context, data_dir: DataDir = None, debug: Debug = False) -> None:
    """The DuckDB CLI on analytics.duckdb, read-only, schema marts on the search path.

    Further arguments go to duckdb, for example: ht shell -csv -c "select * from about"
    """
    with _command("shell", data_dir, debug):
        from flows.ops import load_settings, open_shell

        open_shell(load_settings(), list(ctx.args))


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
    data_dir: DataDir = None,
    debug: Debug = False,
) -> None:
    """Write the heatmap report (HTML + PNGs) from analytics.duckdb into <data-dir>/reports/."""
    import datetime as dt

    with _command("report", data_dir, debug):
        from flows.ops import ConfigError, load_settings, preflight, published_db

        settings = load_settings()
        published_db(settings)
        preflight(settings, token=False)
        try:
            when = dt.date.fromisoformat(day) if day else None
        except ValueError:
            raise ConfigError(f"--day {day!r} is not a date: give YYYY-MM-DD") from None
        from flows.analyst import write_report

        path = write_report(
            settings,
            coin=coin,
            snapshot_id=snapshot,
            day=when,
            top_n=top,
            day_over_day_png=day_over_day_png,
        )
        console.print(f"report written: [bold]{path}[/]", soft_wrap=True)


@app.command()
def docs(
    serve: Annotated[bool, typer.Option(help="Serve docs and reports on 127.0.0.1.")] = False,
    port: Annotated[int, typer.Option(help="Port for --serve.")] = 8000,
    data_dir: DataDir = None,
    debug: Debug = False,
) -> None:
    """Build the dbt docs site (one self-contained page) and optionally serve it."""
    with _command("docs", data_dir, debug):
        from flows.ops import load_settings, preflight

        settings = load_settings()
        preflight(settings, token=False)
        _offline()
        from flows.analyst import build_docs, serve_site

        console.print(f"docs written: [bold]{build_docs(settings)}[/]", soft_wrap=True)
        if serve:
            serve_site(settings, port)


@app.command()
def simulate(
    port: Annotated[int, typer.Option(help="Port on 127.0.0.1 (0 = any free port).")] = 8765,
    seed: Annotated[int, typer.Option(help="Seed of the simulated market.")] = 7,
    token: Annotated[
        str, typer.Option(envvar="HT_API_TOKEN", help="Token the simulator accepts.")
    ] = "sim-token",  # noqa: S107 - the simulator's own stand-in token, not a secret
    debug: Debug = False,
) -> None:
    """Serve the simulated HyperTracker API until Ctrl-C (for trying `run`/`serve` locally)."""
    with _command("simulate", None, debug):
        from simulator.server import SimulatedApi

        with SimulatedApi(seed=seed, token=token.strip(), port=port) as api:
            console.print(
                f"simulated HyperTracker API at [bold]{api.base_url}[/]  (Ctrl-C stops)",
                soft_wrap=True,
            )
            console.print(
                f"try: HT_BASE_URL={api.base_url} HT_HYPERLIQUID_URL={api.info_url} "
                "HT_API_TOKEN=<token> make run",
                soft_wrap=True,
            )
            with contextlib.suppress(KeyboardInterrupt):
                while True:
                    time.sleep(3600)


def main() -> None:
    app(prog_name="ht")


if __name__ == "__main__":
    sys.exit(main())
