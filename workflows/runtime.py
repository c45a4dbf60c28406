"""What the run workflow needs from the process that launched DBOS.

DBOS workflows are module-level functions, so the settings built once by
``serve`` (or a test) reach them through this one holder, installed before
``DBOS.launch()``. Nothing else in the package keeps process state.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from trigger.core.matching import RunRequest
from trigger.core.settings import Settings
from workflows.bauplan.adapter import Bauplan, BauplanClient, live_client
from workflows.bauplan.rehearsal import LEDGER_FILE, Ledger, RehearsalClient
from workflows.ratelimit import Windows
from workflows.store import Store

ClientFactory = Callable[[RunRequest], BauplanClient]


@dataclass
class Runtime:
    settings: Settings
    store: Store
    client_factory: ClientFactory
    # The per-branch rate windows, on the system database.
    windows: Windows
    # Rehearsal mode's ledger, where ``rehearsal fault`` arms crashes; None when live.
    ledger: Ledger | None = None

    def bauplan(self, request: RunRequest) -> Bauplan:
        return Bauplan(self.client_factory(request))


_current: Runtime | None = None


def install(runtime: Runtime) -> None:
    global _current
    _current = runtime


def current() -> Runtime:
    if _current is None:
        raise RuntimeError("the bauplan-trigger runtime is not installed; launch through serve")
    return _current


def ledger_path(settings: Settings) -> Path:
    return settings.state_path / LEDGER_FILE


def rehearsal_ledger(settings: Settings) -> Ledger | None:
    return Ledger(ledger_path(settings)) if settings.bauplan.mode == "rehearse" else None


def default_client_factory(settings: Settings) -> ClientFactory:
    """Rehearsal clients per request (per-trigger outcome); one live client per process."""
    if settings.bauplan.mode == "rehearse":
        ledger = Ledger(ledger_path(settings))
        cfg = settings.bauplan

        def rehearse(request: RunRequest) -> BauplanClient:
            seconds = request.rehearse_seconds
            outcome = request.rehearse_outcome
            return RehearsalClient(
                ledger,
                username=cfg.username or "rehearsal",
                seconds=cfg.rehearse_seconds if seconds is None else seconds,
                outcome=outcome or cfg.rehearse_outcome,
            )

        return rehearse

    lock = threading.Lock()
    holder: list[BauplanClient] = []

    def live(request: RunRequest) -> BauplanClient:
        with lock:
            if not holder:
                holder.append(live_client())
            return holder[0]

    return live
