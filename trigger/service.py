"""``serve``: launch DBOS, start this process's components, stop cleanly on a signal.

A component is an async function that runs until cancelled (the HTTP ingress,
a folder watcher, ...). ``--role`` picks which ones a process runs: ``worker``
processes only execute the queue, ``ingress`` processes only accept events,
``all`` (the default) does both in one process.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from trigger.errors import TriggerError
from trigger.settings import Settings
from workflows import app
from workflows.queue import Enqueuer
from workflows.runtime import ClientFactory

log = logging.getLogger(__name__)

ROLES = ("all", "ingress", "worker")


@dataclass
class ServiceContext:
    settings: Settings
    role: str
    enqueuer: Enqueuer
    ready: asyncio.Event = field(default_factory=asyncio.Event)


Component = Callable[[ServiceContext], Coroutine[Any, Any, None]]
# (name, roles that run it, component). Sources append themselves here.
COMPONENTS: list[tuple[str, tuple[str, ...], Component]] = []


def register_component(name: str, roles: tuple[str, ...], component: Component) -> None:
    COMPONENTS.append((name, roles, component))


def serve(
    settings: Settings, role: str = "all", client_factory: ClientFactory | None = None
) -> None:
    asyncio.run(_serve(settings, role, client_factory))


async def _serve(settings: Settings, role: str, client_factory: ClientFactory | None) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    # An ingress-only process never launches DBOS: it only enqueues through
    # DBOSClient, so it can neither dequeue runs nor "recover" anyone's steps.
    launched = role in ("all", "worker")
    if launched:
        await asyncio.to_thread(app.launch, settings, role=role, client_factory=client_factory)
    else:
        # On a new database an ingress may start before any worker ever did.
        await asyncio.to_thread(app.prepare_database, settings)
    enqueuer = Enqueuer(settings)
    ctx = ServiceContext(settings=settings, role=role, enqueuer=enqueuer)
    tasks = [
        asyncio.create_task(component(ctx), name=name)
        for name, roles, component in COMPONENTS
        if role in roles
    ]
    log.info(
        "serving role=%s triggers=%s components=%s",
        role,
        ",".join(t.name for t in settings.triggers) or "-",
        ",".join(t.get_name() for t in tasks) or "-",
    )
    _hint(settings)
    ctx.ready.set()
    waiter = asyncio.create_task(stop.wait())
    done, _ = await asyncio.wait([waiter, *tasks], return_when=asyncio.FIRST_COMPLETED)
    failure: BaseException | None = None
    for task in done:
        if task is not waiter and task.exception() is not None:
            failure = task.exception()
            log.error("component %s stopped: %s", task.get_name(), failure)
    log.info("shutting down; in-flight runs resume on the next start")
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    enqueuer.close()
    if launched:
        await asyncio.to_thread(app.shutdown)
    if failure is not None:
        if isinstance(failure, TriggerError):
            raise failure
        raise TriggerError(f"serve stopped because a component failed: {failure}") from failure


def _hint(settings: Settings) -> None:
    """Tell a new user how to fire an event at the service they just started."""
    where = f" --config {settings.config_path}" if settings.config_path else ""
    for trig in settings.triggers:
        params = "".join(f" --param {name}=..." for name in trig.inputs)
        log.info("fire it: bauplan-trigger fire %s%s%s --wait", trig.name, where, params)
