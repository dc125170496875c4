"""The signal events as the published warehouse holds them (``marts.signal_events``)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb

COLUMNS = (
    "event_id", "signal_type", "snapshot_id", "snapshot_at", "window", "coin", "subject",
    "subject_name", "direction", "signal_value", "reference_value", "total_usd", "headline",
    "details",
)  # fmt: skip
SELECT_LIST = ", ".join(f'"{column}"' for column in COLUMNS)


@dataclass(frozen=True)
class Event:
    """One signal event: what an alert says."""

    event_id: str
    signal_type: str
    snapshot_id: str
    snapshot_at: datetime  # naive UTC, the snapshot's last_update
    window: str
    coin: str
    subject: str
    subject_name: str
    direction: str
    signal_value: float
    reference_value: float | None
    total_usd: float | None
    headline: str
    details: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        """The event as a webhook payload holds it (times as ISO 8601 UTC)."""
        return {
            "event_id": self.event_id,
            "signal_type": self.signal_type,
            "snapshot_id": self.snapshot_id,
            "snapshot_at": self.snapshot_at.isoformat() + "Z",
            "window": self.window,
            "coin": self.coin,
            "subject": self.subject,
            "subject_name": self.subject_name,
            "direction": self.direction,
            "signal_value": self.signal_value,
            "reference_value": self.reference_value,
            "total_usd": self.total_usd,
            "headline": self.headline,
            "details": self.details,
        }


def _has_events(con: duckdb.DuckDBPyConnection) -> bool:
    row = con.execute(
        "SELECT count(*) FROM duckdb_tables() WHERE schema_name = 'marts' "
        "AND table_name = 'signal_events' AND database_name = current_database()"
    ).fetchone()
    return bool(row and row[0])


def recent_events(
    db: Path, *, max_age_hours: float, types: tuple[str, ...]
) -> tuple[list[Event], datetime | None]:
    """The events of ``types`` at most ``max_age_hours`` before the newest snapshot, oldest
    first, and that newest snapshot's time (None when nothing is published)."""
    if not db.exists():
        return [], None
    con = duckdb.connect(str(db), read_only=True)
    try:
        if not _has_events(con):
            return [], None
        row = con.execute("SELECT max(snapshot_at) FROM marts.signal_events").fetchone()
        newest = con.execute("SELECT newest_snapshot_at FROM marts.about").fetchone()
        newest_at = (newest[0] if newest else None) or (row[0] if row else None)
        if newest_at is None or not types:
            return [], newest_at
        since = newest_at - timedelta(hours=max_age_hours)
        rows = con.execute(
            f"SELECT {SELECT_LIST} "
            "FROM marts.signal_events WHERE snapshot_at >= ? AND list_contains(?, signal_type) "
            'ORDER BY snapshot_at, signal_type, coin, subject, "window"',
            [since, list(types)],
        ).fetchall()
    finally:
        con.close()
    events = []
    for r in rows:
        values = dict(zip(COLUMNS, r, strict=True))
        values["details"] = json.loads(values["details"] or "{}")
        events.append(Event(**values))
    return events, newest_at
