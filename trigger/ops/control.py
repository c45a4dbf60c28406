"""Run control for operators: retry, cancel and resume, from the CLI and the HTTP API.

Each action checks the run's state first and refuses, in one sentence, what cannot
be done, in words that fit every surface (the CLI, the API, the page's buttons).
Each is written to the event log (source ``control``) so ``explain`` tells who did
what to a run.
"""

from __future__ import annotations

import logging
import re
from dataclasses import asdict, dataclass, replace
from typing import Any

from dbos import DBOSClient

from trigger.core.errors import RunControlError
from trigger.core.event import whoami
from trigger.core.eventlog import event_log
from trigger.core.eventlog_store import DecisionRecord
from trigger.core.logfields import ids
from trigger.core.matching import RunRequest
from trigger.core.runstatus import status_word
from trigger.core.settings import Settings
from workflows.coalesce import wake
from workflows.intake import Enqueuer
from workflows.queue import resume_queue
from workflows.ratelimit import Windows
from workflows.records import run_status

log = logging.getLogger(__name__)

_RETRY_SUFFIX = re.compile(r":retry-\d+\Z")


@dataclass(frozen=True)
class ControlResult:
    action: str
    run_id: str
    status: str
    detail: str
    new_run_id: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _word(status: Any) -> str:
    return status_word(str(status.status), status.attributes)


def _who(actor: str | None) -> str:
    return actor or whoami()


def retry_id(client: DBOSClient, run_id: str) -> str:
    """``<original>:retry-N``: derived from the old id, numbered after the existing retries."""
    base = _RETRY_SUFFIX.sub("", run_id)
    prefix = f"{base}:retry-"
    taken = client.list_workflows(workflow_id_prefix=prefix, load_input=False, load_output=False)
    numbers = [int(m.group(1)) for w in taken if (m := re.search(r"retry-(\d+)\Z", w.workflow_id))]
    return f"{prefix}{max(numbers, default=0) + 1}"


def retry(
    settings: Settings, enqueuer: Enqueuer, run_id: str, actor: str | None = None
) -> ControlResult:
    """A new run of the same request, linked both ways (``retry_of`` / ``retried_as``)."""
    client = enqueuer.client
    old = run_status(client, run_id)
    word = _word(old)
    if word in ("waiting", "running"):
        raise RunControlError(
            f"run {run_id} is still {word}; wait for it to end, or cancel it, then retry"
        )
    if not old.input or not old.input.get("args"):
        raise RunControlError(f"run {run_id} has no recorded request to retry")
    request = RunRequest.from_dict(old.input["args"][0])
    for _ in range(5):
        new_id = retry_id(client, run_id)
        enqueued = enqueuer.enqueue(replace(request, run_id=new_id))
        if not enqueued.duplicate:
            break
    else:
        raise RunControlError(f"could not pick a free retry id for run {run_id}; try again")
    who = _who(actor)
    client.update_workflow_attributes(new_id, {"retry_of": run_id, "retried_by": who}, merge=True)
    client.update_workflow_attributes(run_id, {"retried_as": new_id}, merge=True)
    _record(settings, "retry", run_id, request.trigger, who, f"retried as {new_id}", new_id)
    log.info("retry of run %s enqueued as %s by %s", run_id, new_id, who, extra=ids(run_id=run_id))
    return ControlResult("retry", run_id, word, f"enqueued {new_id}", new_run_id=new_id)


def cancel(
    settings: Settings, client: DBOSClient, run_id: str, actor: str | None = None
) -> ControlResult:
    """Dequeue a waiting run; stop a running one and cancel its Bauplan job."""
    status = run_status(client, run_id)
    word = _word(status)
    if word not in ("waiting", "running"):
        raise RunControlError(
            f"run {run_id} already ended ({word}); there is nothing to cancel "
            "(retry it to run it again)"
        )
    who = _who(actor)
    client.cancel_workflow(run_id)
    attrs = status.attributes or {}
    if attrs.get("job_workflow"):  # its Bauplan part, under the global cap
        client.cancel_workflow(str(attrs["job_workflow"]))
    _give_back(settings, client, run_id)
    detail = "dequeued before it started" if word == "waiting" else "workflow stopped"
    job_id = (status.attributes or {}).get("job_id")
    if word == "running":
        job_id = job_id or _submitted_job(settings, run_id)
        if job_id:
            detail += f"; Bauplan job {job_id} " + _cancel_job(settings, status, job_id)
        else:
            detail += "; no Bauplan job had been submitted"
    client.update_workflow_attributes(
        run_id, {"phase": "cancelled", "cancelled_by": who, "outcome": "cancelled"}, merge=True
    )
    trigger = (status.attributes or {}).get("trigger") or "?"
    _record(settings, "cancel", run_id, trigger, who, detail, run_id)
    log.info("cancelled run %s (%s) by %s", run_id, detail, who, extra=ids(run_id=run_id))
    return ControlResult("cancel", run_id, word, detail)


def resume(
    settings: Settings, client: DBOSClient, run_id: str, actor: str | None = None
) -> ControlResult:
    """Put a cancelled run back on its trigger's queue, keeping its branch partition key."""
    status = run_status(client, run_id, load_input=False)
    word = _word(status)
    dbos_status = str(status.status)
    if dbos_status not in ("CANCELLED", "MAX_RECOVERY_ATTEMPTS_EXCEEDED"):
        hint = "retry it instead" if word in ("succeeded", "failed") else "it is already on its way"
        raise RunControlError(
            f"run {run_id} is {word}; only a cancelled or stuck run can be resumed ({hint})"
        )
    partition = status.queue_partition_key
    if not partition:
        raise RunControlError(
            f"run {run_id} has no branch partition key; retry it instead of resuming"
        )
    queue = resume_queue(settings, status)
    client.resume_workflow(run_id, queue_name=queue)
    job_workflow = (status.attributes or {}).get("job_workflow")
    if job_workflow:
        _resume_job_workflow(settings, client, str(job_workflow))
    after = run_status(client, run_id, load_input=False)
    if after.queue_partition_key != partition:  # pragma: no cover - DBOS keeps it in 3.4
        raise RunControlError(f"resuming run {run_id} lost its partition key; retry it instead")
    who = _who(actor)
    client.update_workflow_attributes(run_id, {"phase": "queued", "resumed_by": who}, merge=True)
    trigger = (status.attributes or {}).get("trigger") or "?"
    _record(settings, "resume", run_id, trigger, who, f"back on {queue} for {partition}", run_id)
    log.info("resumed run %s on branch %s by %s", run_id, partition, who, extra=ids(run_id=run_id))
    return ControlResult("resume", run_id, word, f"back on the queue for branch {partition}")


def _give_back(settings: Settings, client: DBOSClient, run_id: str) -> None:
    """A cancelled run's reserved start goes back to its rate window, and a run parked
    in its workflow is woken to end now rather than when its wait is over."""
    windows = Windows(settings.database_url())
    try:
        windows.release([run_id])
    finally:
        windows.close()
    wake(client, run_id, "cancelled")


def _resume_job_workflow(settings: Settings, client: DBOSClient, workflow_id: str) -> None:
    """A resumed run carries on waiting for its job workflow: put that back too."""
    found = client.list_workflows(workflow_ids=[workflow_id], load_input=False, load_output=False)
    if found and str(found[0].status) == "CANCELLED":
        client.resume_workflow(workflow_id, queue_name=resume_queue(settings, found[0]))


def _submitted_job(settings: Settings, run_id: str) -> str | None:
    from workflows.store import Store

    store = Store(settings.database_url())
    try:
        sub = store.submission(run_id)
    finally:
        store.close()
    return sub.job_id if sub else None


def _cancel_job(settings: Settings, status: Any, job_id: str) -> str:
    from trigger.core.errors import BauplanFailure
    from workflows.bauplan.adapter import Bauplan
    from workflows.runtime import default_client_factory

    request = RunRequest.from_dict(status.input["args"][0]) if status.input else None
    if request is None:
        return "left running (the run has no recorded request)"
    try:
        Bauplan(default_client_factory(settings)(request)).cancel(job_id)
    except BauplanFailure as exc:
        return f"could not be cancelled ({exc}); cancel it in Bauplan"
    return "cancelled"


def _record(
    settings: Settings,
    action: str,
    run_id: str,
    trigger: str,
    who: str,
    detail: str,
    target_run: str,
) -> None:
    event_log(settings).record(
        source="control",
        event_id=f"{action}:{run_id}"[:300],
        outcome="accepted",
        reason=f"{action} by {who}: {detail}",
        attributes={"action": action, "actor": who, "run_id": run_id},
        decisions=[DecisionRecord(trigger, True, f"{action}: {detail}", target_run)],
        lookup_keys=[run_id],
    )
