"""A burst of webhook deliveries over keep-alive HTTP/1.1 connections.

httpx spends more CPU per request than the service spends answering it, so on a
small machine a burst sent with httpx mostly measures httpx. This client does almost
nothing per request (bench/loadgen.py's approach: write pre-built bytes, read the
status line, headers and ``Content-Length`` body) and keeps each answer's JSON, so a
test can check what every acknowledged delivery was told.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit


@dataclass(frozen=True)
class Answer:
    status: int
    body: dict[str, Any]

    @property
    def acked(self) -> bool:
        return 200 <= self.status < 300


def raw_post(url: str, body: bytes, headers: Mapping[str, str]) -> bytes:
    """The bytes of a keep-alive ``POST url`` carrying ``body``."""
    parts = urlsplit(url)
    lines = [
        f"POST {parts.path or '/'} HTTP/1.1",
        f"Host: {parts.netloc}",
        f"Content-Length: {len(body)}",
        *(f"{k}: {v}" for k, v in headers.items()),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def _exchange(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, raw: bytes
) -> Answer:
    writer.write(raw)
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    data = await reader.readexactly(length) if length else b""
    try:
        body = json.loads(data) if data else {}
    except ValueError:
        body = {"text": data.decode(errors="replace")}
    return Answer(int(head[9:12]), body if isinstance(body, dict) else {"json": body})


async def burst(
    url: str,
    requests: Sequence[bytes],
    connections: int,
    on_answer: Callable[[int, Answer], None] | None = None,
) -> dict[int, Answer]:
    """Send ``requests`` (from :func:`raw_post`) over ``connections`` keep-alive
    connections, each taking the next unsent request; the answers by request index.

    A connection that breaks (the server died) stops taking requests: the request it
    was sending and every one never sent have no answer. ``on_answer`` sees each
    answer as it arrives, on the event loop.
    """
    parts = urlsplit(url)
    answers: dict[int, Answer] = {}
    unsent = iter(range(len(requests)))

    async def connection() -> None:
        try:
            reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
        except OSError:
            return
        try:
            for index in unsent:
                try:
                    answer = await _exchange(reader, writer, requests[index])
                except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
                    return
                answers[index] = answer
                if on_answer is not None:
                    on_answer(index, answer)
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    await asyncio.gather(*(connection() for _ in range(connections)))
    return answers
