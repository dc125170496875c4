"""Faults the simulated API injects: what can go wrong on the wire and in the payload.

A :class:`Fault` says what goes wrong (``kind``) and to which requests: an endpoint
(``path``), a heatmap window, the first ``times`` matching requests (after skipping
``after_n``), or each matching request with probability ``p`` (its own seeded generator, so
a schedule of random faults replays identically). :class:`FaultPlan` holds the faults a
server has been given and picks the one, if any, that fires on a request.

Kinds, by what a client sees:

- transport: ``rate_limit`` (429 + ``Retry-After`` + JSON body), ``server_error`` (500, 502,
  503 or 504), ``slow`` (answers after ``delay_s``), ``drop`` (closes the connection without
  a response), ``truncate`` (full ``Content-Length``, half the body, then closes),
  ``malformed_json`` (200 with a body that is not JSON), ``advance_state`` (answers normally,
  then moves the clock to the next state: "the state changed while fetching");
- schema drift, 200 with valid JSON (heatmap only): ``extra_field``, ``missing_field``,
  ``string_numbers``, ``bias_out_of_range``, ``negative_count``, ``duplicate_coin``,
  ``empty_heatmap``, ``unknown_segment`` (a valid payload with a cohort id 17 that a client
  must keep and flag, not reject); for the info API, ``bad_decimal`` (valid JSON whose first
  price is not a decimal string).

``path`` names a HyperTracker endpoint (``any`` is any of them) or ``info``, the simulated
Hyperliquid info API (``POST /info``), which ``any`` does not reach: a fault meant for the
second source says so. ``info_type`` narrows an info fault to one request type
(``metaAndAssetCtxs``, ``candleSnapshot``, ``fundingHistory``) and ``dex`` to one dex.

Beside the faults, :class:`RateLimit` is a plan's per-minute limit as the API enforces it
(``SimulatedApi(requests_per_minute=...)``): not a fault that fires on chosen requests, but
the rule every HyperTracker request is held to.
"""

from __future__ import annotations

import copy
import math
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any, Final

TRANSPORT_KINDS: Final = frozenset(
    {"rate_limit", "server_error", "slow", "drop", "truncate", "malformed_json", "advance_state"}
)
DRIFT_KINDS: Final = frozenset(
    {
        "extra_field",
        "missing_field",
        "string_numbers",
        "bias_out_of_range",
        "negative_count",
        "duplicate_coin",
        "empty_heatmap",
        "unknown_segment",
    }
)
INFO_DRIFT_KINDS: Final = frozenset({"bad_decimal"})
KINDS: Final = TRANSPORT_KINDS | DRIFT_KINDS | INFO_DRIFT_KINDS
# position_metrics, segment_metrics_export and export_file (the pre-signed file an export
# redirects to) are the history endpoints (simulator/history.py).
PATHS: Final = (
    *("heatmap", "segments", "status", "any", "info"),
    *("position_metrics", "segment_metrics_export", "export_file"),
)
INFO_TYPES: Final = ("metaAndAssetCtxs", "candleSnapshot", "fundingHistory")
WINDOWS: Final = ("24h", "7d", "30d", "all")
SERVER_ERROR_STATUSES: Final = (500, 502, 503, 504)
UNKNOWN_SEGMENT_ID: Final = 17
EXTRA_FIELD: Final = "avgLeverage"  # the field extra_field adds to every coin and segment


@dataclass
class Fault:
    """One fault and the requests it fires on.

    ``times`` defaults to 1 without ``p`` and to unlimited with it; ``after_n`` skips the
    first n matching requests. ``retry_after``/``retry_after_header`` shape a 429,
    ``status`` a server error, ``delay_s`` a slow answer. ``seed`` seeds ``p``'s generator.
    """

    kind: str
    path: str = "any"
    window: str | None = None
    times: int | None = None
    p: float | None = None
    after_n: int = 0
    seed: int = 0
    retry_after: int = 1
    retry_after_header: bool = True
    status: int = 500
    delay_s: float = 1.0
    info_type: str | None = None
    dex: str | None = None
    matched: int = field(default=0, init=False, compare=False)
    fired: int = field(default=0, init=False, compare=False)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}; expected one of {sorted(KINDS)}")
        if self.path not in PATHS:
            raise ValueError(f"unknown fault path {self.path!r}; expected one of {PATHS}")
        if self.kind in DRIFT_KINDS and self.path not in ("heatmap", "any"):
            raise ValueError(f"{self.kind} alters heatmap payloads: path must be heatmap or any")
        if self.kind in INFO_DRIFT_KINDS and self.path != "info":
            raise ValueError(f"{self.kind} alters info answers: path must be info")
        if (self.info_type is not None or self.dex is not None) and self.path != "info":
            raise ValueError("info_type and dex narrow info faults: path must be info")
        if self.info_type is not None and self.info_type not in INFO_TYPES:
            raise ValueError(f"unknown info_type {self.info_type!r}; expected one of {INFO_TYPES}")
        if self.window is not None and self.window not in WINDOWS:
            raise ValueError(f"unknown window {self.window!r}; expected one of {WINDOWS}")
        if self.kind == "server_error" and self.status not in SERVER_ERROR_STATUSES:
            raise ValueError(f"server_error status must be one of {SERVER_ERROR_STATUSES}")
        if self.p is not None and not 0.0 <= self.p <= 1.0:
            raise ValueError(f"p must be within [0, 1], got {self.p}")
        if self.times is None and self.p is None:
            self.times = 1
        if self.times is not None and self.times < 0:
            raise ValueError(f"times must be >= 0, got {self.times}")
        if self.after_n < 0 or self.retry_after < 0 or self.delay_s < 0:
            raise ValueError("after_n, retry_after and delay_s must be >= 0")
        self._rng = random.Random(self.seed)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Fault:
        """A fault from its JSON form (as posted to ``/__sim/faults``)."""
        allowed = {f.name for f in fields(cls) if f.init}
        unknown = set(data) - allowed
        if unknown:
            raise ValueError(
                f"unknown fault field(s) {sorted(unknown)}; allowed: {sorted(allowed)}"
            )
        if "kind" not in data:
            raise ValueError("a fault needs a 'kind'")
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        """The fault's settings and counters, JSON-ready."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @property
    def exhausted(self) -> bool:
        """True once it has fired ``times`` times."""
        return self.times is not None and self.fired >= self.times

    def matches(
        self, path: str, window: str | None, info_type: str | None = None, dex: str | None = None
    ) -> bool:
        """Whether a request to endpoint ``path`` (heatmap ``window``; info request type and
        dex) is targeted."""
        if self.kind in DRIFT_KINDS and path != "heatmap":
            return False
        if self.path != path and not (self.path == "any" and path != "info"):
            return False
        if path == "info":
            return self.info_type in (None, info_type) and self.dex in (None, dex)
        return self.window is None or self.window == window

    def trigger(self) -> bool:
        """Count one matching request; True if the fault fires on it."""
        self.matched += 1
        if self.matched <= self.after_n or self.exhausted:
            return False
        if self.p is not None and self._rng.random() >= self.p:
            return False
        self.fired += 1
        return True


class FaultPlan:
    """The faults a server holds, in the order given; thread-safe.

    On each request the faults are tried in order and the first that fires is used; the
    ones after it do not see that request. Spent faults are dropped.
    """

    def __init__(self) -> None:
        self._faults: list[Fault] = []
        self._lock = threading.Lock()

    def add(self, fault: Fault) -> None:
        """Queue a fault."""
        with self._lock:
            self._faults.append(fault)

    def clear(self) -> None:
        """Forget every fault."""
        with self._lock:
            self._faults.clear()

    def pending(self) -> list[Fault]:
        """The faults not yet spent."""
        with self._lock:
            return list(self._faults)

    def pick(
        self, path: str, window: str | None, info_type: str | None = None, dex: str | None = None
    ) -> Fault | None:
        """The fault that fires on this request, if any."""
        with self._lock:
            chosen = None
            for fault in self._faults:
                if fault.matches(path, window, info_type, dex) and fault.trigger():
                    chosen = fault
                    break
            self._faults = [f for f in self._faults if not f.exhausted]
            return chosen


class RateLimit:
    """A plan's rate: at most ``requests_per_minute`` requests admitted in any rolling
    ``period_s`` (the strictest reading of "60 / min": a client that keeps it also keeps a
    per-calendar-minute count). Thread-safe; ``clock`` is injectable for tests.

    :meth:`admit` counts a request that arrives now, or refuses it with the seconds until the
    oldest admitted request leaves the window (the 429's ``Retry-After``, whole seconds, at
    least 1). A refused request takes no place in the window.
    """

    def __init__(
        self,
        requests_per_minute: int,
        period_s: float = 60.0,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if requests_per_minute < 1:
            raise ValueError(f"requests_per_minute must be >= 1, got {requests_per_minute}")
        self.requests_per_minute = requests_per_minute
        self.period_s = period_s
        self._clock = clock
        self._admitted: deque[float] = deque()
        self._lock = threading.Lock()
        self.admitted = 0
        self.refused = 0

    def admit(self) -> int | None:
        """None when the request is admitted; else the Retry-After to answer with."""
        with self._lock:
            now = self._clock()
            while self._admitted and self._admitted[0] <= now - self.period_s:
                self._admitted.popleft()
            if len(self._admitted) < self.requests_per_minute:
                self._admitted.append(now)
                self.admitted += 1
                return None
            self.refused += 1
            return max(1, math.ceil(self._admitted[0] + self.period_s - now))


# --- bodies --------------------------------------------------------------------------------


def rate_limit_body(retry_after: int) -> dict[str, Any]:
    """The documented 429 body."""
    return {
        "error": "rate_limit_exceeded",
        "message": "Rate limit exceeded",
        "retry_after": retry_after,
    }


def server_error_body(status: int) -> tuple[bytes, str]:
    """(body, content type) of a 5xx: JSON from the API itself, HTML from the proxy in front."""
    if status == 500:
        return b'{"error":"internal_server_error","message":"Internal server error"}', (
            "application/json"
        )
    if status == 503:
        return b'{"error":"service_unavailable","message":"Service temporarily unavailable"}', (
            "application/json"
        )
    title = {502: "502 Bad Gateway", 504: "504 Gateway Time-out"}[status]
    html = (
        f"<html><head><title>{title}</title></head>"
        f"<body><center><h1>{title}</h1></center></body></html>"
    )
    return html.encode(), "text/html; charset=utf-8"


def malformed(body: bytes) -> bytes:
    """The first half of a JSON body: a complete HTTP message that is not JSON."""
    return body[: max(1, len(body) // 2)]


_NUMERIC = (
    "totalValue",
    "totalLongValue",
    "totalShortValue",
    "count",
    "countLong",
    "countShort",
    "bias",
)


def drift_heatmap(kind: str, heatmap: list[dict[str, Any]]) -> dict[str, Any]:
    """The ``{"heatmap": ...}`` payload with drift ``kind`` applied; ``heatmap`` is untouched."""
    if kind not in DRIFT_KINDS:
        raise ValueError(f"{kind!r} is not a drift kind")
    if kind == "empty_heatmap" or not heatmap:
        return {"heatmap": []}
    coins = list(heatmap)  # rows replaced below are copied first: the input is shared
    if kind == "extra_field":
        coins = [
            {
                **coin,
                EXTRA_FIELD: 3.2,
                "segments": [{**seg, EXTRA_FIELD: 2.5} for seg in coin["segments"]],
            }
            for coin in coins
        ]
    elif kind == "string_numbers":
        # Counts and values as strings, as a database driver returns numeric types.
        def stringify(row: dict[str, Any]) -> dict[str, Any]:
            return {k: (repr(v) if k in _NUMERIC else v) for k, v in row.items()}

        coins = [
            {**stringify(coin), "segments": [stringify(seg) for seg in coin["segments"]]}
            for coin in coins
        ]
    elif kind == "duplicate_coin":
        coins.append(copy.deepcopy(coins[0]))
    elif kind == "unknown_segment":
        coins = [{**coin, "segments": [*coin["segments"], _segment_17(coin)]} for coin in coins]
    else:
        i = next((i for i, coin in enumerate(coins) if coin["segments"]), None)
        if i is None:
            return {"heatmap": coins}
        coin = copy.deepcopy(coins[i])
        seg = coin["segments"][0]
        if kind == "missing_field":
            del seg["countShort"]
        elif kind == "bias_out_of_range":
            seg["bias"] = 1.7
        elif kind == "negative_count":
            # countShort negative while count == countLong + countShort still holds, so only
            # a sign check catches it.
            seg["countShort"] = -max(seg["countShort"], 1)
            seg["count"] = seg["countLong"] + seg["countShort"]
        coins[i] = coin
    return {"heatmap": coins}


def _segment_17(coin: dict[str, Any]) -> dict[str, Any]:
    """A cohort the ladder does not know, holding a small slice of the coin's positions."""
    n_long = coin["countLong"] // 50
    n_short = coin["countShort"] // 50
    if n_long + n_short == 0:
        n_long, n_short = (1, 0) if coin["countLong"] else (0, 1)
    long_v = round(coin["totalLongValue"] * n_long / coin["countLong"], 5) if n_long else 0.0
    short_v = round(coin["totalShortValue"] * n_short / coin["countShort"], 5) if n_short else 0.0
    long_v = max(long_v, 0.01) if n_long else 0.0
    short_v = max(short_v, 0.01) if n_short else 0.0
    total = long_v + short_v
    return {
        "segmentId": UNKNOWN_SEGMENT_ID,
        "coin": coin["coin"],
        "totalValue": total,
        "totalLongValue": long_v,
        "totalShortValue": short_v,
        "count": n_long + n_short,
        "countLong": n_long,
        "countShort": n_short,
        "bias": round(long_v / total, 3),
    }


def bad_decimal(body: bytes) -> bytes:
    """An info answer whose first price is not a decimal string (valid JSON otherwise)."""
    for key in (b'"markPx":"', b'"o":"', b'"fundingRate":"'):
        at = body.find(key)
        if at >= 0:
            start = at + len(key)
            return body[:start] + b"1.2.3" + body[body.index(b'"', start) :]
    return body
