"""The HTTP ingress's connection limits: how long a request may take to arrive, how
many connections may be open, and how often a failing ``accept()`` is logged.

uvicorn (with the httptools protocol we run) times out only idle keep-alive
connections: a client that sends its headers and then one byte, half of its
headers, or nothing at all keeps a file descriptor forever, and about a thousand
of them exhaust the process. Its ``limit_concurrency`` does not help: it is
checked only once a request's headers are complete (so connections that never
finish them are never refused), and it logs a warning per refusal. So the
protocol below keeps both limits itself, at the connection:

- a request's headers and body must arrive within ``[service] body_timeout``
  seconds, counted from the connection's opening, or on a kept-alive connection
  from the request's first byte; otherwise it is answered 408 and closed (a
  connection that sent nothing is just closed). Time the server itself holds the
  body back (pipelining, a handler reading slowly) does not count;
- beyond ``[service] max_connections`` open connections, a new one is answered
  503 at once and closed after the client has read it.

When descriptors run out anyway, asyncio logs "socket.accept() out of system
resource" with a traceback once per pending connection, up to the listen
backlog per loop tick; that is thousands of lines a second. One line a second at
most is enough.
"""

from __future__ import annotations

import asyncio
import http
import json
import logging
import resource
from collections.abc import Callable
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

log = logging.getLogger(__name__)

# Set in the request's scope state when its body timed out, so the handler waiting
# for that body can say so (``trigger.ingest.read_body``).
TIMED_OUT = "bauplan_trigger.body_timed_out"
_ACCEPT_ERROR = "socket.accept() out of system resource"
# How long a refused connection may linger for the client to read its 503.
_LINGER = 1.0


def timeout_message(seconds: float) -> str:
    return f"the request did not arrive within {seconds:g}s ([service] body_timeout); send it again"


def _answer(status: int, message: str, *extra: str) -> bytes:
    body = json.dumps({"error": message}).encode()
    head = [
        f"HTTP/1.1 {status} {http.HTTPStatus(status).phrase}",
        "content-type: application/json",
        f"content-length: {len(body)}",
        "connection: close",
        *extra,
    ]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


class Throttle:
    """At most one log line a period: the first event at once, then a count of the
    rest when the period ends."""

    def __init__(self, emit: Callable[[int, Any], None], period: float = 1.0) -> None:
        self.emit = emit
        self.period = period
        self._pending = 0
        self._last: Any = None
        self._timer: asyncio.TimerHandle | None = None

    def note(self, loop: asyncio.AbstractEventLoop, detail: Any = None) -> None:
        self._pending += 1
        self._last = detail
        if self._timer is None:
            self._flush(loop)

    def _flush(self, loop: asyncio.AbstractEventLoop) -> None:
        if not self._pending:
            self._timer = None
            return
        count, self._pending = self._pending, 0
        self.emit(count, self._last)
        self._timer = loop.call_later(self.period, self._flush, loop)

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


def protocol(body_timeout: float, max_connections: int) -> type[HttpToolsProtocol]:
    """uvicorn's httptools protocol with the two limits; one class per server, so
    that its throttled log lines count that server's connections."""
    timeouts = Throttle(
        lambda n, peer: log.warning(
            "closed %d connection(s) whose request did not arrive within %gs (last from %s)",
            n,
            body_timeout,
            peer,
        )
    )
    refusals = Throttle(
        lambda n, peer: log.warning(
            "refused %d connection(s) over [service] max_connections = %d (last from %s)",
            n,
            max_connections,
            peer,
        )
    )
    return type(
        "LimitedHttpToolsProtocol",
        (LimitedHttpToolsProtocol,),
        {
            "body_timeout": body_timeout,
            "max_connections": max_connections,
            "timeouts": timeouts,
            "refusals": refusals,
        },
    )


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    body_timeout: float
    max_connections: int
    timeouts: Throttle
    refusals: Throttle

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._deadline: asyncio.TimerHandle | None = None
        self._in_request = False
        self._headers_done = False
        self._refused = False
        if len(self.connections) > self.max_connections:
            self._refuse()
        else:
            self._arm()

    def _refuse(self) -> None:
        """Answer before reading anything, then half-close: the client reads the 503 and
        its request is read and dropped, so it gets no reset instead of an answer."""
        self._refused = True
        self.connections.discard(self)  # it is not served, so it does not count
        message = (
            f"this server has {self.max_connections} connections open, its "
            "[service] max_connections; retry shortly"
        )
        self.transport.write(_answer(503, message, "retry-after: 1"))
        self.transport.write_eof()
        self._deadline = self.loop.call_later(_LINGER, self.transport.close)
        self.refusals.note(self.loop, self._peer())

    def data_received(self, data: bytes) -> None:
        if not self._refused:
            super().data_received(data)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_request = True
        self._headers_done = False
        if self._deadline is None:
            self._arm()

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        self._headers_done = True

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._in_request = False
        self._disarm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._deadline = self.loop.call_later(self.body_timeout, self._timed_out)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _timed_out(self) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        if self.flow.read_paused:
            self._arm()  # we hold the body back, not the client
            return
        if self._in_request:
            cycle = self.cycle if self._headers_done else None
            if cycle is None or not cycle.response_started:
                self.transport.write(_answer(408, timeout_message(self.body_timeout)))
            if cycle is not None:
                # The handler waiting for the body hears a disconnect, and why.
                self.scope["state"][TIMED_OUT] = self.body_timeout
                cycle.disconnected = True
                cycle.message_event.set()
            self.timeouts.note(self.loop, self._peer())
        self.transport.close()

    def _peer(self) -> str:
        return f"{self.client[0]}:{self.client[1]}" if self.client else "?"


def throttle_accept_errors(
    loop: asyncio.AbstractEventLoop, max_connections: int
) -> Callable[[], None]:
    """Log asyncio's accept errors (descriptors exhausted) at most once a second;
    returns the function that puts the previous handler back."""
    previous = loop.get_exception_handler()

    def emit(count: int, exc: Any) -> None:
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        log.error(
            "cannot accept connections: %s (%d time(s) since the last such line); raise the "
            "open-file limit (ulimit -n, now %d) or lower [service] max_connections (%d)",
            exc,
            count,
            soft,
            max_connections,
        )

    throttle = Throttle(emit)

    def handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        if context.get("message") == _ACCEPT_ERROR:
            throttle.note(loop, context.get("exception"))
        elif previous is not None:
            previous(loop, context)
        else:
            loop.default_exception_handler(context)

    loop.set_exception_handler(handler)

    def restore() -> None:
        throttle.close()
        loop.set_exception_handler(previous)

    return restore
