"""``serve``: launch DBOS, start this process's components, stop cleanly on a signal.

A component is an async function that runs until cancelled (the HTTP ingress,
a folder watcher, ...). ``--role`` picks which ones a process runs: ``worker``
processes only execute the queue, ``ingress`` processes only accept events,
``all`` (the default) does both in one process.

Start-up refuses a mistake before it can do harm. A process that launches DBOS
first takes the exclusive hold on its executor id, then every component's
listening socket is bound, and only then is DBOS launched: a second ``serve``
with the same executor id, or one whose port is taken, exits before DBOS could
recover (and re-run) anything.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import sys
from collections.abc import Callable, Sequence

from fastapi import APIRouter, FastAPI

from trigger.context import Component, ServiceContext
from trigger.core.errors import TriggerError
from trigger.core.settings import Settings
from trigger.http import app as http
from trigger.ops import api, backfill_api, docs, guard, metrics, page
from trigger.sources import schedule
from trigger.sources.files import component as files
from trigger.sources.webhooks import cloudevents, generic, github, gitlab
from workflows import app
from workflows.intake import Enqueuer
from workflows.runtime import ClientFactory

log = logging.getLogger(__name__)

ROLES = ("all", "ingress", "worker")

# Every HTTP surface, in the order they are mounted: the hooks, the API, the page, /docs.
ROUTERS: tuple[APIRouter, ...] = (
    github.router,
    gitlab.router,
    generic.router,
    cloudevents.router,
    api.router,
    backfill_api.router,
    metrics.router,
    page.router,
    docs.router,
)
HEALTH = {"files": files.health}


SWITCH_INTERVAL = 0.0005
# Ingest writer threads of a process that also runs the queue (PostgreSQL; SQLite has one).
SHARED_WRITERS = 4


def create_app(settings: Settings, context: ServiceContext | None = None) -> FastAPI:
    """The whole HTTP app, as ``serve`` mounts it (tests use it the same way)."""
    return http.build_app(settings, context, ROUTERS, HEALTH)


def components() -> list[Component]:
    """What a ``serve`` process may run; ``--role`` picks among them."""
    return [http.component(ROUTERS, HEALTH), files.COMPONENT, schedule.COMPONENT, guard.GUARD]


def serve(
    settings: Settings, role: str = "all", client_factory: ClientFactory | None = None
) -> None:
    if role == "all":
        # The HTTP loop and the ingest writer wait on the network many times per delivery;
        # next to a worker's busy threads each wait would end only at the next forced GIL
        # switch (5 ms by default). A shorter interval lets them in sooner.
        sys.setswitchinterval(SWITCH_INTERVAL)
    asyncio.run(_serve(settings, role, client_factory))


async def _serve(settings: Settings, role: str, client_factory: ClientFactory | None) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    hold_lost = asyncio.Event()

    def on_hold_lost() -> None:  # called from the heartbeat thread
        loop.call_soon_threadsafe(hold_lost.set)
        loop.call_soon_threadsafe(stop.set)

    parts = components()
    sockets = await _start(settings, role, parts, client_factory, on_hold_lost)
    launched = role in ("all", "worker")
    # Next to a worker's threads, one writer thread waits for the GIL after every round
    # trip; several overlap those waits (bench/ingest.py steady_all_backlog).
    enqueuer = Enqueuer(settings, writers=None if role == "ingress" else SHARED_WRITERS)
    ctx = ServiceContext(settings=settings, role=role, enqueuer=enqueuer, sockets=sockets)
    tasks = [
        asyncio.create_task(part.run(ctx), name=part.name) for part in parts if role in part.roles
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
    if hold_lost.is_set():
        raise TriggerError(
            f"serve stopped: another process took executor id {app.executor_id(settings, role)!r} "
            "while this one ran (see the log); give each process its own [service] name"
        )


async def _start(
    settings: Settings,
    role: str,
    parts: Sequence[Component],
    client_factory: ClientFactory | None,
    on_hold_lost: Callable[[], None],
) -> dict[str, socket.socket]:
    """Hold the executor id, bind the listeners, then launch DBOS, in that order; the
    listening sockets by component name."""
    # An ingress-only process never launches DBOS: it only enqueues through
    # DBOSClient, so it can neither dequeue runs nor "recover" anyone's steps, and
    # needs no hold (a second one can only enqueue what is enqueued already).
    launched = role in ("all", "worker")
    hold = await asyncio.to_thread(app.hold_executor, settings, role) if launched else None
    sockets: dict[str, socket.socket] = {}
    try:
        for part in parts:
            if part.bind is not None and role in part.roles:
                sockets[part.name] = part.bind(settings)
        if hold is not None:
            await asyncio.to_thread(
                app.launch,
                settings,
                role=role,
                client_factory=client_factory,
                hold=hold,
                on_hold_lost=on_hold_lost,
            )
        else:
            # On a new database an ingress may start before any worker ever did.
            await asyncio.to_thread(app.prepare_database, settings)
    except BaseException:
        for sock in sockets.values():
            sock.close()
        if hold is not None:
            hold.release()
        raise
    return sockets


def _hint(settings: Settings) -> None:
    """Tell a new user how to fire each trigger at the service they just started: only
    commands that work for its kind."""
    from trigger.cli.fire import suggestion

    for trig in settings.triggers:
        command, why = suggestion(settings, trig)
        if command is not None:
            log.info("fire it: %s", command)
        else:
            log.info("no fire for trigger %s: %s", trig.name, why)
