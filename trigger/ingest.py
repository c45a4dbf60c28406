"""The one hand-over every source ends in: decide, then enqueue and log together.

Each source turns the outside world into an ``Event`` and calls :func:`ingest` (a
thread: ``fire``, schedule ticks, the folder watcher) or :func:`ingest_async` (the
HTTP handlers). Both decide with the source's own filter, so what matches never
depends on which modules happen to be imported, and hand the event and its run
requests to the process's ingest writer (``workflows.intake``), which enqueues the
runs and logs the event in one transaction. Run ids come from the event id, and
the log remembers every event id: a redelivery is a ``duplicate``.

Webhook handlers answer through :class:`Delivery`: only after the commit, with 503
when the system database could not take the runs in time (``enqueue_timeout``;
nothing is left behind then, so the sender's retry is the first attempt).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse

from trigger.core.errors import EnqueueUnavailableError
from trigger.core.event import Event
from trigger.core.eventlog import Outcome, event_log, make_entry
from trigger.core.logfields import ids
from trigger.core.matching import Filter, RunRequest, decide
from trigger.core.settings import Settings, TriggerConfig
from trigger.http.app import state
from workflows.intake import Enqueuer, Intake, Taken

log = logging.getLogger(__name__)

# A source's last touch on a matched run's request (the pushed commit, the file's
# identity), given the trigger that matched.
Shape = Callable[[RunRequest, TriggerConfig], RunRequest]


def intake(
    settings: Settings,
    event: Event,
    check: Filter,
    *,
    among: Sequence[TriggerConfig] | None = None,
    shape: Shape | None = None,
    source_addr: str | None = None,
    log_idle: bool = True,
    quiet: bool = False,
) -> Intake:
    """Every trigger's verdict on ``event`` (those of ``among`` only, when given) and
    the run requests of the ones that matched."""
    decisions = decide(event, settings, check, among)
    by_name = {t.name: t for t in (among if among is not None else settings.triggers)}
    requests = [
        shape(d.request, by_name[d.trigger]) if shape is not None else d.request
        for d in decisions
        if d.request is not None
    ]
    return Intake(event, decisions, requests, source_addr, log_idle=log_idle, quiet=quiet)


def ingest(
    enqueuer: Enqueuer,
    event: Event,
    check: Filter,
    *,
    timeout: float | None = None,
    **options: Any,
) -> Taken:
    """Decide, enqueue and log ``event``; its outcome once committed (``options``: see
    :func:`intake`). Raises ``EnqueueUnavailableError`` when the database cannot take it."""
    return enqueuer.take(intake(enqueuer.settings, event, check, **options), timeout)


class Rejected(Exception):
    """An answer other than 2xx, with a message safe to send and log."""

    def __init__(self, status: int, message: str) -> None:
        self.status = status
        self.message = message
        super().__init__(message)


@dataclass
class Delivery:
    """What the one log line per delivery says."""

    source: str
    id: str = "-"
    repo: str = "-"
    ref: str = "-"
    request: Request | None = None
    recorded: bool = False

    async def answer(self, status: int, body: dict[str, Any], outcome: str) -> JSONResponse:
        if not self.recorded:
            await self._record(status, body, outcome)
        runs = body.get("runs") or []
        log.info(
            "delivery %s source=%s repo=%s ref=%s outcome=%s runs=%s",
            self.id,
            self.source,
            self.repo,
            self.ref,
            outcome,
            ",".join(runs) or "-",
            extra=ids(
                delivery_id=self.id, outcome=outcome, run_id=runs[0] if len(runs) == 1 else None
            ),
        )
        return JSONResponse(body, status_code=status)

    async def reject(self, exc: Rejected) -> JSONResponse:
        return await self.answer(exc.status, {"error": exc.message}, f"rejected-{exc.status}")

    async def _record(self, status: int, body: dict[str, Any], outcome: str) -> None:
        """Every delivery that reaches us goes into the event log, even the refused ones."""
        if self.request is None:
            return
        kind: Outcome = "rejected" if status >= 400 else "ignored"
        reason = body.get("error") or body.get("ignored") or outcome
        if kind == "rejected":
            reason = f"{reason} (HTTP {status})"
        attributes = {"delivery_id": self.id, "repo": self.repo, "ref": self.ref}
        await _log_event(
            self.request,
            make_entry(
                source=self.source,
                event_id=None if self.id == "-" else self.id,
                outcome=kind,
                reason=str(reason),
                source_addr=_client_addr(self.request),
                attributes={k: v for k, v in attributes.items() if v != "-"},
            ),
        )
        self.recorded = True


def _client_addr(request: Request | None) -> str | None:
    return request.client.host if request is not None and request.client else None


async def _log_event(request: Request, entry: Any) -> None:
    """A refused delivery starts nothing: it goes to the log's own writer, and failing
    to write it must not change the answer."""
    try:
        log_ = event_log(state(request).engine, state(request).settings.events.retention_days)
        # The delivery line says it all: the log's own line for it would repeat it.
        await log_.submit_async(replace(entry, quiet=True))
    except Exception as exc:
        log.warning("event log write failed: %s", type(exc).__name__)


def git_code(request: RunRequest, trig: TriggerConfig, event: Event) -> RunRequest:
    """Point a run at the pushed commit when its trigger names a git ``source``."""
    rules = trig.github if event.kind == "github" else trig.gitlab
    sha = event.attributes.get("git_sha")
    if rules is None or rules.source is None or not isinstance(sha, str):
        return request
    subdir = trig.project_dir.as_posix()
    return replace(
        request,
        git_source=rules.source,
        git_sha=sha,
        project_subdir=subdir,
        project_dir=f"{subdir} at {sha[:12]} of {rules.source}",
    )


async def _commit(request: Request, delivery: Delivery, received: Intake, what: str) -> Taken:
    """Hand ``received`` to this process's writer and wait for its commit, at most
    ``enqueue_timeout``; a 503 naming ``what`` when the database did not take it."""
    app_state = state(request)
    if app_state.context is None:
        raise Rejected(503, "this process does not enqueue runs; send hooks to an ingress")
    try:
        taken = await app_state.context.enqueuer.take_async(
            received, app_state.settings.service.enqueue_timeout
        )
    except EnqueueUnavailableError as exc:
        log.warning(
            "delivery %s not enqueued: %s", delivery.id, exc, extra=ids(delivery_id=delivery.id)
        )
        raise Rejected(503, f"the system database cannot take the {what} now; retry") from None
    except Exception as exc:
        log.error(
            "delivery %s not enqueued: %s: %s",
            delivery.id,
            type(exc).__name__,
            exc,
            extra=ids(delivery_id=delivery.id),
        )
        raise Rejected(503, f"the {what} could not be enqueued now; retry") from None
    delivery.recorded = True
    return taken


async def ignore(request: Request, delivery: Delivery, event: Event, why: str) -> JSONResponse:
    """A verified delivery of a kind that starts no runs: logged like every event by the
    writer, so its redelivery is a ``duplicate`` too."""
    if state(request).context is None:  # an app without a writer: the log's own writer
        return await delivery.answer(202, {"ignored": why}, f"ignored ({why})")
    received = Intake(event, source_addr=_client_addr(request), quiet=True, ignored_because=why)
    taken = await _commit(request, delivery, received, "delivery")
    if taken.outcome == "duplicate":
        body = {"runs": [], "event": event.id, "duplicate": True}
        return await delivery.answer(200, body, "duplicate")
    return await delivery.answer(202, {"ignored": why, "event": event.id}, f"ignored ({why})")


async def deliver(
    request: Request,
    delivery: Delivery,
    event: Event,
    allowed: list[TriggerConfig],
    check: Filter,
) -> JSONResponse:
    """Decide among ``allowed`` (the triggers whose secret verified), enqueue and log in
    one commit, answer."""
    taken_in = intake(
        state(request).settings,
        event,
        check,
        among=allowed,
        shape=lambda run, trig: git_code(run, trig, event),
        source_addr=_client_addr(request),
        quiet=True,
    )
    taken = await _commit(request, delivery, taken_in, "runs")
    run_ids = [r.run_id for r in taken.runs]
    if taken.outcome == "ignored":
        reasons = {d.trigger: d.reason or "" for d in taken_in.decisions}
        distinct = set(reasons.values())
        why = distinct.pop() if len(distinct) == 1 else "no matching trigger"
        if not reasons:
            why = "no trigger listens to this repository with this secret"
        ignored = {"ignored": why, "triggers": reasons, "event": event.id}
        return await delivery.answer(202, ignored, f"ignored ({why})")
    body: dict[str, Any] = {"runs": run_ids, "event": event.id}
    if event.attributes.get("paths_complete") is False:
        body["paths_complete"] = False
    body["duplicate"] = taken.outcome == "duplicate"
    if taken.outcome == "duplicate":
        return await delivery.answer(200, body, "duplicate")
    return await delivery.answer(202, body, "accepted")
