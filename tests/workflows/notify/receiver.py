"""A real HTTP receiver on loopback standing in for Slack, a webhook consumer or GitHub.

It records every request and answers from a script: a status (with headers,
e.g. ``Retry-After``, and a body, which may echo the request as careless
receivers do), or ``hang`` (hold the request unanswered until released).
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

HANG = -1


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    at: float
    answered: int | None = None  # None while hanging / never answered

    def json(self) -> Any:
        import json

        return json.loads(self.body)


@dataclass
class Reply:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: str = "ok"
    echo: Callable[[Recorded], str] | None = None  # the body, made from the request


def echo_path(request: Recorded) -> str:
    return f"no_service for {request.path}"


def echo_authorization(request: Recorded) -> str:
    sent = request.headers.get("Authorization", "")
    return f'{{"message": "Bad credentials", "authorization": "{sent}"}}'


class Receiver:
    def __init__(self, port: int = 0) -> None:
        self.requests: list[Recorded] = []
        self.script: list[Reply] = []
        self.default = Reply(200)
        self.release = threading.Event()
        self._lock = threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                item = Recorded(
                    "POST", self.path, dict(self.headers.items()), body, time.monotonic()
                )
                with owner._lock:
                    owner.requests.append(item)
                    reply = owner.script.pop(0) if owner.script else owner.default
                if reply.status == HANG:
                    owner.release.wait(120)
                    self.close_connection = True
                    return
                data = (reply.echo(item) if reply.echo else reply.body).encode()
                self.send_response(reply.status)
                for key, value in reply.headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                item.answered = reply.status

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def answer(self, *replies: Reply | int) -> Receiver:
        with self._lock:
            self.script.extend(Reply(r) if isinstance(r, int) else r for r in replies)
        return self

    def received(self, path_part: str = "") -> list[Recorded]:
        with self._lock:
            return [r for r in self.requests if path_part in r.path]

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


def closed_port_url() -> str:
    """A loopback URL where nothing listens: connection refused."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return f"http://127.0.0.1:{port}"
