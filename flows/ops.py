"""What the CLI does: run once, serve on a schedule, rebuild, and tell the state of things."""

from __future__ import annotations

import contextlib
import csv
import datetime as dt
import decimal
import io
import json
import os
import shutil
import sys
import warnings
from datetime import UTC, datetime
from pathlib import Path

import duckdb
from rich.console import Console
from rich.table import Table

from flows.prefect_api import prefect_api, quiet_prefect_tracebacks
from flows.settings import Settings, get_settings
from flows.transform import Freshness, snapshot_freshness

DEPLOYMENT_NAME = "scheduled"


class ConfigError(Exception):
    """A problem with the configuration, found before anything runs: the CLI's exit code 2."""


class RunFailed(Exception):
    """A run failed and the console was told which step, why and what was kept."""


# A run writes a few MB; a rebuild, the demo or a dbt build much more, briefly. Below this,
# a command would likely stop half-way with "No space left on device".
MIN_FREE_BYTES = 500 * 1024**2

# What a failed run leaves behind, by the step that failed (flows.pipeline.elt_flow's steps).
KEPT_AFTER = {
    "quota": "nothing was fetched; the archive, the lake and analytics.duckdb are unchanged",
    "catch up": "the archive is whole; analytics.duckdb is unchanged; the next run resumes",
    "snapshot": "nothing of this state entered the archive (a partial fetch is kept under "
    "archive/_partial); analytics.duckdb is unchanged",
    "load": "the snapshot is archived and the next run loads it; analytics.duckdb is unchanged",
    "dbt build": "the snapshot is archived and loaded; analytics.duckdb still holds the last "
    "good state; the next run builds again",
    "publish": "the snapshot is archived, loaded and built; analytics.duckdb still holds the "
    "last good state; the next run publishes again",
    # The last step, after the publish (flows.pipeline.elt_flow says why).
    "price history": "the state is published; the price history that arrived is archived, "
    "and the next run lands and builds it",
}


def load_settings() -> Settings:
    """The settings, or a ConfigError whose one line names the variable and where it is set."""
    from pydantic import ValidationError

    from flows.settings import env_file

    try:
        return get_settings()
    except ValidationError as exc:
        lines = []
        for error in exc.errors():
            message = str(error.get("msg", "")).removeprefix("Value error, ")
            name = message.split("=", 1)[0].split(":", 1)[0].split(" ", 1)[0]
            where = (
                "the environment" if name in os.environ else str(env_file() or "the environment")
            )
            lines.append(f"{message} (set in {where})")
        raise ConfigError("; ".join(lines)) from None


def _shown(path: Path) -> str:
    """A path as a user would type it: relative to the current folder when under it."""
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def preflight(settings: Settings, *, token: bool) -> None:
    """Check what a command needs before Prefect or dbt start; raise ConfigError if not."""
    from flows.settings import env_file

    if token and settings.api_token is None:
        source = _shown(env_file()) if env_file() else ".env"
        raise ConfigError(
            f"HT_API_TOKEN is not set: put HT_API_TOKEN=<your token> in {source} (see "
            ".env.example) or in the environment; `make demo` needs no token"
        )
    data = settings.data_dir
    try:
        data.mkdir(parents=True, exist_ok=True)
        probe = data / f".write-check-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise ConfigError(
            f"HT_DATA_DIR={data}: cannot write there ({reason}): point --data-dir or "
            "HT_DATA_DIR at a folder you can write, or fix its permissions"
        ) from None
    free = shutil.disk_usage(data).free
    if free < MIN_FREE_BYTES:
        raise ConfigError(
            f"HT_DATA_DIR={data}: only {_human(free)} free on its disk, {_human(MIN_FREE_BYTES)} "
            "needed: free some space or point --data-dir at another disk"
        )


def published_db(settings: Settings) -> Path:
    """The published analytics.duckdb, or a ConfigError that says how to get one."""
    db = settings.analytics_db_path
    if not db.exists():
        raise ConfigError(
            f"no published warehouse in {_shown(settings.data_dir)} ({_shown(db)} does not "
            "exist): `make demo` builds one under data/demo (then add --data-dir data/demo), "
            "`ht run` builds yours"
        )
    return db


# A run that did not start (the API quota would be exceeded, or another run holds the lock):
# EX_TEMPFAIL, "try again later".
EXIT_SKIPPED = 75


def run_once(*, force: bool, console: Console, debug: bool = False) -> int:
    """One ELT run, then the report when it published; prints the run's report.

    Exit code 0, or EXIT_SKIPPED (75) for a run that did not start; a failure says which
    step failed, why and what was kept, in a few lines (``debug``: and raises, for the
    traceback).
    """
    if not debug:
        quiet_prefect_tracebacks()
    with prefect_api(get_settings(), services=False):
        return _run_and_report(force=force, console=console)


def _run_and_report(*, force: bool, console: Console) -> int:
    from flows.pipeline import elt_flow, report_flow

    try:
        summary = elt_flow(force=force)
    except Exception as exc:
        settings = get_settings()
        last = settings.state_dir / "last_run.json"
        step = None
        with contextlib.suppress(OSError, ValueError):
            step = json.loads(last.read_bytes()).get("failed_step")
        where = f" at step '{step}'" if step else ""
        message = " ".join(str(exc).split()) or type(exc).__name__
        console.print(f"[red bold]run failed{where}[/]: {message}", soft_wrap=True)
        console.print(
            f"kept: {KEPT_AFTER.get(step or '', 'analytics.duckdb is unchanged')}", soft_wrap=True
        )
        console.print(
            f"the run report: {_shown(last)} (`ht status` shows it; --debug shows the traceback)",
            soft_wrap=True,
        )
        raise RunFailed(message) from exc
    console.print(summary.to_markdown())
    if summary.outcome.startswith("skipped"):
        # Not a failure, but not a run either: schedulers (cron, systemd) should see it.
        return EXIT_SKIPPED
    if summary.outcome == "published":
        try:
            console.print(f"heatmap report: {report_flow()}", soft_wrap=True)
        except Exception as exc:  # the data is published; a report must not undo that
            console.print(f"[yellow]the heatmap report could not be written[/]: {exc}")
    return 0


def rebuild_all(*, lake_only: bool, console: Console, debug: bool = False) -> None:
    """Lake, warehouse and marts again from the raw archive alone (resumable)."""
    from flows.pipeline import rebuild_flow

    if not debug:
        quiet_prefect_tracebacks()
    with prefect_api(get_settings(), services=False):
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
                freshness = snapshot_freshness(settings, age.total_seconds())
                if freshness is not None:
                    table.add_row("freshness", _freshness_text(freshness))
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
            for label, value in market_status(con):
                table.add_row(label, value)
        finally:
            con.close()
    else:
        table.add_row(
            "analytics.duckdb",
            "[yellow]not published yet[/]: `ht run` builds it here; the demo's is in "
            "data/demo (`ht status --data-dir data/demo`)",
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
    for label, value in pending_work(settings):
        table.add_row(label, value)
    for label, path in (
        ("archive", settings.archive_dir),
        ("lake", settings.lake_dir),
        ("warehouse", settings.warehouse_dir),
        ("reports", settings.reports_dir),
    ):
        table.add_row(f"disk: {label}", _human(_dir_size(path)))
    console.print(table)


def _freshness_text(freshness: Freshness) -> str:
    colour = {"pass": "green", "warn": "yellow"}.get(freshness.status, "red")
    limits = ", ".join(
        f"{word} after {seconds / 3600:g} h"
        for word, seconds in (("warn", freshness.warn_after_s), ("error", freshness.error_after_s))
        if seconds is not None
    )
    return (
        f"[{colour}]{freshness.status}[/] ({limits or 'no thresholds'}: "
        "dbt_project/models/staging/hypertracker/_hypertracker__sources.yml)"
    )


def read_sql(text: str) -> str:
    """The SQL a user gave: ``-`` reads stdin, an existing file's path reads the file."""
    if text == "-":
        return sys.stdin.read()
    if "\n" not in text and len(text) < 4096:
        path = Path(text).expanduser()
        with contextlib.suppress(OSError):
            if path.is_file():
                return path.read_text(encoding="utf-8")
    return text


def fetch(db: Path, sql: str, limit: int | None) -> tuple[list[str], list[tuple], int]:
    """Columns, the first ``limit`` rows (all when None) and the total row count."""
    con = duckdb.connect(str(db), read_only=True)
    try:
        con.execute("SET search_path = 'marts,main'")  # as in `ht shell`
        cur = con.execute(sql)
        columns = [d[0] for d in cur.description or []]
        if not columns:
            return [], [], 0
        rows = cur.fetchall() if limit is None or limit <= 0 else cur.fetchmany(limit)
        total = len(rows)
        if limit is not None and limit > 0 and total == limit:
            # Count the rest without keeping it: Arrow batches, never Python rows.
            with warnings.catch_warnings():  # "an extra copy": of batches counted, not kept
                warnings.simplefilter("ignore")
                reader = cur.to_arrow_reader(100_000)
                total += sum(batch.num_rows for batch in reader)
        return columns, rows, total
    except duckdb.Error as exc:
        raise ConfigError(f"query failed: {exc}") from None
    finally:
        con.close()


def _text(value: object) -> str:
    """A value as the query returned it: no rounding, no padding; NULL as empty."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _json_value(value: object) -> object:
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, dt.date | dt.datetime | dt.time):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.hex()
    return str(value)


def print_query(
    settings: Settings,
    sql: str,
    *,
    limit: int | None,
    console: Console,
    fmt: str = "table",
) -> None:
    """Run read-only SQL against analytics.duckdb and print the rows.

    ``fmt``: ``table`` (for people: the first ``limit`` rows, full width when piped, and
    how many rows there were), ``csv`` or ``json`` (for scripts: stdout holds only the
    rows; a note on stderr when ``limit`` cut them).
    """
    db = published_db(settings)
    columns, rows, total = fetch(db, sql, limit)
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows([_text(v) for v in row] for row in rows)
        sys.stdout.write(out.getvalue())
    elif fmt == "json":
        records = [dict(zip(columns, row, strict=True)) for row in rows]
        body = ",\n".join(json.dumps(r, default=_json_value, allow_nan=False) for r in records)
        sys.stdout.write(f"[\n{body}\n]\n" if records else "[]\n")
    else:
        table = Table(*columns, show_lines=False)
        numeric = [
            all(
                isinstance(row[i], int | float | decimal.Decimal)
                for row in rows
                if row[i] is not None
            )
            for i in range(len(columns))
        ]
        for i, is_number in enumerate(numeric):
            if is_number and rows:
                table.columns[i].justify = "right"
        for row in rows:
            table.add_row(*(_text(v) for v in row))
        # Piped, a table keeps its natural width: no 80-column cut.
        out_console = console if console.is_terminal else Console(width=100_000)
        out_console.print(table, crop=False)
        noun = "row" if total == 1 else "rows"
        note = (
            f"{len(rows):,} of {total:,} {noun} shown" if len(rows) < total else f"{total:,} {noun}"
        )
        cut = f" (--limit {limit})" if len(rows) < total else ""
        out_console.print(f"{note}{cut}", highlight=False)
        return
    if len(rows) < total:
        print(f"{len(rows):,} of {total:,} rows written (--limit {limit})", file=sys.stderr)


def shell_binary() -> Path:
    """The DuckDB CLI shipped with the project (the duckdb-cli package's binary)."""
    import importlib.util

    spec = importlib.util.find_spec("duckdb_cli")
    if spec and spec.origin:
        binary = Path(spec.origin).parent / "duckdb"
        if binary.is_file():
            return binary
    found = shutil.which(
        "duckdb", path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    )
    if found:
        return Path(found)
    raise ConfigError("no DuckDB CLI found: `make install` installs it (duckdb-cli) into .venv")


def shell_command(settings: Settings, args: list[str]) -> list[str]:
    """The DuckDB CLI's command line: the published file, read-only, marts searched first."""
    db = published_db(settings)
    return [
        str(shell_binary()),
        "-readonly",
        "-cmd",
        "SET search_path = 'marts,main'",
        str(db),
        *args,
    ]


def open_shell(settings: Settings, args: list[str]) -> None:
    """Replace this process with the DuckDB CLI (Ctrl-C then stops a query, not the shell)."""
    command = shell_command(settings, args)
    if not args and sys.stdin.isatty():
        print(
            f"{_shown(Path(command[-1]))}, read-only; schema marts first; .help, .quit",
            file=sys.stderr,
        )
    sys.stdout.flush()
    os.execv(command[0], command)  # noqa: S606 - our own binary and arguments


def market_status(con: duckdb.DuckDBPyConnection) -> list[tuple[str, str]]:
    """Hyperliquid's side: snapshots of the newest day without a price for some coin (a
    recorded gap), and the newest hourly candle. Nothing when the marts lack them."""
    try:
        snapshots, gaps = con.execute(
            "SELECT count(DISTINCT snapshot_id), "
            "count(DISTINCT snapshot_id) FILTER (WHERE NOT has_market) "
            "FROM marts.fct_market_snapshots WHERE snapshot_at > "
            "(SELECT max(snapshot_at) FROM marts.fct_market_snapshots) - INTERVAL 1 DAY"
        ).fetchone()  # type: ignore[misc]
        (newest_candle,) = con.execute(
            "SELECT max(open_time) FROM marts.fct_price_candles_hourly"
        ).fetchone()  # type: ignore[misc]
    except duckdb.Error:
        return []
    colour = "yellow" if gaps else "green"
    return [
        ("market gaps (newest day)", f"[{colour}]{gaps}[/] of {snapshots} snapshots miss a price"),
        ("price history up to", f"{newest_candle} UTC" if newest_candle else "[yellow]none yet[/]"),
    ]


def pending_work(settings: Settings) -> list[tuple[str, str]]:
    """What the next run will complete, and what is held back: rows for ``ht status``."""
    from flows.lake.from_archive import missing_from_lake
    from flows.warehouse import connect, held_snapshots, unpublished_loads

    rows = []
    missing = missing_from_lake(settings) if settings.archive_dir.exists() else []
    if missing:
        rows.append(
            (
                "[yellow]not yet in the lake[/]",
                f"{len(missing)} archived snapshot(s): the next run lands them",
            )
        )
    if not settings.build_db_path.exists():
        return rows
    try:
        con = connect(settings.build_db_path, read_only=True)
    except duckdb.Error:
        return [*rows, ("warehouse", "busy: a run is writing it")]
    try:
        newest, published = unpublished_loads(con)
        held = held_snapshots(con)
    except duckdb.Error:
        return rows
    finally:
        con.close()
    if newest > published:
        rows.append(
            (
                "[yellow]not yet published[/]",
                f"loads {published + 1}-{newest}: the next run publishes them",
            )
        )
    for sid, at, tests in held:
        rows.append(
            (
                "[red]held back[/]",
                f"{sid} since {at:%Y-%m-%d %H:%M} UTC: failed {', '.join(tests)} "
                f"(`ht readmit {sid}` after a fix)",
            )
        )
    return rows


def readmit_snapshots(settings: Settings, snapshot_ids: list[str], *, console: Console) -> None:
    """Take held snapshots back (all when none are named): the next run tests them again."""
    from flows.runlock import run_lock
    from flows.warehouse import connect, readmit

    with (
        run_lock(settings.state_dir, timeout_s=settings.lock_timeout_s, what="readmit"),
        connect(settings.build_db_path) as con,
    ):
        taken = readmit(con, snapshot_ids or None)
    if not taken:
        console.print("no such held snapshot (`ht status` lists them)")
        return
    console.print(f"taken back: {', '.join(taken)}; the next run (`ht run`) tests them again")
