"""The one hand-over every source ends in: decide, enqueue, record, answer.

A webhook handler (``trigger.sources.webhooks``) reads and verifies its delivery
and calls :func:`deliver`, which answers only after every run is durably enqueued
(503 when the system database cannot take them, so the sender retries). ``fire``,
the API and schedule ticks call :func:`dispatch`. Both decide with the source's own
filter, so what matches never depends on which modules happen to be imported.
Run ids come from the event id: a redelivery finds its runs and is a ``duplicate``.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, replace
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse

from trigger.core.errors import EnqueueUnavailableError
from trigger.core.event import Event
from trigger.core.eventlog import Outcome, dispatch_entry, event_log, make_entry, record_dispatch
from trigger.core.eventlog_store import Entry
from trigger.core.matching import Filter, RunRequest, decide
from trigger.core.settings import Settings, TriggerConfig
from trigger.http.app import state
from workflows.queue import Enqueued, Enqueuer

log = logging.getLogger(__name__)


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


async def _log_event(request: Request, entry: Entry) -> None:
    """The event log tells the story; failing to write it must not fail the delivery.
    The entry joins the log's next group commit; the event loop serves other
    deliveries while it waits."""
    try:
        log_ = event_log(state(request).engine, state(request).settings.events.retention_days)
        # The delivery line says it all: the log's own line for it would repeat it.
        await asyncio.wrap_future(log_.submit(replace(entry, quiet=True)))
    except Exception as exc:
        log.warning("event log write failed: %s", type(exc).__name__)


def dispatch(
    settings: Settings,
    enqueuer: Enqueuer,
    event: Event,
    check: Filter,
    *,
    source_addr: str | None = None,
) -> list[Enqueued]:
    """Enqueue every run the event asks for and record the event; returns the enqueues."""
    decided = decide(event, settings, check)
    enqueued: dict[str, Enqueued] = {}
    for d in decided:
        if d.request is not None:
            enqueued[d.request.run_id] = enqueuer.enqueue(d.request)
    record_dispatch(settings, event, decided, enqueued, source_addr=source_addr)
    return list(enqueued.values())


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


async def deliver(
    request: Request,
    delivery: Delivery,
    event: Event,
    allowed: list[TriggerConfig],
    check: Filter,
) -> JSONResponse:
    """Decide among ``allowed`` (the triggers whose secret verified), enqueue, answer."""
    app_state = state(request)
    settings = app_state.settings
    decisions = decide(event, settings, check, allowed)
    by_name = {t.name: t for t in allowed}
    runs = [git_code(d.request, by_name[d.trigger], event) for d in decisions if d.request]
    if not runs:
        reasons = {d.trigger: d.reason or "" for d in decisions}
        distinct = set(reasons.values())
        why = distinct.pop() if len(distinct) == 1 else "no matching trigger"
        if not reasons:
            why = "no trigger listens to this repository with this secret"
        ignored = {"ignored": why, "triggers": reasons, "event": event.id}
        await _log_event(
            request, dispatch_entry(event, decisions, {}, source_addr=_client_addr(request))
        )
        delivery.recorded = True
        return await delivery.answer(202, ignored, f"ignored ({why})")
    if app_state.context is None:
        raise Rejected(503, "this process does not enqueue runs; send hooks to an ingress")
    enqueuer = app_state.context.enqueuer
    results = []
    # DBOS retries a lost database connection for minutes; senders give up after
    # seconds (GitHub: 10). Answer 503 in time; an enqueue that still lands later
    # makes the sender's retry a duplicate, which is harmless.
    deadline = settings.service.enqueue_timeout
    for run in runs:
        try:
            results.append(
                await asyncio.wait_for(
                    asyncio.to_thread(enqueuer.enqueue, run, quiet=True), deadline
                )
            )
        except TimeoutError:
            log.warning("enqueue of %s took over %.1fs; answering 503", run.run_id, deadline)
            raise Rejected(
                503, "the system database did not take the runs in time; retry"
            ) from None
        except EnqueueUnavailableError as exc:
            log.warning("enqueue of %s failed: %s", run.run_id, exc)
            raise Rejected(503, "the system database cannot take the runs now; retry") from None
        except Exception as exc:
            log.error("enqueue of %s failed: %s: %s", run.run_id, type(exc).__name__, exc)
            raise Rejected(503, "the runs could not be enqueued now; retry") from None
    run_ids = [r.run_id for r in results]
    await _log_event(
        request,
        dispatch_entry(
            event, decisions, {r.run_id: r for r in results}, source_addr=_client_addr(request)
        ),
    )
    delivery.recorded = True
    body: dict[str, Any] = {"runs": run_ids, "event": event.id}
    paths_complete = event.attributes.get("paths_complete")
    if paths_complete is False:
        body["paths_complete"] = False
    if all(r.duplicate for r in results):
        body["duplicate"] = True
        return await delivery.answer(200, body, "duplicate")
    body["duplicate"] = False
    return await delivery.answer(202, body, "accepted")
