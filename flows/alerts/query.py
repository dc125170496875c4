"""``ht signals``: the SQL that lists recent events from the published warehouse."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime

from flows.settings import SIGNAL_TYPES

_AGE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([hd])\s*$")


class SignalsQueryError(ValueError):
    """A filter that cannot be read (the command line makes it a configuration error)."""


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def since_condition(since: str) -> str:
    """``--since``: a date, a date and time (UTC), or an age (6h, 2d) before the newest event."""
    match = _AGE.match(since)
    if match:
        amount, unit = float(match.group(1)), match.group(2)
        hours = amount * (24 if unit == "d" else 1)
        return (
            "snapshot_at >= (select max(snapshot_at) from marts.signal_events) "
            f"- to_microseconds(cast({hours * 3_600_000_000:.0f} as bigint))"
        )
    try:
        moment = (
            datetime.fromisoformat(since.strip())
            if "T" in since or " " in since.strip()
            else datetime.combine(date.fromisoformat(since.strip()), datetime.min.time())
        )
    except ValueError:
        raise SignalsQueryError(
            f"--since {since!r} is neither a date (2026-11-30), a time (2026-11-30T12:00, UTC) "
            "nor an age (6h, 2d)"
        ) from None
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    return f"snapshot_at >= timestamp {_literal(moment.isoformat(sep=' '))}"


def signals_sql(*, types: list[str], coin: str | None, since: str | None) -> str:
    """The events that pass the filters, newest first."""
    conditions = []
    unknown = [t for t in types if t not in SIGNAL_TYPES]
    if unknown:
        raise SignalsQueryError(
            f"--type {', '.join(unknown)} is not a signal type: give {', '.join(SIGNAL_TYPES)}"
        )
    if types:
        conditions.append(f"signal_type in ({', '.join(_literal(t) for t in types)})")
    if coin:
        conditions.append(f"coin = {_literal(coin)}")
    if since:
        conditions.append(since_condition(since))
    where = f"where {' and '.join(conditions)}\n" if conditions else ""
    return (
        "select\n"
        "    strftime(snapshot_at, '%Y-%m-%d %H:%M') as snapshot_at_utc,\n"
        "    signal_type,\n"
        '    "window",\n'
        "    coin,\n"
        "    subject_name as who,\n"
        "    direction,\n"
        "    round(signal_value, 3) as signal_value,\n"
        "    headline,\n"
        "    event_id\n"
        "from marts.signal_events\n"
        f"{where}"
        'order by snapshot_at desc, signal_type, coin, subject, "window"'
    )
