"""Which `.env` file settings read: HT_ENV_FILE's, else the project root's, never the cwd's."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from flows import settings as settings_module
from flows.settings import env_file, get_settings

DEFAULT_TOP_COINS = 30


def test_the_tests_read_no_env_file() -> None:
    # tests/conftest.py empties HT_ENV_FILE, so a developer's .env in the project root
    # cannot change what any test sees.
    assert os.environ["HT_ENV_FILE"] == ""
    assert env_file() is None


def test_the_file_named_by_ht_env_file_is_read_and_an_empty_one_reads_none(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("HT_TOP_COINS", raising=False)
    path = tmp_path / "hypertracker.env"
    path.write_text("HT_TOP_COINS=3\n")

    monkeypatch.setenv("HT_ENV_FILE", str(path))
    assert get_settings().top_coins == 3
    # The environment wins over the file, and explicit overrides over both.
    monkeypatch.setenv("HT_TOP_COINS", "4")
    assert get_settings().top_coins == 4
    assert get_settings(top_coins=5).top_coins == 5
    monkeypatch.delenv("HT_TOP_COINS")

    monkeypatch.setenv("HT_ENV_FILE", "")
    assert get_settings().top_coins == DEFAULT_TOP_COINS


def test_without_ht_env_file_the_project_roots_env_is_read_and_never_the_cwds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("HT_TOP_COINS", raising=False)
    monkeypatch.delenv("HT_ENV_FILE")
    assert env_file() == settings_module.PROJECT_ROOT / ".env"

    # A stand-in project root, so that the real one's .env (a developer's) stays unread.
    root, cwd = tmp_path / "root", tmp_path / "cwd"
    root.mkdir()
    cwd.mkdir()
    (root / ".env").write_text("HT_TOP_COINS=7\n")
    (cwd / ".env").write_text("HT_TOP_COINS=3\n")
    monkeypatch.setattr(settings_module, "PROJECT_ROOT", root)
    monkeypatch.chdir(cwd)
    assert get_settings().top_coins == 7

    # With no file at all, the cwd's .env is still not read.
    monkeypatch.setenv("HT_ENV_FILE", "")
    assert get_settings().top_coins == DEFAULT_TOP_COINS
