"""One settings object for everything that runs, read from the environment (prefix ``HT_``)
and from the `.env` file env_file() names.

Every knob a user may turn lives here and is documented in ``.env.example``. The API token
is a ``SecretStr``: its ``repr`` and ``str`` print ``**********``, so a settings object can
be logged or shown in an error without leaking it.
"""

from __future__ import annotations

import os
from functools import cached_property
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    Field,
    ModelWrapValidatorHandler,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

Window = Literal["24h", "7d", "30d", "all"]
WINDOWS: tuple[Window, ...] = ("24h", "7d", "30d", "all")
SignalType = Literal["flip", "extreme", "divergence"]
SIGNAL_TYPES: tuple[SignalType, ...] = ("flip", "extreme", "divergence")
# Settings whose values are secrets: an error never shows what was given.
SECRET_FIELDS = ("api_token", "alert_webhook_url", "alert_apprise_urls")
PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_BASE_URL = "https://ht-api.coinmarketman.com/api/external"
DEFAULT_HYPERLIQUID_URL = "https://api.hyperliquid.xyz"


class Settings(BaseSettings):
    """What the pipeline talks to, where it writes, and how often it runs."""

    # No env_file here: get_settings() passes the one env_file() names. A bare Settings()
    # reads the environment only, never a `.env` from whatever the current directory is.
    model_config = SettingsConfigDict(
        env_prefix="HT_",
        env_file=None,
        env_file_encoding="utf-8",
        extra="ignore",
        hide_input_in_errors=True,  # an error must never echo the token
    )

    # --- the source ---------------------------------------------------------------------
    base_url: str = Field(DEFAULT_BASE_URL, description="HyperTracker API base URL.")
    api_token: SecretStr | None = Field(
        None, description="HyperTracker API token (Bearer). Never logged or stored."
    )
    # NoDecode: the env value "24h,7d" is split by _split_windows below, not parsed as JSON.
    windows: Annotated[tuple[Window, ...], NoDecode] = Field(
        WINDOWS, description="Position-age windows fetched per snapshot."
    )
    connect_timeout_s: float = 5.0
    read_timeout_s: float = 30.0
    max_attempts: int = Field(6, ge=1, description="Attempts per request, retries included.")
    max_retry_wait_s: float = Field(
        120.0, gt=0, description="Total time one request may spend waiting between attempts."
    )
    backoff_base_s: float = Field(0.5, gt=0, description="First back-off; doubles per retry.")
    state_change_refetches: int = Field(
        3, ge=0, description="Times the windows are fetched again when the state moves mid-fetch."
    )

    # --- the second source: Hyperliquid's public info API (no token) ---------------------
    hyperliquid_url: str = Field(
        DEFAULT_HYPERLIQUID_URL, description="Hyperliquid API base URL (POST {url}/info)."
    )
    hyperliquid_weight_per_minute: int = Field(
        1000,
        ge=20,
        description="Request weight sent to the info API in any rolling minute. Hyperliquid "
        "allows 1200 per IP for all REST calls together: the default leaves room for others.",
    )
    hyperliquid_max_retry_wait_s: float = Field(
        20.0,
        gt=0,
        description="Total time one info request may spend waiting between attempts: the market "
        "is captured between archiving a snapshot and landing it, so it must not wait long.",
    )
    price_history_weight_per_run: int = Field(
        900,
        ge=0,
        description="Weight one run may spend on candles and funding history (0 = none). With "
        "the market's ~100 it fits in one minute's budget, so a run never waits for the limit; "
        "a first backfill (~550 a coin) spreads over runs, an hour of 30 coins is ~1300.",
    )

    # --- the plan's quota -----------------------------------------------------------------
    requests_per_minute: int = Field(60, ge=1, description="Plan rate limit (Pulse: 60).")
    requests_per_day: int | None = Field(
        None, ge=1, description="Daily request budget (Free plan: 100). None = no daily cap."
    )
    requests_per_month: int | None = Field(
        50_000, ge=1, description="Monthly request budget (Pulse: 50k). None = no monthly cap."
    )
    segments_refresh_hours: float = Field(
        24.0, gt=0, description="The cohort ladder (/segments) is fetched at most this often."
    )

    # --- where things live ------------------------------------------------------------------
    data_dir: Path = Field(PROJECT_ROOT / "data", description="Root of everything written.")
    dbt_project_dir: Path = PROJECT_ROOT / "dbt_project"
    dbt_node_tasks: bool = Field(
        False, description="One Prefect task per dbt node (prefect-dbt); much slower per node."
    )

    publish_grace_hours: float = Field(
        24.0,
        gt=0,
        description=(
            "Hours a replaced daily-mart Parquet file is kept once no published state names it: "
            "a reader holding an older analytics.duckdb (whose views name it) can go on that long."
        ),
    )

    lock_timeout_s: float = Field(
        600.0, ge=0, description="How long a run waits for another run to finish writing."
    )

    # --- the schedule -------------------------------------------------------------------------
    schedule_cron: str = Field("*/15 * * * *", description="When `serve` runs the pipeline (UTC).")
    schedule_interval_s: int | None = Field(
        None, ge=1, description="Run every N seconds instead of on the cron (tests, trials)."
    )
    poll: bool = Field(
        True,
        description="`serve` watches HyperTracker's state clock and starts a run as soon as a "
        "new state is out (the cron stays as the fallback); the quota decides how often.",
    )
    poll_interval_s: float = Field(
        15.0,
        ge=5,
        description="Seconds between two state polls at most often (the budget may space them).",
    )
    poll_max_interval_s: float = Field(
        120.0,
        ge=5,
        description="Seconds between polls at most, once a state is later than its threshold.",
    )
    report_cron: str = Field(
        "5 * * * *",
        description="When `serve` draws the heatmap report (UTC): apart from the ELT runs, "
        "so drawing never delays a snapshot (HT_SCHEDULE_INTERVAL_S does not change it).",
    )
    top_coins: int = Field(30, ge=1, description="Coins on the heatmap board (by open interest).")
    reports_keep_days: int = Field(
        90, ge=1, description="Days of dated reports kept (one report per day, its close)."
    )

    # --- alerts: new signal events after each publish (flows/alerts/) -------------------
    alert_webhook_url: SecretStr | None = Field(
        None,
        description="A URL that receives every new signal event as JSON (POST). A secret: "
        "never logged or stored (URLs often carry a token).",
    )
    alert_apprise_urls: SecretStr | None = Field(
        None,
        description="Apprise URLs for chat and email (tgram://, discord://, mailto://, ...), "
        "comma- or space-separated; each is a channel. Secrets, as the webhook's.",
    )
    alert_max_per_run: int = Field(
        10,
        ge=1,
        description="Messages a channel gets in one run at most: when more events are new, "
        "they go as one digest instead.",
    )
    alert_max_age_hours: float = Field(
        24.0,
        gt=0,
        description="Events older than this (before the newest snapshot) are never sent: a "
        "first run, a new channel or a long outage does not replay the history.",
    )
    alert_types: Annotated[tuple[SignalType, ...], NoDecode] = Field(
        SIGNAL_TYPES, description="Signal types that are alerted (comma-separated)."
    )
    alert_timeout_s: float = Field(10.0, gt=0, description="Seconds one delivery may take.")

    @field_validator("windows", mode="before")
    @classmethod
    def _split_windows(cls, value: object) -> object:
        # Environment variables arrive as text: accept "24h,7d" as well as a JSON list.
        if isinstance(value, str) and not value.lstrip().startswith("["):
            value = tuple(part.strip() for part in value.split(",") if part.strip())
        if isinstance(value, list | tuple):
            unknown = [str(w) for w in value if w not in WINDOWS]
            if unknown or not value:
                got = ", ".join(repr(w) for w in unknown) if unknown else "nothing"
                raise ValueError(
                    f"HT_WINDOWS holds {got}: give a comma-separated list of "
                    f"{', '.join(WINDOWS)} (for example HT_WINDOWS=24h,all)"
                )
        return value

    @field_validator("api_token", mode="before")
    @classmethod
    def _clean_token(cls, value: object) -> object:
        # A token pasted or mounted from a file often ends in a newline: surrounding
        # whitespace is dropped. Whitespace inside is refused. The message never shows it.
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        if isinstance(value, str):
            value = value.strip()
            if not value:
                return None
            if any(ch.isspace() or not ch.isprintable() for ch in value):
                raise ValueError(
                    "HT_API_TOKEN holds spaces, line breaks or control characters inside it: "
                    "set it to the token alone (one line, as HyperTracker shows it)"
                )
        return value

    @field_validator("base_url", "hyperliquid_url")
    @classmethod
    def _check_base_url(cls, value: str, info: ValidationInfo) -> str:
        if not value.startswith(("http://", "https://")):
            name = f"HT_{str(info.field_name).upper()}"
            default = DEFAULT_BASE_URL if name == "HT_BASE_URL" else DEFAULT_HYPERLIQUID_URL
            raise ValueError(
                f"{name}={value!r} is not an http(s) URL: leave it unset for {default}"
            )
        return value.rstrip("/") if info.field_name == "hyperliquid_url" else value

    @field_validator("schedule_cron", "report_cron")
    @classmethod
    def _check_cron(cls, value: str, info: ValidationInfo) -> str:
        problem = cron_problem(value)
        if problem:
            name = f"HT_{str(info.field_name).upper()}"
            raise ValueError(
                f"{name}={value!r} is not a cron expression ({problem}): give five fields, "
                f"minute hour day month weekday, in UTC (for example {name}='*/15 * * * *')"
            )
        return value.strip()

    @field_validator("alert_types", mode="before")
    @classmethod
    def _split_alert_types(cls, value: object) -> object:
        # "flip,divergence" as well as a JSON list; an empty value alerts nothing.
        listed = value.split(",") if isinstance(value, str) and "[" not in value else value
        unknown = [t for t in listed if str(t).strip() not in SIGNAL_TYPES and str(t).strip()]
        if unknown and isinstance(listed, list | tuple):
            raise ValueError(
                f"HT_ALERT_TYPES holds {', '.join(repr(t) for t in unknown)}: give a "
                f"comma-separated list of {', '.join(SIGNAL_TYPES)}"
            )
        if isinstance(listed, list) and listed is not value:
            return tuple(str(t).strip() for t in listed if str(t).strip())
        return value

    @field_validator("alert_webhook_url", "alert_apprise_urls", mode="before")
    @classmethod
    def _clean_alert_secret(cls, value: object, info: ValidationInfo) -> object:
        # Secrets, like the token: whitespace around dropped, empty = none, and a message
        # that never shows the value.
        text = value.get_secret_value() if isinstance(value, SecretStr) else value
        if not isinstance(text, str):
            return value
        text = text.strip()
        one_url = text.startswith(("http://", "https://")) and len(text.split()) == 1
        if info.field_name == "alert_webhook_url" and text and not one_url:
            raise ValueError(
                "HT_ALERT_WEBHOOK_URL is not one http(s) URL: set it to the URL alone "
                "(its value is not shown here: it is a secret)"
            )
        return text or None

    @model_validator(mode="wrap")
    @classmethod
    def _name_the_variables(cls, data: object, handler: ModelWrapValidatorHandler) -> Settings:
        # Pydantic names the field (`windows`); a user sets the variable (HT_WINDOWS). Every
        # message says the variable, and never echoes the token's value.
        try:
            return handler(data)
        except ValidationError as exc:
            raise ValueError("; ".join(_describe(error) for error in exc.errors())) from None

    # Derived paths: one layout, named once. data/README.md describes it.
    @cached_property
    def archive_dir(self) -> Path:
        """Verbatim API responses, zstd-compressed, one folder per snapshot."""
        return self.data_dir / "archive"

    @cached_property
    def incoming_dir(self) -> Path:
        """Responses being fetched: written here first, moved into the archive once whole."""
        return self.data_dir / "archive" / "_incoming"

    @cached_property
    def quarantine_dir(self) -> Path:
        """Payloads that failed validation, byte for byte, each with a note saying why."""
        return self.data_dir / "quarantine"

    @cached_property
    def lake_dir(self) -> Path:
        """Normalized Parquet tables, Hive-partitioned by the snapshot's UTC date."""
        return self.data_dir / "lake"

    @cached_property
    def warehouse_dir(self) -> Path:
        return self.data_dir / "warehouse"

    @cached_property
    def build_db_path(self) -> Path:
        """The private DuckDB file the loader and dbt write. Analysts do not open it."""
        return self.warehouse_dir / "build.duckdb"

    @cached_property
    def analytics_db_path(self) -> Path:
        """The published, read-only DuckDB file analysts connect to."""
        return self.warehouse_dir / "analytics.duckdb"

    @cached_property
    def marts_dir(self) -> Path:
        """The daily marts' Parquet files, one per day and build; each written once."""
        return self.warehouse_dir / "marts"

    @cached_property
    def dbt_target_dir(self) -> Path:
        """dbt's target/ (manifest, run results, docs) for this data folder.

        Kept per data folder, not in dbt_project/, so that the demo, a real installation and
        `make docs` never read a manifest another dbt process is writing.
        """
        return self.data_dir / "dbt" / "target"

    @cached_property
    def reports_dir(self) -> Path:
        return self.data_dir / "reports"

    @cached_property
    def state_dir(self) -> Path:
        """Run bookkeeping: the quota ledger, the run lock, the last run summary."""
        return self.data_dir / "state"


_CRON_ALIASES = {"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"}
_CRON_FIELDS = (  # name, lowest, highest, names allowed
    ("minute", 0, 59, ()),
    ("hour", 0, 23, ()),
    ("day of month", 1, 31, ()),
    ("month", 1, 12, "jan feb mar apr may jun jul aug sep oct nov dec".split()),  # noqa: SIM905
    ("day of week", 0, 7, "sun mon tue wed thu fri sat".split()),  # noqa: SIM905
)


def cron_problem(expression: str) -> str | None:
    """What is wrong with a five-field cron expression, or None if nothing is."""
    text = expression.strip()
    if text.lower() in _CRON_ALIASES:
        return None
    fields = text.split()
    if len(fields) != 5:
        return f"{len(fields)} field{'s' if len(fields) != 1 else ''}, not 5"
    for part, (name, low, high, names) in zip(fields, _CRON_FIELDS, strict=True):
        for item in part.split(","):
            base, _, step = item.partition("/")
            if step and not (step.isdigit() and int(step) > 0):
                return f"bad step {item!r} in the {name}"
            if base == "*" or (base == "?" and name.startswith("day")):
                continue
            for bound in base.split("-", 1):
                value = str(names.index(bound.lower()) + low) if bound.lower() in names else bound
                if not value.isdigit() or not low <= int(value) <= high:
                    return f"{item!r} is not a {name} ({low}-{high})"
    return None


def _describe(error: dict) -> str:
    """One pydantic error as a line that names the environment variable."""
    message = str(error.get("msg", "invalid")).removeprefix("Value error, ")
    field = ".".join(str(part) for part in error.get("loc", ()) if isinstance(part, str))
    if message.startswith("HT_") or not field:
        return message
    name = f"HT_{field.split('.')[0].upper()}"
    if field.startswith(SECRET_FIELDS):
        return f"{name}: {message}"
    return f"{name}={error.get('input')!r}: {message[:1].lower()}{message[1:]}"


def env_file() -> Path | None:
    """The `.env` file settings read: ``$HT_ENV_FILE`` when set, else the project root's.

    An empty ``HT_ENV_FILE=`` means no file at all (the tests run that way). Variables in
    the environment win over lines in the file.
    """
    value = os.environ.get("HT_ENV_FILE")
    if value is None:
        return PROJECT_ROOT / ".env"
    return Path(value) if value else None


def get_settings(**overrides: object) -> Settings:
    """Settings from the environment and env_file(), with explicit overrides (tests, the demo)."""
    return Settings(_env_file=env_file(), **overrides)  # type: ignore[arg-type]
