"""Connections that stall cannot exhaust ``serve``: requests that do not arrive in
time are answered 408 and closed, connections over the cap get 503, and running out
of file descriptors is logged once a second, not once per refused accept."""

from __future__ import annotations

import selectors
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support import ServeProcess, base_config, wait_until, write_config
from tests.trigger.hookkit import body_of, github_headers, github_push, github_trigger

pytestmark = pytest.mark.slow


def _ingress(tmp_path: Path, project_dir: Path, serve_process: Any, **service: Any) -> Any:
    """An ingress-only serve (it launches no DBOS: cheap) with a signed GitHub hook."""
    data = base_config(
        tmp_path, project_dir, service=service, triggers=[github_trigger(project_dir)]
    )
    config = write_config(tmp_path / "bt.toml", data)
    host, port = data["service"]["listen"].rsplit(":", 1)
    return serve_process(config, {}, role="ingress"), (host, int(port))


def _stalled_push(address: tuple[str, int], n: int, *, headers_only: bool = False) -> Any:
    """A signed push whose body (or the end of its headers) never comes: one byte of it
    is sent, then nothing."""
    body = body_of(github_push())
    lines = ["POST /hooks/github HTTP/1.1", f"Host: {address[0]}"]
    lines += [f"{k}: {v}" for k, v in github_headers(body, delivery=f"stall-{n}").items()]
    lines.append(f"Content-Length: {len(body)}")
    head = "\r\n".join(lines).encode()
    sock = socket.create_connection(address)
    sock.sendall(head[:40] if headers_only else head + b"\r\n\r\n" + body[:1])
    return sock


def _read_until_closed(socks: list[socket.socket], deadline: float) -> dict[socket.socket, bytes]:
    """What each socket received before the server closed it (all by ``deadline``)."""
    received = {sock: b"" for sock in socks}
    with selectors.DefaultSelector() as selector:
        for sock in socks:
            selector.register(sock, selectors.EVENT_READ)
        while selector.get_map() and time.monotonic() < deadline:
            for key, _ in selector.select(timeout=0.1):
                chunk = key.fileobj.recv(65536)  # type: ignore[union-attr]
                if chunk:
                    received[key.fileobj] += chunk  # type: ignore[index]
                else:
                    selector.unregister(key.fileobj)
        still_open = len(selector.get_map())
    assert still_open == 0, f"{still_open} connection(s) still open at the deadline"
    return received


def test_stalled_requests_are_answered_408_and_closed_while_healthz_keeps_answering(
    tmp_path: Path, project_dir: Path, serve_process: Any
) -> None:
    timeout = 2.0
    serve, address = _ingress(tmp_path, project_dir, serve_process, body_timeout=timeout)
    healthz = f"http://{address[0]}:{address[1]}/healthz"
    started = time.monotonic()
    bodies = [_stalled_push(address, n) for n in range(300)]
    headers = [_stalled_push(address, n, headers_only=True) for n in range(10)]
    silent = [socket.create_connection(address) for _ in range(10)]
    everything = bodies + headers + silent
    try:
        deadline = started + timeout + 2
        answers = 0
        while time.monotonic() < started + timeout + 0.5:
            # The promise is the answer within a second, so that is the client's timeout.
            assert httpx.get(healthz, timeout=1.0).status_code == 200
            answers += 1
        received = _read_until_closed(everything, deadline)
        assert httpx.get(healthz, timeout=1.0).status_code == 200
    finally:
        for sock in everything:
            sock.close()
    assert answers >= 3
    for sock in bodies + headers:
        assert received[sock].startswith(b"HTTP/1.1 408 Request Timeout\r\n"), received[sock]
        assert b"did not arrive within 2s ([service] body_timeout)" in received[sock]
    assert all(received[sock] == b"" for sock in silent)
    log = serve.log()
    assert log.count("outcome=rejected-408") == 300
    assert "closed 1 connection(s) whose request did not arrive within 2s" in log
    assert "Traceback" not in log


def test_connections_over_max_connections_get_503_until_the_stalled_ones_are_closed(
    tmp_path: Path, project_dir: Path, serve_process: Any
) -> None:
    serve, address = _ingress(
        tmp_path, project_dir, serve_process, max_connections=4, body_timeout=3.0
    )
    healthz = f"http://{address[0]}:{address[1]}/healthz"
    assert httpx.get(healthz, timeout=10).status_code == 200
    stalled = [_stalled_push(address, n) for n in range(4)]
    try:
        refused = wait_until(
            lambda: (r := httpx.get(healthz, timeout=10)).status_code == 503 and r,
            timeout=10,
            what="a fifth connection to be refused",
        )
        assert refused.headers["retry-after"] == "1"
        assert "4 connections open, its [service] max_connections" in refused.json()["error"]
        wait_until(
            lambda: httpx.get(healthz, timeout=10).status_code == 200,
            timeout=10,
            what="the stalled connections to be timed out and room again",
        )
    finally:
        for sock in stalled:
            sock.close()
    assert "over [service] max_connections = 4" in serve.log()


class _FewFiles(ServeProcess):
    """``serve`` with a low open-file limit, as a small container or a default
    ``ulimit -n`` would give it."""

    open_files = 64

    def command(self) -> list[str]:
        wrapper = (
            "import resource, runpy, sys; "
            f"resource.setrlimit(resource.RLIMIT_NOFILE, ({self.open_files}, {self.open_files})); "
            "sys.argv[0] = 'bauplan-trigger'; runpy.run_module('trigger.cli', run_name='__main__')"
        )
        return [sys.executable, "-c", wrapper, *super().command()[3:]]


def test_running_out_of_file_descriptors_is_logged_at_most_once_a_second(
    tmp_path: Path, project_dir: Path
) -> None:
    data = base_config(
        tmp_path, project_dir, service={"max_connections": 10_000, "body_timeout": 60.0}
    )
    config = write_config(tmp_path / "bt.toml", data)
    host, port = data["service"]["listen"].rsplit(":", 1)
    serve = _FewFiles(config, tmp_path, {}, role="ingress")
    serve.start()
    held: list[socket.socket] = []
    try:
        for _ in range(150):  # more than the server has descriptors for
            held.append(socket.create_connection((host, int(port))))
        wait_until(lambda: _accept_lines(serve), what="an accept error")
        first = time.monotonic()
        window = 3.0
        # The rate is the promise: watch the log for a whole window, serve staying up.
        with pytest.raises(subprocess.TimeoutExpired):
            serve.proc.wait(timeout=window - (time.monotonic() - first))
        lines = _accept_lines(serve)
        for sock in held:
            sock.close()
        held.clear()
        healthz = f"http://{host}:{port}/healthz"
        wait_until(
            lambda: _answers(healthz), timeout=10, what="serve to accept again once fds are free"
        )
    finally:
        for sock in held:
            sock.close()
        serve.kill()
    assert 1 <= len(lines) <= window + 2, lines
    assert lines[0].endswith(
        "ERROR trigger.http.connections: cannot accept connections: [Errno 24] Too many open files "
        "(1 time(s) since the last such line); raise the open-file limit (ulimit -n, now 64) "
        "or lower [service] max_connections (10000)"
    )


def _accept_lines(serve: ServeProcess) -> list[str]:
    return [line for line in serve.log().splitlines() if "accept" in line.lower()]


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False
