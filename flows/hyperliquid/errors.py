"""What can go wrong when asking Hyperliquid's info API, as one-line exceptions.

The API takes no token, so no message here can hold one; messages name the request (its
``type`` and, where one applies, the dex or coin), what happened and what to do next. The
exceptions keep their constructor arguments so that they survive pickling (Prefect
serializes a failed task's exception).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

MAX_REASONS_IN_MESSAGE = 5


class MarketError(Exception):
    """Base class: anything the info client or the payload checks raise."""

    def __init__(self, *args: Any) -> None:
        super().__init__(self._message(*args))
        self._init_args = args

    def __reduce__(self) -> tuple[Any, ...]:
        return (self.__class__, self._init_args)

    @staticmethod
    def _message(*args: Any) -> str:
        return str(args[0]) if args else ""


class InfoRequestFailed(MarketError):
    """A request did not succeed: retries ran out, or a 4xx that will not change."""

    def __init__(self, url: str, what: str, status: int | None, reason: str, attempts: int) -> None:
        super().__init__(url, what, status, reason, attempts)
        self.url, self.what, self.status, self.reason = url, what, status, reason
        self.attempts = attempts

    @staticmethod
    def _message(*args: Any) -> str:
        url, what, status, reason, attempts = args
        got = f"HTTP {status}" if status is not None else "no response"
        if status == 429 or (status or 0) >= 500:
            advice = "the API is overloaded or limiting us: the next run asks again"
        elif status is None:
            advice = "check that HT_HYPERLIQUID_URL is reachable from this machine"
        else:
            advice = "the request was refused as sent: check HT_HYPERLIQUID_URL"
        return f"POST {url} ({what}) failed after {attempts} attempt(s): {got}, {reason}; {advice}"


class InfoPayloadError(MarketError):
    """A response arrived but does not match the documented shape.

    ``reasons`` lists every problem, each starting with a JSON path (``[1][3].markPx``).
    """

    def __init__(self, what: str, reasons: Sequence[str]) -> None:
        super().__init__(what, list(reasons))
        self.what = what
        self.reasons = list(reasons)

    @staticmethod
    def _message(*args: Any) -> str:
        what, reasons = args
        shown = "; ".join(reasons[:MAX_REASONS_IN_MESSAGE])
        more = f" (and {len(reasons) - MAX_REASONS_IN_MESSAGE} more)" if len(reasons) > 5 else ""
        return (
            f"the {what} response failed validation ({len(reasons)} problem(s)): {shown}{more}; "
            "it is kept in the quarantine: compare it with flows/hyperliquid/payload.py"
        )
