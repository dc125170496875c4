"""The command line people script: one-line errors, exit codes, query output, settings' words.

The subprocess tests run `.venv/bin/ht` itself, as a user would, with no `.env` and a
clean HT_ environment.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest
from rich.console import Console

from flows import ops, transform
from flows.cli import app
from flows.publish import STORAGE_VERSION
from flows.settings import PROJECT_ROOT, cron_problem, get_settings

HT = Path(sys.executable).parent / "ht"


def ht(*args: str, env: dict[str, str] | None = None, stdin: str | None = None):
    clean = {k: v for k, v in os.environ.items() if not k.startswith("HT_")}
    clean["HT_ENV_FILE"] = ""
    started = time.perf_counter()
    done = subprocess.run(
        [str(HT), *args],
        env={**clean, **(env or {})},
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return done, time.perf_counter() - started


# --- settings: every message names the variable, none shows the token ------------------


@pytest.mark.parametrize(
    ("variable", "value", "words"),
    [
        ("HT_WINDOWS", "1h", "HT_WINDOWS holds '1h'"),
        ("HT_WINDOWS", " , ", "HT_WINDOWS holds nothing"),
        ("HT_SCHEDULE_CRON", "*/15 * * *", "HT_SCHEDULE_CRON='*/15 * * *' is not a cron"),
        ("HT_REPORT_CRON", "5 25 * * *", "HT_REPORT_CRON='5 25 * * *'"),
        ("HT_TOP_COINS", "0", "HT_TOP_COINS='0': input should be greater"),
        ("HT_MAX_ATTEMPTS", "many", "HT_MAX_ATTEMPTS='many'"),
        ("HT_BASE_URL", "ht-api.example", "HT_BASE_URL='ht-api.example' is not an http(s) URL"),
    ],
)
def test_a_bad_setting_names_its_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, words: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ValueError, match="validation error") as caught:
        get_settings()
    assert words in str(caught.value)
    with pytest.raises(ops.ConfigError) as config:
        ops.load_settings()
    assert words in str(config.value)
    assert "(set in the environment)" in str(config.value)


def test_the_token_is_stripped_or_refused_and_never_shown(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HT_API_TOKEN", "  tok_abc123\n")
    token = get_settings().api_token
    assert token is not None
    assert token.get_secret_value() == "tok_abc123"
    monkeypatch.setenv("HT_API_TOKEN", "   \n")
    assert get_settings().api_token is None
    monkeypatch.setenv("HT_API_TOKEN", "tok_abc\ntok_def")
    with pytest.raises(ValueError, match="HT_API_TOKEN holds spaces") as caught:
        get_settings()
    assert "tok_abc" not in str(caught.value)


@pytest.mark.parametrize(
    "expression",
    ["*/15 * * * *", "0 */2 * * *", "5 * * * MON-FRI", "0 0 1,15 jan,jul *", "@hourly"],
)
def test_good_crons_pass(expression: str) -> None:
    assert cron_problem(expression) is None


@pytest.mark.parametrize(
    "expression", ["*/15 * * *", "61 * * * *", "* * * * * *", "every 15 minutes", "*/0 * * * *"]
)
def test_bad_crons_say_why(expression: str) -> None:
    assert cron_problem(expression)


# --- preflight ---------------------------------------------------------------------------


def test_preflight_refuses_a_missing_token_an_unwritable_folder_and_a_full_disk(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # A session fixture (the demo warehouse) may have set a token for the whole session.
    monkeypatch.delenv("HT_API_TOKEN", raising=False)
    settings = get_settings(data_dir=tmp_path / "data")
    with pytest.raises(ops.ConfigError, match="HT_API_TOKEN is not set"):
        ops.preflight(settings, token=True)
    ops.preflight(settings, token=False)  # the folder is made and writable

    def read_only(self: Path, data: bytes) -> int:
        raise OSError(30, "Read-only file system")

    with monkeypatch.context() as patch:
        patch.setattr(Path, "write_bytes", read_only)
        with pytest.raises(ops.ConfigError, match=r"cannot write there \(Read-only file system\)"):
            ops.preflight(settings, token=False)

    class Usage:
        free = 10 * 1024**2

    monkeypatch.setattr(ops.shutil, "disk_usage", lambda path: Usage())
    with pytest.raises(ops.ConfigError, match=r"only 10\.0 MB free on its disk"):
        ops.preflight(settings, token=False)


# --- the command line itself ---------------------------------------------------------------


def test_help_says_ht() -> None:
    done, _ = ht("--help")
    assert done.returncode == 0
    assert "python -m flows.cli" not in done.stdout
    assert "Usage: ht " in done.stdout
    for command in ("run", "status", "query", "shell", "report", "docs", "demo"):
        sub, _ = ht(command, "--help")
        assert sub.returncode == 0, sub.stderr
        assert "--data-dir" in sub.stdout, command
    assert not (PROJECT_ROOT / "flows" / "cli.py").read_text().count("python -m flows.cli")


@pytest.mark.parametrize(
    ("args", "env", "words"),
    [
        (["run"], {}, "error: HT_API_TOKEN is not set"),
        (["status"], {"HT_WINDOWS": "1h"}, "error: HT_WINDOWS holds '1h'"),
        (["serve"], {"HT_API_TOKEN": "t", "HT_SCHEDULE_CRON": "*/15 * *"}, "HT_SCHEDULE_CRON="),
        (["run", "--data-dir", "/proc/ht-data"], {"HT_API_TOKEN": "t"}, "cannot write there"),
        (["query", "select 1"], {}, "no published warehouse in"),
    ],
)
def test_a_configuration_error_is_one_line_exit_2_and_fast(
    tmp_path: Path, args: list[str], env: dict[str, str], words: str
) -> None:
    if "--data-dir" not in args:
        args = [*args, "--data-dir", str(tmp_path / "data")]
    done, seconds = ht(*args, env=env)
    assert done.returncode == 2, done
    assert done.stdout == ""
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert words in lines[0]
    assert "Traceback" not in done.stderr
    assert seconds < 20  # Prefect and dbt never start (about a second on a quiet machine)


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    done, _ = ht("run", "--debug", "--data-dir", str(tmp_path))
    assert done.returncode != 0
    assert "ConfigError" in done.stderr
    assert "HT_API_TOKEN is not set" in done.stderr


# --- query ------------------------------------------------------------------------------------


@pytest.fixture
def published(tmp_path: Path) -> Path:
    data = tmp_path / "data"
    (data / "warehouse").mkdir(parents=True)
    # Written as the publish writes it: a storage version the shipped CLI reads.
    con = duckdb.connect()
    path = data / "warehouse" / "analytics.duckdb"
    con.execute(f"ATTACH '{path}' AS analytics (STORAGE_VERSION '{STORAGE_VERSION}')")
    con.execute("CREATE SCHEMA analytics.marts")
    con.execute(
        "CREATE TABLE analytics.marts.wide AS SELECT i AS n, i / 3 AS third, "
        "0.1::DOUBLE + 0.2::DOUBLE AS sum, "
        "repeat('x', 60) AS long_text, repeat('y', 60) AS more_text, "
        "CASE WHEN i = 2 THEN NULL ELSE i % 2 = 0 END AS even, "
        "DATE '2026-11-24' + i::INT AS day, (i * 1.25)::DECIMAL(10, 2) AS price "
        "FROM range(1, 121) t(i)"
    )
    con.close()
    return data


def test_query_prints_values_as_returned_with_the_total(
    published: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = get_settings(data_dir=published)
    console = Console(width=80, force_terminal=False)
    ops.print_query(settings, "select * from wide order by n", limit=5, console=console)
    out = capsys.readouterr().out
    assert "0.30000000000000004" in out  # no 4-decimal padding
    assert "0.3333333333333333" in out
    assert "5 of 120 rows shown (--limit 5)" in out
    assert "x" * 60 in out  # piped: full width, nothing cut
    assert "y" * 60 in out
    assert max(len(line) for line in out.splitlines()) > 80
    ops.print_query(settings, "from wide where n < 3", limit=50, console=console)
    assert capsys.readouterr().out.rstrip().endswith("2 rows")


def test_query_csv_and_json(published: Path, capsys: pytest.CaptureFixture[str]) -> None:
    settings = get_settings(data_dir=published)
    console = Console()
    sql = "select n, sum, even, day, price from wide where n <= 3 order by n"
    ops.print_query(settings, sql, limit=None, console=console, fmt="csv")
    assert capsys.readouterr().out.splitlines() == [
        "n,sum,even,day,price",
        "1,0.30000000000000004,false,2026-11-25,1.25",
        "2,0.30000000000000004,,2026-11-26,2.50",
        "3,0.30000000000000004,false,2026-11-27,3.75",
    ]
    ops.print_query(settings, sql, limit=None, console=console, fmt="json")
    rows = json.loads(capsys.readouterr().out)
    assert rows[1] == {
        "n": 2,
        "sum": 0.30000000000000004,
        "even": None,
        "day": "2026-11-26",
        "price": 2.5,
    }
    ops.print_query(settings, "from wide", limit=4, console=console, fmt="csv")
    captured = capsys.readouterr()
    assert len(captured.out.splitlines()) == 5
    assert "4 of 120 rows written (--limit 4)" in captured.err


def test_query_reads_sql_from_a_file_or_stdin(published: Path, tmp_path: Path) -> None:
    question = tmp_path / "question.sql"
    question.write_text("-- the count\nselect count(*) as rows from marts.wide\n")
    done, _ = ht("query", str(question), "--format", "csv", "--data-dir", str(published))
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["rows", "120"]
    done, _ = ht(
        "query", "-", "-f", "json", "--data-dir", str(published), stdin="select 42 as answer"
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == [{"answer": 42}]
    done, _ = ht("query", "select nope from wide", "--data-dir", str(published))
    assert done.returncode == 2
    assert done.stderr.startswith("error: query failed: Binder Error")
    assert len(done.stderr.splitlines()) == 1


def test_shell_opens_the_shipped_cli_read_only_on_the_marts(published: Path) -> None:
    done, _ = ht(
        "shell", "--data-dir", str(published), "-csv", "-c", "select count(*) as n from wide"
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["n", "120"]
    done, _ = ht("shell", "--data-dir", str(published), "-c", "create table marts.x (i int)")
    assert done.returncode != 0
    assert "read-only" in (done.stdout + done.stderr).lower()


def test_every_command_takes_data_dir() -> None:
    for command in app.registered_commands:
        params = command.callback.__code__.co_varnames  # type: ignore[union-attr]
        if command.callback.__name__ == "simulate":  # type: ignore[union-attr]
            continue  # writes nothing, reads no data folder
        assert "data_dir" in params, command.callback.__name__  # type: ignore[union-attr]


def test_a_run_that_did_not_start_exits_75(monkeypatch: pytest.MonkeyPatch) -> None:
    from datetime import UTC, datetime

    from prefect.settings import PREFECT_API_URL, temporary_settings
    from rich.console import Console

    from flows import pipeline
    from flows.runlog import RunSummary

    def skipped(force: bool = False) -> RunSummary:
        return RunSummary(started_at=datetime.now(UTC), outcome="skipped: another run")

    monkeypatch.setattr(pipeline, "elt_flow", skipped)
    # A Prefect API is configured: run_once starts no server of its own.
    with temporary_settings(updates={PREFECT_API_URL: "http://127.0.0.1:1/api"}):
        assert ops.run_once(force=False, console=Console(quiet=True)) == ops.EXIT_SKIPPED == 75


def test_the_local_prefect_server_gets_no_pipeline_settings(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from rich.console import Console

    from flows import prefect_api
    from flows.settings import get_settings

    monkeypatch.setenv("HT_API_TOKEN", "tok_never_in_the_server_env")
    seen: dict[str, str] = {}

    class Stop(Exception):
        pass

    def popen(args: list[str], env: dict[str, str], **kwargs: object) -> None:
        seen.update(env)
        raise Stop

    monkeypatch.setattr(prefect_api.subprocess, "Popen", popen)
    with (
        pytest.raises(Stop),
        prefect_api.local_prefect_server(
            get_settings(data_dir=tmp_path), Console(quiet=True), services=True
        ),
    ):
        pass
    assert seen
    assert not [k for k in seen if k.startswith("HT_")]
    assert "tok_never_in_the_server_env" not in " ".join(seen.values())


def test_a_one_off_command_starts_its_own_server_without_services_when_none_is_set(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """`ht run` with no PREFECT_API_URL gets a local server (one that dies with it), not
    Prefect's temporary one; and no scheduler, so it never schedules runs beside `serve`."""
    import contextlib

    from prefect.settings import PREFECT_API_URL, temporary_settings
    from rich.console import Console

    from flows import pipeline, prefect_api, runlog

    started: list[bool] = []
    seen_url: list[str | None] = []

    @contextlib.contextmanager
    def fake_server(settings: object, console: object, *, services: bool):
        started.append(services)
        yield "http://127.0.0.1:1/api"

    def elt_flow(force: bool) -> runlog.RunSummary:
        seen_url.append(PREFECT_API_URL.value())
        raise RuntimeError("stop here")

    monkeypatch.setattr(prefect_api, "local_prefect_server", fake_server)
    monkeypatch.setattr(pipeline, "elt_flow", elt_flow)
    monkeypatch.setenv("HT_DATA_DIR", str(tmp_path))
    with temporary_settings(updates={PREFECT_API_URL: None}), pytest.raises(ops.RunFailed):
        ops.run_once(force=False, console=Console(quiet=True))
    assert started == [False]
    assert seen_url == ["http://127.0.0.1:1/api"]


def test_status_tells_market_gaps_and_how_far_price_history_reaches() -> None:
    con = duckdb.connect()
    assert ops.market_status(con) == []  # a warehouse from before the market marts
    con.execute("CREATE SCHEMA marts")
    con.execute(
        "CREATE TABLE marts.fct_market_snapshots AS SELECT * FROM (VALUES "
        "('s1', TIMESTAMP '2026-11-30 08:00', 'BTC', true), "
        "('s2', TIMESTAMP '2026-12-01 09:00', 'BTC', true), "
        "('s2', TIMESTAMP '2026-12-01 09:00', 'xyz:GOLD', false), "
        "('s3', TIMESTAMP '2026-12-01 09:30', 'BTC', true)) "
        "AS t(snapshot_id, snapshot_at, coin, has_market)"
    )
    con.execute(
        "CREATE TABLE marts.fct_price_candles_hourly AS "
        "SELECT TIMESTAMP '2026-12-01 08:00' AS open_time"
    )
    rows = dict(ops.market_status(con))
    assert "1[/] of 2 snapshots miss a price" in rows["market gaps (newest day)"]
    assert rows["price history up to"] == "2026-12-01 08:00:00 UTC"


def test_status_judges_freshness_by_the_thresholds_of_the_sources_yaml(
    published: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = get_settings(data_dir=published)
    # As dbt's manifest holds the sources YAML's `freshness:` (no dbt run needed).
    threshold = {
        "warn_after": {"count": 2, "period": "hour"},
        "error_after": {"count": 6, "period": "hour"},
        "filter": None,
    }
    manifest = {
        "sources": {
            "source.p.hyperliquid.candles": {"source_name": "hyperliquid", "name": "candles"},
            "source.p.hypertracker.snapshots": {
                "source_name": "hypertracker",
                "name": "snapshots",
                "freshness": threshold,
            },
        }
    }
    settings.dbt_target_dir.mkdir(parents=True)
    (settings.dbt_target_dir / "manifest.json").write_text(json.dumps(manifest))
    assert transform.freshness_thresholds(settings) == (7200.0, 21600.0)
    assert transform.snapshot_freshness(settings, 7200).status == "pass"  # type: ignore[union-attr]
    assert transform.snapshot_freshness(settings, 7201).status == "warn"  # type: ignore[union-attr]
    assert transform.snapshot_freshness(settings, 6 * 3600 + 1).status == "error"  # type: ignore[union-attr]

    # ht status: the newest published snapshot's age, judged by them.
    con = duckdb.connect(str(settings.analytics_db_path))
    con.execute(
        "CREATE TABLE marts.about AS SELECT "
        "(now() AT TIME ZONE 'UTC')::TIMESTAMP - INTERVAL 3 HOUR AS newest_snapshot_at, "
        "10 AS snapshot_count, (now() AT TIME ZONE 'UTC')::TIMESTAMP AS published_at"
    )
    con.close()
    ops.print_status(settings, console=Console(width=300, force_terminal=False))
    rows = [x.split() for x in capsys.readouterr().out.splitlines()]
    (row,) = [r for r in rows if r[1:2] == ["freshness"]]
    assert "│ warn (warn after 2 h, error after 6 h:" in " ".join(row)
