"""Unit tests read no pipeline setting left in the environment by an integration fixture.

The session's demo warehouse keeps its HT_ variables (HT_DATA_DIR, the simulator's URLs) for
the whole session, and unit tests run after the integration tests: each unit test starts
from the defaults and sets what it needs itself.
"""

from __future__ import annotations

import os

import pytest


@pytest.fixture(autouse=True)
def _no_inherited_pipeline_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith("HT_") and key != "HT_ENV_FILE":
            monkeypatch.delenv(key)
