"""The first hour after `make demo`: every command the README and the demo's tour print runs
exactly as printed and succeeds; the shipped DuckDB CLIs answer the README's questions; a
long-lived process reads the newest published state the way the README says.

The commands run in a folder laid out like the project (the Makefile, .venv and .tools
linked in) whose ``data/demo`` is a copy of the session's demo warehouse, so that they can
write reports and docs without touching the shared one.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import duckdb
import pytest
from rich.console import Console

from flows.settings import PROJECT_ROOT

pytestmark = pytest.mark.integration

README = (PROJECT_ROOT / "README.md").read_text(encoding="utf-8")
SQL_BLOCKS = re.findall(r"^```sql\n(.*?)^```", README, re.M | re.S)
LINKED = (".venv", ".tools", "Makefile", "pyproject.toml", "uv.lock")
# Not run, and why. Everything else the README or the tour prints is.
EXCLUDED = {
    "make demo": "the session's demo_warehouse fixture is this demo (2 days); 7 take minutes",
    "make test": "the whole suite, which this test is part of",
    "make docs DATA=data/demo": "serves until Ctrl-C; its build step runs as `ht docs` below",
}
# Commands that read standard input (the DuckDB shell) get a question there.
SHELL_INPUT = "select count(*) as coins from heatmap_board_latest;\n"


def readme_commands() -> list[str]:
    commands = []
    for block in re.findall(r"^```bash\n(.*?)^```", README, re.M | re.S):
        for line in block.splitlines():
            command = re.split(r"\s+#\s", line, maxsplit=1)[0].strip()
            if command and not command.startswith("#"):
                commands.append(command)
    return commands


@pytest.fixture(scope="module")
def workplace(demo_warehouse: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("first-hour")
    for name in LINKED:
        (root / name).symlink_to(PROJECT_ROOT / name)
    shutil.copytree(demo_warehouse, root / "data" / "demo", symlinks=True)
    return root


def run_as_printed(command: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HT_")}
    env["HT_ENV_FILE"] = ""  # no developer's .env; the command says where its data is
    # The README's and the tour's own commands, run as a user types them.
    return subprocess.run(  # noqa: S602
        command,
        shell=True,
        cwd=cwd,
        env=env,
        input=SHELL_INPUT if " shell" in command else "",
        capture_output=True,
        text=True,
        timeout=600,
    )


def tour_lines(workplace: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    from flows.demo import tour

    monkeypatch.chdir(workplace)
    console = Console(record=True, width=60, force_terminal=False)
    data = workplace / "data" / "demo"
    tour(data, data / "reports" / "docs.html", data / "reports" / "latest.html", 1.0, console)
    return console.export_text().splitlines()


def test_readme_commands_run_as_printed(workplace: Path) -> None:
    commands = readme_commands()
    assert "make report DATA=data/demo" in commands
    assert any(c.startswith(".venv/bin/ht query --data-dir data/demo") for c in commands)
    assert not [c for c in commands if "python -m flows.cli" in c or c.startswith("duckdb ")]
    ran = 0
    for command in [c for c in commands if c not in EXCLUDED]:
        done = run_as_printed(command, workplace)
        assert done.returncode == 0, f"{command}\n{done.stdout}\n{done.stderr}"
        ran += 1
    assert ran >= 6
    assert (workplace / "cohorts.csv").read_text().startswith("segment_id,")
    assert (workplace / "data" / "demo" / "reports" / "latest.html").exists()
    # make docs's build step, without the server
    done = run_as_printed(".venv/bin/ht docs --data-dir data/demo", workplace)
    assert done.returncode == 0, done.stderr
    assert "docs written" in done.stdout


def test_tour_commands_run_as_printed(workplace: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lines = tour_lines(workplace, monkeypatch)
    commands = [
        line.strip() for line in lines if line.strip().startswith((".venv/bin/ht ", "make "))
    ]
    assert len(commands) >= 5, lines
    for line in lines:  # one command per line: nothing wrapped onto the next
        assert not line.rstrip().endswith("\\"), line
    for command in commands:
        if command in EXCLUDED:
            continue
        done = run_as_printed(command, workplace)
        assert done.returncode == 0, f"{command}\n{done.stdout}\n{done.stderr}"
        if " shell" in command:
            assert re.search(r"\b\d+\b", done.stdout), done.stdout


def cli_rows(command: list[str]) -> list[dict]:
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout) if done.stdout.strip() else []


@pytest.mark.parametrize("sql", SQL_BLOCKS, ids=[f"sql{i + 1}" for i in range(len(SQL_BLOCKS))])
def test_the_shipped_cli_answers_the_readme(demo_warehouse: Path, sql: str) -> None:
    ht = PROJECT_ROOT / ".venv" / "bin" / "ht"
    rows = cli_rows([str(ht), "shell", "--data-dir", str(demo_warehouse), "-json", "-c", sql])
    assert rows, f"no rows from the DuckDB CLI:\n{sql}"


LTS_CLI = PROJECT_ROOT / ".tools" / "duckdb-1.4" / "bin" / "duckdb"


@pytest.mark.skipif(not LTS_CLI.exists(), reason="`make install` puts the 1.4 CLI in .tools/")
@pytest.mark.parametrize("sql", SQL_BLOCKS, ids=[f"sql{i + 1}" for i in range(len(SQL_BLOCKS))])
def test_a_duckdb_14_cli_answers_the_readme(demo_warehouse: Path, sql: str) -> None:
    db = demo_warehouse / "warehouse" / "analytics.duckdb"
    rows = cli_rows([str(LTS_CLI), "-readonly", "-json", str(db), "-c", sql])
    assert rows, f"no rows from DuckDB 1.4:\n{sql}"


def test_a_long_lived_process_reads_the_newest_state(demo_warehouse: Path, tmp_path: Path) -> None:
    from flows.analyst import connect_latest

    path = tmp_path / "analytics.duckdb"
    shutil.copy(demo_warehouse / "warehouse" / "analytics.duckdb", path)
    old = duckdb.connect(str(path), read_only=True)  # a notebook's first connection, kept
    count = old.execute("select snapshot_count from marts.about").fetchone()[0]  # type: ignore[index]
    # A new state, published as the publish does it: a new file renamed into place.
    fresh = tmp_path / "analytics.duckdb.new"
    shutil.copy(path, fresh)
    writer = duckdb.connect(str(fresh))
    writer.execute("update marts.about set snapshot_count = snapshot_count + 1000")
    writer.close()
    os.replace(fresh, path)

    again = duckdb.connect(str(path), read_only=True)  # DuckDB hands back the open database
    assert again.execute("select snapshot_count from marts.about").fetchone()[0] == count  # type: ignore[index]
    latest = connect_latest(path)
    assert latest.execute("select snapshot_count from marts.about").fetchone()[0] == count + 1000  # type: ignore[index]
    assert latest.execute("select count(*) from heatmap_board_latest").fetchone()[0] > 0  # type: ignore[index]
    # The README's way with duckdb alone
    plain = duckdb.connect()
    plain.execute(f"ATTACH '{path}' AS analytics (READ_ONLY); USE analytics")
    assert plain.execute("select snapshot_count from marts.about").fetchone()[0] == count + 1000  # type: ignore[index]
    for con in (old, again, latest, plain):
        con.close()
