"""Steer a running simulated API from another process, over its ``/__sim/`` endpoints.

For drivers (the demo, integration tests, a notebook) that did not start the server
themselves. Production code never uses this: the real API has no ``/__sim/``.

    with SimulatorControl("http://127.0.0.1:8765/api/external") as sim:
        sim.inject(Fault("rate_limit", path="heatmap", retry_after=2))
        sim.next_state()
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any, Self

import httpx

from simulator.faults import Fault
from simulator.market import iso_ms
from simulator.server import API_PREFIX


class SimulatorControl:
    """A small client for ``/__sim/``; ``base_url`` is the API's (``.../api/external``) or
    the server's root."""

    def __init__(self, base_url: str, timeout: float = 10.0) -> None:
        root = base_url.rstrip("/")
        if root.endswith(API_PREFIX):
            root = root[: -len(API_PREFIX)]
        self._client = httpx.Client(base_url=f"{root}/__sim", timeout=timeout)

    def _call(self, method: str, path: str, payload: Any = None) -> Any:
        response = self._client.request(method, path, json=payload)
        if response.status_code >= 400:
            raise RuntimeError(
                f"simulator control {method} /__sim{path} failed: "
                f"{response.status_code} {response.text}"
            )
        return response.json()

    def clock(self) -> dict[str, Any]:
        """``now``, ``frozen``, ``state``, ``lastUpdate``, ``nextStateAt``, ``marketStart``."""
        return self._call("GET", "/clock")

    def set_time(self, now: datetime) -> dict[str, Any]:
        """Freeze the simulated clock at ``now``."""
        return self._call("POST", "/clock", {"now": iso_ms(now)})

    def advance(self, delta: timedelta | float) -> dict[str, Any]:
        """Move the clock forward (a timedelta or seconds) and freeze it."""
        seconds = delta.total_seconds() if isinstance(delta, timedelta) else float(delta)
        return self._call("POST", "/clock", {"advance_seconds": seconds})

    def next_state(self) -> dict[str, Any]:
        """Move the clock to the next state's publication time and freeze it."""
        return self._call("POST", "/clock", {"next_state": True})

    def follow_wall_clock(self, speed: float = 1.0) -> dict[str, Any]:
        """Let the clock run with the wall clock again, from where it is (``speed`` simulated
        seconds a second)."""
        return self._call("POST", "/clock", {"follow_wall_clock": True, "speed": speed})

    def inject(self, fault: Fault | Mapping[str, Any]) -> list[dict[str, Any]]:
        """Queue a fault; returns the faults now pending."""
        if isinstance(fault, Fault):
            payload = {k: v for k, v in fault.to_dict().items() if k not in ("matched", "fired")}
        else:
            payload = dict(fault)
        return self._call("POST", "/faults", payload)["faults"]

    def faults(self) -> list[dict[str, Any]]:
        """The pending faults, with their counters."""
        return self._call("GET", "/faults")["faults"]

    def clear_faults(self) -> None:
        """Drop every pending fault."""
        self._call("DELETE", "/faults")

    def requests(self) -> list[dict[str, Any]]:
        """The API requests the server has seen: method, path, query, status, fault, at."""
        return self._call("GET", "/requests")["requests"]

    def clear_requests(self) -> None:
        """Forget the logged requests."""
        self._call("DELETE", "/requests")

    def close(self) -> None:
        """Close the HTTP client."""
        self._client.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
