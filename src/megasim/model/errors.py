"""Classified model-call failures: what went wrong, where, and how long the server asked us
to wait. ``EndpointError`` is a ``ModelError``, so every retry wrapper treats it as one."""

from __future__ import annotations

import email.utils
import math
import time
from collections.abc import Mapping
from typing import Literal

from megasim.model.base import ModelError

ErrorKind = Literal[
    "timeout", "connection", "429", "5xx", "4xx", "malformed", "unavailable", "other"
]
ERROR_KINDS: tuple[ErrorKind, ...] = (
    "timeout",
    "connection",
    "429",
    "5xx",
    "4xx",
    "malformed",
    "unavailable",
    "other",  # an unexpected exception (a bug): propagated, but counted
)
# Failures that say "this endpoint may be down" (a 429 says "busy", a 4xx "bad request").
LIVENESS_KINDS: frozenset[str] = frozenset({"timeout", "connection", "5xx", "malformed"})


class EndpointError(ModelError):
    """A retryable failure of one call to one endpoint.

    ``retry_after_s`` is the server's ``Retry-After`` (429 and 503 answers), which the
    retry wrapper waits at least; ``endpoint`` names the endpoint (its base URL)."""

    def __init__(
        self,
        message: str,
        *,
        kind: ErrorKind,
        endpoint: str | None = None,
        status: int | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(message)
        self.kind: ErrorKind = kind
        self.endpoint = endpoint
        self.status = status
        self.retry_after_s = retry_after_s


def parse_retry_after(headers: Mapping[str, str] | None, now: float | None = None) -> float | None:
    """Seconds to wait from ``Retry-After`` (seconds or an HTTP date) or ``retry-after-ms``.

    Header names are matched case-insensitively; None when absent or unparseable."""
    if not headers:
        return None
    lowered = {k.lower(): v for k, v in headers.items()}
    millis = lowered.get("retry-after-ms")
    if millis is not None:
        try:
            value = float(millis) / 1000.0
        except ValueError:
            value = math.nan
        if math.isfinite(value) and value >= 0:
            return value
    raw = lowered.get("retry-after")
    if raw is None:
        return None
    try:
        value = float(raw)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(raw)
        except (TypeError, ValueError, IndexError):
            return None
        value = when.timestamp() - (time.time() if now is None else now)
        return max(0.0, value)
    return value if math.isfinite(value) and value >= 0 else None
