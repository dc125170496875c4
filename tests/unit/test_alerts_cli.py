"""`ht signals`: the recent events, filtered, in the formats of `ht query`."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from flows.cli import app
from tests.unit.test_alerts import NEWEST, publish_events


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for key in ("HT_DATA_DIR", "HT_API_TOKEN"):
        monkeypatch.delenv(key, raising=False)
    data = tmp_path / "data"
    publish_events(
        data / "warehouse" / "analytics.duckdb",
        [("f1", "flip", NEWEST - timedelta(hours=30)), ("f2", "flip", NEWEST),
         ("d1", "divergence", NEWEST - timedelta(hours=1))],
    )  # fmt: skip
    return data


def run(data_dir: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["signals", "--data-dir", str(data_dir), *args])
    return result.exit_code, result.output


def test_signals_lists_newest_first_with_filters(data_dir: Path) -> None:
    code, out = run(data_dir, "--format", "json")
    assert code == 0, out
    assert [r["event_id"] for r in json.loads(out)] == ["f2", "d1", "f1"]
    code, out = run(data_dir, "--type", "flip", "--since", "1d", "-f", "json")
    assert [r["event_id"] for r in json.loads(out)] == ["f2"]
    code, out = run(data_dir, "--coin", "ETH", "-f", "csv")
    assert out.splitlines()[0].startswith("snapshot_at_utc,signal_type")
    assert len(out.splitlines()) == 1
    code, out = run(data_dir)
    assert "3 rows" in out


def test_signals_refuses_an_unknown_type_as_a_configuration_error(data_dir: Path) -> None:
    code, out = run(data_dir, "--type", "moon")
    assert code == 2
    assert "not a signal type" in out
