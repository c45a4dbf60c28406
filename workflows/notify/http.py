"""Sending one notification request and saying, safely, what came back.

One ``httpx.Client`` per process (connection reuse across runs), explicit
timeouts on every request. The answer is classified here, once: delivered,
worth retrying (connection trouble, timeouts, 408, 429, 5xx) or permanent
(any other status). Reasons are built from status codes and exception *types*
only: httpx puts the request URL in some exception messages, and a Slack URL
is a credential.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from trigger.core import secrets
from trigger.core.errors import NotifierError

USER_AGENT = "bauplan-trigger-notify/1"
# What is read of a receiver's answer, and the most of it that is kept (UTF-8 bytes).
_ANSWER_READ = 4096
_ANSWER_KEPT = 200

_client: httpx.Client | None = None
_client_lock = threading.Lock()


@dataclass(frozen=True)
class Outbound:
    """One request to send. ``url`` and ``headers`` may hold secrets: never log them."""

    url: str
    headers: dict[str, str]
    body: bytes
    secrets: tuple[str, ...]  # values to scrub from anything we keep
    method: str = "POST"

    def __repr__(self) -> str:  # keep secrets out of tracebacks and debuggers
        return f"Outbound(method={self.method!r}, url='***', body={len(self.body)} bytes)"


@dataclass(frozen=True)
class Answer:
    delivered: bool
    retry: bool
    code: int | None
    reason: str  # safe to store and show
    retry_after: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "delivered": self.delivered,
            "retry": self.retry,
            "code": self.code,
            "reason": self.reason,
            "retry_after": self.retry_after,
        }


def client() -> httpx.Client:
    global _client
    with _client_lock:
        if _client is None:
            _client = httpx.Client(
                timeout=httpx.Timeout(10.0, connect=5.0),
                follow_redirects=False,
                headers={"User-Agent": USER_AGENT},
            )
        return _client


def close_client() -> None:
    global _client
    with _client_lock:
        if _client is not None:
            _client.close()
            _client = None


def read_env(display: str, key: str, variable: str, environ: Mapping[str, str] | None) -> str:
    """The secret held by ``variable``, read now; the error names only the variable."""
    value = secrets.read(variable, environ, url=key == "url_env", strip=True)
    if value is None:
        raise NotifierError(
            f"notifier {display}: environment variable {variable} ({key}) is not set or empty; "
            "set it in the environment of the process that runs the workflows"
        )
    return value


def check_url(display: str, variable: str, url: str) -> str:
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError, ValueError):
        parsed = None
    if parsed is None or parsed.scheme not in ("http", "https") or not parsed.host:
        raise NotifierError(
            f"notifier {display}: the value of {variable} is not an http:// or https:// URL "
            "(not shown, it is a credential); fix the variable"
        )
    return url


def send(out: Outbound, timeout: float) -> Answer:
    """Send once. Never raises for network or HTTP trouble; never returns a secret."""
    try:
        with client().stream(
            out.method,
            out.url,
            content=out.body,
            headers=out.headers,
            timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
        ) as response:
            code, headers = response.status_code, response.headers
            said = _head(response, out.secrets)
    except httpx.TimeoutException as exc:
        return Answer(False, True, None, f"no answer within {timeout:g}s ({type(exc).__name__})")
    except httpx.TransportError as exc:
        return Answer(False, True, None, f"could not reach the receiver ({type(exc).__name__})")
    except (httpx.HTTPError, httpx.InvalidURL, ValueError, TypeError) as exc:
        return Answer(False, False, None, f"request could not be built ({type(exc).__name__})")
    return classify(code, headers, said, out.secrets)


def _head(response: httpx.Response, extra: tuple[str, ...]) -> str:
    """The start of the answer: a receiver may send megabytes, we keep a few hundred
    bytes. When the read stops mid-body, a secret may be cut in two at the end, where
    no redaction could recognise it: that tail is dropped."""
    data = bytearray()
    for chunk in response.iter_bytes():
        data += chunk
        if len(data) > _ANSWER_READ:
            break
    text = bytes(data[:_ANSWER_READ]).decode(response.encoding or "utf-8", errors="replace")
    if len(data) > _ANSWER_READ:
        cut = max([secrets.longest(), *(len(value) for value in extra)])
        text = text[: max(0, len(text) - cut)]
    return text


def classify(
    code: int, headers: Mapping[str, str], text: str, extra: tuple[str, ...] = ()
) -> Answer:
    """What an answer means. The text is redacted (known secrets and ``extra``) and cut."""
    snippet = _snippet(text, extra)
    said = f": {snippet}" if snippet else ""
    if 200 <= code < 300:
        return Answer(True, False, code, f"HTTP {code}")
    wait = retry_after(headers.get("retry-after"))
    if code == 429:
        return Answer(False, True, code, f"HTTP 429 rate limited{said}", wait)
    if code == 408 or code >= 500:
        return Answer(False, True, code, f"HTTP {code}{said}", wait)
    if 300 <= code < 400:
        reason = f"HTTP {code} redirect; point the variable at the final URL"
        return Answer(False, False, code, reason)
    return Answer(False, False, code, f"HTTP {code}{said}")


def retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header: delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    if re.fullmatch(r"\d+(\.\d+)?", value):
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _snippet(text: str, extra: tuple[str, ...]) -> str:
    cleaned = secrets.redact(text, extra)
    cleaned = "".join(ch if ch.isprintable() else " " for ch in cleaned)
    cleaned = re.sub(r"\s+", " ", cleaned).strip()
    data = cleaned.encode()
    if len(data) <= _ANSWER_KEPT:
        return cleaned
    return data[: _ANSWER_KEPT - 3].decode(errors="ignore") + "…"


# httpx logs each request's full URL at INFO: the one log filter shows URLs as their
# origin and removes every known secret (trigger.core.secrets).
secrets.install_log_filter()
