"""Scrubbing: no text that leaves this package holds a channel's URL or token."""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Iterable, Iterator
from urllib.parse import quote, unquote, urlsplit

# Any URL: its scheme and host may show, never its user info, path or query.
_URL = re.compile(r"\b([a-zA-Z][a-zA-Z0-9+.-]*)://([^\s/'\"<>@]*@)?([^\s/'\"<>?#]*)[^\s'\"<>]*")
MASK = "***"


def secret_parts(secrets: Iterable[str]) -> list[str]:
    """Every piece of the secrets a message could show: whole, decoded, encoded, and the
    parts of a URL after its host (path, query, user info) when long enough to matter."""
    parts: set[str] = set()
    for secret in secrets:
        if not secret:
            continue
        for form in (secret, unquote(secret), quote(secret, safe=":/?&=@")):
            parts.add(form)
            with contextlib.suppress(ValueError):
                split = urlsplit(form)
                for piece in (split.path, split.query, split.username, split.password):
                    if piece and len(piece) >= 6 and piece.strip("/"):
                        parts.add(piece)
                for piece in re.split(r"[/?&=:@]", form):
                    if len(piece) >= 8:
                        parts.add(piece)
    return sorted(parts, key=len, reverse=True)


def scrub(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` without the secrets or any URL's path, query and user info."""
    for part in secret_parts(secrets):
        text = text.replace(part, MASK)
    return _URL.sub(lambda m: f"{m.group(1)}://{m.group(3)}/{MASK}", text)


class _ScrubFilter(logging.Filter):
    def __init__(self, secrets: list[str]) -> None:
        super().__init__()
        self.secrets = secrets

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        record.msg, record.args = scrub(message, self.secrets), None
        return True


# Libraries that log the URLs they are given.
NOISY_LOGGERS = ("httpx", "httpcore", "apprise")


@contextlib.contextmanager
def scrubbed_logs(secrets: list[str]) -> Iterator[None]:
    """While delivering: every line the HTTP and Apprise libraries log is scrubbed."""
    scrubber = _ScrubFilter(secrets)
    loggers = [logging.getLogger(name) for name in NOISY_LOGGERS]
    for logger in loggers:
        logger.addFilter(scrubber)
    try:
        yield
    finally:
        for logger in loggers:
            logger.removeFilter(scrubber)
