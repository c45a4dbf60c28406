"""Launching DBOS for ``serve``: config, executor identity, queue, runtime.

Only ``serve`` (and tests standing in for it) launch DBOS. Two live processes
with the same executor id and version re-run each other's in-flight steps, so
the id is derived from host + role + the configured process name: stable across
restarts of that process, different for every other one, and held exclusively
(``workflows.hold``) from before DBOS launches until the process ends.
"""

from __future__ import annotations

import logging
import re
import socket
from collections.abc import Callable

from dbos import DBOS, DBOSConfig

from trigger.core import db, secrets
from trigger.core.settings import Settings
from workflows import hold as holds
from workflows import run as _run  # noqa: F401  (registers the run workflow)
from workflows import runtime
from workflows.dbos_compat import is_workflow_registered
from workflows.executors import Heartbeat
from workflows.notify.outbox import NOTICE_QUEUE, NOTICE_WORKFLOW, register_notice_queue
from workflows.queue import (
    JOB_WORKFLOW,
    RUN_QUEUE,
    RUN_WORKFLOW,
    adopt_earlier_queues,
    queue_names,
    register_run_queue,
)
from workflows.ratelimit import Windows
from workflows.runtime import ClientFactory, Runtime, default_client_factory, rehearsal_ledger
from workflows.store import Store

log = logging.getLogger(__name__)

APP_NAME = "bauplan-trigger"
_heartbeat: list[Heartbeat] = []
_held: list[holds.Hold] = []


def executor_id(settings: Settings, role: str, host: str | None = None) -> str:
    host = host or socket.gethostname()
    safe_host = re.sub(r"[^A-Za-z0-9_.-]", "-", host)[:60]
    return f"{safe_host}-{role}-{settings.service.name}"


def dbos_config(settings: Settings, role: str = "all") -> DBOSConfig:
    return {
        "name": APP_NAME,
        "system_database_url": settings.database_url(),
        "application_version": settings.service.application_version,
        "executor_id": executor_id(settings, role),
        "log_level": "WARNING",
    }


def hold_executor(settings: Settings, role: str = "all") -> holds.Hold:
    """This process's exclusive hold on its executor id, or ExecutorHeldError."""
    settings.state_path.mkdir(parents=True, exist_ok=True)
    return holds.take(settings, executor_id(settings, role))


def launch(
    settings: Settings,
    *,
    role: str = "all",
    client_factory: ClientFactory | None = None,
    hold: holds.Hold | None = None,
    on_hold_lost: Callable[[], None] | None = None,
) -> Runtime:
    """Hold the executor id (unless ``hold`` is that already), install the runtime,
    launch DBOS, register the run and notice queues and check them. ``on_hold_lost`` is
    called if another process takes the executor id while this one runs."""
    secrets.install(settings)
    settings.state_path.mkdir(parents=True, exist_ok=True)
    held = hold or hold_executor(settings, role)
    _held.append(held)
    db.use_wal(settings.database_url())
    DBOS(config=dbos_config(settings, role))
    # Our tables live in the system database, which DBOS creates on its first launch.
    # Recovery starts about a second after launch, after the runtime is installed.
    rt = Runtime(
        settings=settings,
        store=Store(settings.database_url(), create_database=True),
        client_factory=client_factory or default_client_factory(settings),
        windows=Windows(settings.database_url()),
        ledger=rehearsal_ledger(settings),
    )
    runtime.install(rt)
    # Beat before DBOS recovers anything, so a restarted worker is not taken over.
    heartbeat = Heartbeat(
        settings, rt.store.engine, executor_id(settings, role), hold=held, on_lost=on_hold_lost
    )
    heartbeat.start()
    _heartbeat.append(heartbeat)
    DBOS.launch()
    register_run_queue(settings)
    adopt_earlier_queues()
    register_notice_queue(settings)
    check_registration([*queue_names(settings), NOTICE_QUEUE])
    log.info(
        "DBOS launched executor=%s version=%s database=%s",
        executor_id(settings, role),
        settings.service.application_version,
        "postgresql" if settings.is_postgres else "sqlite",
    )
    return rt


def prepare_database(settings: Settings) -> None:
    """Create or migrate the system database without launching an executor: what an
    ingress-only process (or a ``fire`` on a fresh state folder) needs before its first
    enqueue. Failures raise (DBOS's CLI helper would print and exit instead)."""
    settings.state_path.mkdir(parents=True, exist_ok=True)
    db.use_wal(settings.database_url())
    Store(settings.database_url(), create_database=True).close()  # the database and our tables
    DBOS.migrate(settings.database_url())


def check_registration(queue_names: list[str] | None = None) -> None:
    """A wrong queue or workflow name is accepted by DBOSClient and then never runs."""
    for name in queue_names or [RUN_QUEUE, NOTICE_QUEUE]:
        if DBOS.retrieve_queue(name) is None:
            raise RuntimeError(f"queue {name} is not registered")
    for workflow in (RUN_WORKFLOW, JOB_WORKFLOW, NOTICE_WORKFLOW):
        if not is_workflow_registered(workflow):
            raise RuntimeError(f"workflow {workflow} is not registered")


def shutdown() -> None:
    rt = runtime._current
    while _heartbeat:
        _heartbeat.pop().stop()
    DBOS.destroy(destroy_registry=False)
    if rt is not None:
        rt.store.close()
        rt.windows.close()
    while _held:
        _held.pop().release()
