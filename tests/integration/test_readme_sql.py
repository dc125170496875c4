"""Every SQL example in the README runs against a demo warehouse and answers something.

The README's questions are the analyst's first contact with the marts: a renamed column or
a query that returns nothing on fresh data must fail here, not in a reader's terminal.
"""

from __future__ import annotations

import re
from pathlib import Path

import duckdb
import pytest

from flows.settings import PROJECT_ROOT

pytestmark = pytest.mark.integration

README = PROJECT_ROOT / "README.md"
SQL_BLOCKS = re.findall(r"^```sql\n(.*?)^```", README.read_text(encoding="utf-8"), re.M | re.S)
PYTHON_BLOCKS = re.findall(
    r"^```python\n(.*?)^```", README.read_text(encoding="utf-8"), re.M | re.S
)
README_DB = "data/warehouse/analytics.duckdb"


def analytics_db(data_dir: Path) -> Path:
    return data_dir / "warehouse" / "analytics.duckdb"


def test_readme_has_enough_questions() -> None:
    assert len(SQL_BLOCKS) >= 5, f"README has {len(SQL_BLOCKS)} ```sql blocks, want at least 5"


@pytest.mark.parametrize("sql", SQL_BLOCKS, ids=[f"sql{i + 1}" for i in range(len(SQL_BLOCKS))])
def test_readme_sql_answers(demo_warehouse: Path, sql: str) -> None:
    con = duckdb.connect(str(analytics_db(demo_warehouse)), read_only=True)
    try:
        cursor = con.execute(sql)
        columns = [d[0] for d in cursor.description or []]
        rows = cursor.fetchall()
    finally:
        con.close()
    assert rows, f"no rows from this README query on 2 simulated days:\n{sql}"
    # Nothing in the examples should come back as a column of NULLs only: that would be a
    # question the warehouse cannot answer yet.
    for i, name in enumerate(columns):
        assert any(row[i] is not None for row in rows), f"column {name} is all NULL:\n{sql}"


def test_readme_python_snippet_runs(
    demo_warehouse: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    snippets = [b for b in PYTHON_BLOCKS if "duckdb.connect" in b]
    assert snippets, "the README should show how to connect from Python"
    for snippet in snippets:
        assert README_DB in snippet
        code = snippet.replace(README_DB, analytics_db(demo_warehouse).as_posix())
        exec(compile(code, "README.md", "exec"), {})  # noqa: S102 - our own README
    assert "BTC" in capsys.readouterr().out  # the board's first row is printed
