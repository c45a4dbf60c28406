"""What ``serve`` hands each of its components, and what a component is.

``trigger.service`` (the composition root) builds the list of components and the
context; a source or the HTTP ingress only describes itself as a ``Component``.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from trigger.core.settings import Settings
from workflows.intake import Enqueuer


@dataclass
class ServiceContext:
    settings: Settings
    role: str
    enqueuer: Enqueuer
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    # The listening sockets bound before DBOS launched, by component name.
    sockets: dict[str, socket.socket] = field(default_factory=dict)


Run = Callable[[ServiceContext], Coroutine[Any, Any, None]]
Binder = Callable[[Settings], socket.socket]


@dataclass(frozen=True)
class Component:
    """Something ``serve`` runs until it is cancelled, in the processes of ``roles``.

    ``bind`` makes the listening socket it serves on; ``serve`` calls it before DBOS
    launches and hands the socket over in ``ServiceContext.sockets[name]``."""

    name: str
    roles: tuple[str, ...]
    run: Run
    bind: Binder | None = None
