"""Settings, deployments and the prefect.yaml: a smoke test that everything imports and builds."""

from __future__ import annotations

import importlib
import os
import pkgutil
import re
from pathlib import Path

import pytest
import yaml

import flows
from flows.settings import Settings, get_settings

ROOT = Path(__file__).resolve().parents[2]


def test_every_module_imports() -> None:
    for module in pkgutil.walk_packages(flows.__path__, "flows."):
        if module.name.endswith("__main__"):
            continue
        importlib.import_module(module.name)


def test_token_is_secret_and_windows_parse_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HT_API_TOKEN", "abc-very-secret-123")
    monkeypatch.setenv("HT_WINDOWS", "24h, all")
    settings = get_settings()
    assert settings.windows == ("24h", "all")
    assert "abc-very-secret-123" not in repr(settings)
    assert "abc-very-secret-123" not in str(settings.model_dump())
    assert settings.api_token is not None
    assert settings.api_token.get_secret_value() == "abc-very-secret-123"


def test_an_unknown_window_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HT_WINDOWS", "24h,1y")
    with pytest.raises(ValueError, match="1y"):
        get_settings()


def test_prefect_yaml_takes_its_schedules_from_the_settings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """prefect.yaml, resolved as `prefect deploy` resolves it in the environment `ht deploy`
    gives it, runs each flow on the cron the settings say, and never sees the token."""
    from prefect.utilities.templating import apply_values

    from flows.serving import deploy_environment

    monkeypatch.setenv("HT_SCHEDULE_CRON", "*/20 * * * *")
    monkeypatch.setenv("HT_REPORT_CRON", "7 */2 * * *")
    monkeypatch.setenv("HT_API_TOKEN", "tok-not-for-prefect-deploy")
    settings = get_settings()
    env = deploy_environment(settings)
    assert "tok-not-for-prefect-deploy" not in " ".join(env.values())
    monkeypatch.setattr(os, "environ", env)
    spec = apply_values(yaml.safe_load((ROOT / "prefect.yaml").read_text()), env, False)
    assert spec["pull"][0]["prefect.deployments.steps.set_working_directory"] == {
        "directory": str(ROOT)
    }
    crons = {"hypertracker-elt": "*/20 * * * *", "hypertracker-report": "7 */2 * * *"}
    for deployment in spec["deployments"]:
        module, name = deployment["entrypoint"].split(":")
        module = module.removesuffix(".py").replace("/", ".")
        flow = getattr(importlib.import_module(module), name)
        assert deployment["schedules"][0]["cron"] == crons.pop(flow.name)
        assert deployment["concurrency_limit"] == {"limit": 1, "collision_strategy": "CANCEL_NEW"}
    assert not crons, f"no deployment in prefect.yaml for {sorted(crons)}"


def test_env_example_documents_every_setting_and_nothing_else() -> None:
    text = (ROOT / ".env.example").read_text()
    for name in Settings.model_fields:
        if name == "dbt_project_dir":
            continue
        assert f"HT_{name.upper()}" in text, name
    # HT_ENV_FILE is no field: it names the file the fields are read from (env_file()).
    fields = {f"HT_{name.upper()}" for name in Settings.model_fields} | {"HT_ENV_FILE"}
    documented = set(re.findall(r"\bHT_[A-Z0-9_]*[A-Z0-9]", text))
    assert "HT_ENV_FILE" in documented
    assert documented <= fields, sorted(documented - fields)


def test_the_report_has_its_own_deployment_off_the_elt_schedule(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from flows.serving import build_report_deployment

    monkeypatch.setenv("HT_REPORT_CRON", "5 * * * *")
    deployment = build_report_deployment()
    assert deployment.flow_name == "hypertracker-report"
    (schedule,) = deployment.schedules
    assert schedule.schedule.cron == "5 * * * *"
    # A seconds-interval for the ELT runs (trials, tests) leaves the report on its cron.
    monkeypatch.setenv("HT_SCHEDULE_INTERVAL_S", "5")
    (schedule,) = build_report_deployment().schedules
    assert schedule.schedule.cron == "5 * * * *"
