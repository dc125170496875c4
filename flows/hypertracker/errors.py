"""What can go wrong when talking to HyperTracker, as exceptions that say what to do next.

Every message names the URL (which never carries the token: the token travels in a header)
and, where one applies, the window. No message, attribute or ``repr`` holds the token.

The exceptions keep their constructor arguments so that they survive pickling (Prefect
serializes a failed task's exception); ``__reduce__`` rebuilds them from those arguments.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

# How many validation reasons a PayloadError message lists before it summarizes the rest.
MAX_REASONS_IN_MESSAGE = 10


class HyperTrackerError(Exception):
    """Base class: anything the HyperTracker client or payload validation raises."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self._init_args: tuple[Any, ...] = (message,)

    def __reduce__(self) -> tuple[Any, ...]:
        return (self.__class__, self._init_args)

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else ""


class AuthError(HyperTrackerError):
    """The API refused the token (HTTP 401 or 403). Retrying cannot help."""

    def __init__(self, url: str, status: int) -> None:
        super().__init__(
            f"the API token was rejected (HTTP {status}) by {url}: check HT_API_TOKEN "
            "(a current token for a plan that includes this endpoint)"
        )
        self._init_args = (url, status)
        self.url = url
        self.status = status


class MissingTokenError(AuthError):
    """No token is configured, so no request was sent."""

    def __init__(self, base_url: str) -> None:
        HyperTrackerError.__init__(
            self,
            f"no HyperTracker API token is configured for {base_url}: set HT_API_TOKEN "
            "in the environment or in .env (the token is sent as a Bearer header and never "
            "logged)",
        )
        self._init_args = (base_url,)
        self.url = base_url
        self.status = 0


class RequestFailed(HyperTrackerError):
    """A request did not succeed: retries ran out, or the API answered a 4xx that won't change.

    ``status`` is the last HTTP status seen, or None when the last attempt got no response
    (timeout, dropped connection). ``body_excerpt`` is the first 200 characters of the last
    error body, if any.
    """

    def __init__(
        self,
        url: str,
        *,
        status: int | None,
        reason: str,
        attempts: int,
        window: str | None = None,
        body_excerpt: str = "",
        advice: str = "",
    ) -> None:
        where = f"{url} (window {window})" if window else url
        got = f"HTTP {status}" if status is not None else "no response"
        text = f"GET {where} failed after {attempts} attempt(s): {got}, {reason}"
        if body_excerpt:
            text += f"; body: {body_excerpt!r}"
        text += f". {advice or _default_advice(status)}"
        super().__init__(text)
        self._init_args = (url,)
        self._init_kwargs = {
            "status": status,
            "reason": reason,
            "attempts": attempts,
            "window": window,
            "body_excerpt": body_excerpt,
            "advice": advice,
        }
        self.url = url
        self.status = status
        self.reason = reason
        self.attempts = attempts
        self.window = window
        self.body_excerpt = body_excerpt

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (self.__class__, self._init_args, self._init_kwargs))


class QuotaExhausted(RequestFailed):
    """HTTP 429 that retrying within the wait budget cannot get past.

    Either the server asked for a longer wait than ``HT_MAX_RETRY_WAIT_S`` leaves (typically a
    daily or monthly quota), or it kept answering 429 until the attempts ran out.
    ``retry_after_s`` is the server's last requested wait, when it gave one.
    """

    def __init__(
        self,
        url: str,
        *,
        status: int | None = 429,
        reason: str,
        attempts: int,
        window: str | None = None,
        body_excerpt: str = "",
        advice: str = "",
        retry_after_s: float | None = None,
    ) -> None:
        if not advice:
            advice = (
                "The plan's rate limit or quota is used up: run again later"
                + (f" (the server asked to wait {retry_after_s:.0f} s)" if retry_after_s else "")
                + ", lower HT_REQUESTS_PER_MINUTE, or check the plan's daily/monthly quota"
            )
        super().__init__(
            url,
            status=status,
            reason=reason,
            attempts=attempts,
            window=window,
            body_excerpt=body_excerpt,
            advice=advice,
        )
        self._init_kwargs["retry_after_s"] = retry_after_s
        self.retry_after_s = retry_after_s


class PayloadError(HyperTrackerError):
    """A response arrived but does not match the schema or breaks an invariant.

    ``reasons`` lists every problem found, each starting with a JSON path such as
    ``heatmap[12].segments[3].bias``. The payload must not be loaded; keep the raw bytes.
    """

    def __init__(self, window: str | None, url: str, reasons: Sequence[str]) -> None:
        reasons = list(reasons)
        where = f"{url} (window {window})" if window else url
        shown = reasons[:MAX_REASONS_IN_MESSAGE]
        lines = [f"the payload from {where} failed validation ({len(reasons)} problem(s)):"]
        lines += [f"  - {r}" for r in shown]
        if len(reasons) > len(shown):
            lines.append(f"  ... and {len(reasons) - len(shown)} more")
        lines.append(
            "It was not loaded. Keep the raw body (quarantine) and compare it with the schema "
            "in flows/hypertracker/payload.py: if the API changed, update the schema; if the "
            "body is damaged, fetch again."
        )
        super().__init__("\n".join(lines))
        self._init_args = (window, url, reasons)
        self.window = window
        self.url = url
        self.reasons = reasons


def _rebuild(cls: type[HyperTrackerError], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    return cls(*args, **kwargs)


def _default_advice(status: int | None) -> str:
    if status is None:
        return (
            "Check that the API (HT_BASE_URL) is reachable from this machine, then run again; "
            "raise HT_READ_TIMEOUT_S if responses are slow"
        )
    if status == 429 or status >= 500:
        return "The API is overloaded or failing: run again later"
    if status == 404:
        return "Check HT_BASE_URL and the endpoint path"
    return "The request was refused as sent: check HT_BASE_URL and the query parameters"
