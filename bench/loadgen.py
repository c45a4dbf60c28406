"""A lean HTTP/1.1 load generator for the benchmarks: keep-alive asyncio streams
sending pre-built requests.

httpx spends about 3 ms of CPU per request on this kind of machine, five times what
uvicorn spends answering it, so a benchmark driven by httpx measures httpx. This
client does almost nothing per request (write bytes, read the status line, headers
and ``Content-Length`` body), like ``wrk``, so the server is what gets measured.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from urllib.parse import urlsplit

from tests.trigger.burst import raw_post

# The same bytes the tests' burst client sends (one builder for both).
build_request = raw_post


class Connection:
    """One keep-alive connection; one request at a time."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, url: str) -> Connection:
        parts = urlsplit(url)
        reader, writer = await asyncio.open_connection(parts.hostname, parts.port or 80)
        return cls(reader, writer)

    async def send(self, raw: bytes) -> tuple[int, float]:
        """Send one request; (status, seconds until the whole answer was read)."""
        start = time.perf_counter()
        self.writer.write(raw)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        if length:
            await self.reader.readexactly(length)
        return status, time.perf_counter() - start

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(OSError):
            await self.writer.wait_closed()


# uvicorn closes a keep-alive connection idle for 5 s; a request written to it then fails
# without reaching the app. Like any HTTP client, do not reuse one idle that long.
MAX_IDLE_SECONDS = 4.0


class Pool:
    """Connections handed out one request at a time, opened as the load needs them."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.idle: list[tuple[Connection, float]] = []
        self.opened: list[Connection] = []
        self.connects = 0

    async def send(self, raw: bytes) -> tuple[int, float]:
        conn = None
        while self.idle and conn is None:
            conn, since = self.idle.pop()
            if time.monotonic() - since > MAX_IDLE_SECONDS or conn.reader.at_eof():
                self.opened.remove(conn)
                await conn.close()
                conn = None
        if conn is None:
            conn = await Connection.open(self.url)
            self.opened.append(conn)
            self.connects += 1
        try:
            result = await conn.send(raw)
        except (OSError, asyncio.IncompleteReadError, ValueError):
            self.opened.remove(conn)
            await conn.close()
            return 0, 0.0  # counted as a failure, not an ack
        self.idle.append((conn, time.monotonic()))
        return result

    async def close(self) -> None:
        for conn in self.opened:
            await conn.close()
