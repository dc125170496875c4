"""The delivery ledger: which events each channel has had (``state/alerts.json``).

One small JSON file, rewritten atomically (flows.atomic) after every message a channel
accepted, so a crash loses at most the record of the message in flight. It holds channel
names (``webhook``, ``apprise-1``), event ids and times: never a URL or a token. Entries
older than the alerts' age limit can no longer be candidates and are dropped.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from flows import atomic

VERSION = 1
FILE_NAME = "alerts.json"


@dataclass
class ChannelState:
    delivered: dict[str, str] = field(default_factory=dict)  # event id -> its snapshot_at
    last_success_at: str | None = None
    last_failure_at: str | None = None
    last_error: str | None = None  # scrubbed
    failures_in_a_row: int = 0


@dataclass
class DeliveryLedger:
    path: Path
    channels: dict[str, ChannelState] = field(default_factory=dict)

    @classmethod
    def open(cls, state_dir: Path) -> DeliveryLedger:
        path = state_dir / FILE_NAME
        if not path.exists():
            return cls(path)
        raw: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        channels = {
            name: ChannelState(**state) for name, state in (raw.get("channels") or {}).items()
        }
        return cls(path, channels)

    def channel(self, name: str) -> ChannelState:
        return self.channels.setdefault(name, ChannelState())

    def delivered(self, name: str) -> set[str]:
        return set(self.channel(name).delivered)

    def record_success(self, name: str, events: list[tuple[str, datetime]], at: datetime) -> None:
        state = self.channel(name)
        for event_id, snapshot_at in events:
            state.delivered[event_id] = snapshot_at.isoformat()
        state.last_success_at = at.isoformat()
        state.failures_in_a_row = 0
        state.last_error = None
        self.save()

    def record_failure(self, name: str, error: str, at: datetime) -> None:
        state = self.channel(name)
        state.last_failure_at = at.isoformat()
        state.last_error = error[:500]
        state.failures_in_a_row += 1
        self.save()

    def forget_before(self, oldest: datetime) -> None:
        """Drop the events older than ``oldest``: they are never candidates again."""
        for state in self.channels.values():
            state.delivered = {
                event_id: at
                for event_id, at in state.delivered.items()
                if datetime.fromisoformat(at) >= oldest - timedelta(hours=1)
            }

    def save(self) -> None:
        body = {
            "version": VERSION,
            "channels": {name: vars(state) for name, state in sorted(self.channels.items())},
        }
        atomic.write_bytes(self.path, json.dumps(body, indent=1, sort_keys=True).encode())
