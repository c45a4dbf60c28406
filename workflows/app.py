"""Launching DBOS for ``serve``: config, executor identity, queue, runtime.

Only ``serve`` (and tests standing in for it) launch DBOS. Two live processes
with the same executor id and version re-run each other's in-flight steps, so
the id is derived from host + role + the configured process name: stable across
restarts of that process, different for every other one.
"""

from __future__ import annotations

import logging
import re
import socket

from dbos import DBOS, DBOSConfig

from trigger.settings import Settings
from workflows import run as _run  # noqa: F401  (registers the run workflow)
from workflows import runtime
from workflows.queue import RUN_QUEUE, RUN_WORKFLOW, queue_names, register_run_queue
from workflows.runtime import ClientFactory, Runtime, default_client_factory
from workflows.store import Store
from workflows.takeover import Heartbeat

log = logging.getLogger(__name__)

APP_NAME = "bauplan-trigger"
_heartbeat: list[Heartbeat] = []


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


def launch(
    settings: Settings,
    *,
    role: str = "all",
    client_factory: ClientFactory | None = None,
) -> Runtime:
    """Install the runtime, launch DBOS, register the run queue and check it."""
    settings.state_path.mkdir(parents=True, exist_ok=True)
    DBOS(config=dbos_config(settings, role))
    # Our tables live in the system database, which DBOS creates on its first launch.
    # Recovery starts about a second after launch, after the runtime is installed.
    rt = Runtime(
        settings=settings,
        store=Store(settings.database_url(), create_database=True),
        client_factory=client_factory or default_client_factory(settings),
    )
    runtime.install(rt)
    # Beat before DBOS recovers anything, so a restarted worker is not taken over.
    heartbeat = Heartbeat(settings, rt.store.engine, executor_id(settings, role))
    heartbeat.start()
    _heartbeat.append(heartbeat)
    DBOS.launch()
    register_run_queue(settings)
    check_registration(queue_names(settings))
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
    Store(settings.database_url(), create_database=True).close()  # the database and our tables
    DBOS.migrate(settings.database_url())


def check_registration(queue_names: list[str] | None = None) -> None:
    """A wrong queue or workflow name is accepted by DBOSClient and then never runs."""
    for name in queue_names or [RUN_QUEUE]:
        if DBOS.retrieve_queue(name) is None:
            raise RuntimeError(f"queue {name} is not registered")
    from dbos._dbos import _get_dbos_instance

    registry = _get_dbos_instance()._registry
    if RUN_WORKFLOW not in registry.workflow_info_map:
        raise RuntimeError(f"workflow {RUN_WORKFLOW} is not registered")


def shutdown() -> None:
    rt = runtime._current
    while _heartbeat:
        _heartbeat.pop().stop()
    DBOS.destroy(destroy_registry=False)
    if rt is not None:
        rt.store.close()
