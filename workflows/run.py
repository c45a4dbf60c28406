"""The run workflow: one Bauplan run for one ``RunRequest``, durably.

Each function below is a DBOS step, so a crash resumes at the last finished one.
The job id is checkpointed by the submit step, and the submissions table covers
the moment between Bauplan accepting a job and that checkpoint
(``workflows.steps.submit``): a job is never submitted twice for one request.

A run is a handful of checkpoints, not one per poll: every checkpoint is a
round trip to the system database, and with many runs in flight those round
trips, not Bauplan, set the pace. So the steps group what belongs together
(resolving and creating the branch; submitting and recording the job id) and
the job is polled inside one ``wait`` step for up to ``job.WAIT_STEP_SECONDS``.
Polling is a read, so a crash in the middle of it just polls again.

The run holds its branch (its partition key on the run queue) from its first step to
its last; what it does with it, the rate gate, the submit and the wait, inline or
through the job queue under a global cap, is ``workflows.job``.
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from typing import Any

from dbos import DBOS

from trigger.core.errors import (
    BauplanFailure,
    BranchError,
    FileGoneError,
    RunFailed,
    WorkspaceError,
)
from trigger.core.logfields import ids
from trigger.core.matching import RunRequest
from workflows import coalesce, crashpoint, job, limits, runtime
from workflows.notify import outbox
from workflows.notify.delivery import final_notice
from workflows.queue import RUN_WORKFLOW
from workflows.result import RunResult
from workflows.steps import code, files, publish
from workflows.steps.branch import user_branch
from workflows.steps.retry import step

log = logging.getLogger(__name__)

RESULT_EVENT = "result"


def start(coalescing: bool, request: dict[str, Any] | None = None) -> dict[str, Any]:
    """The first step: when the run started; for a coalescing trigger, the run that
    superseded it while it waited (its gate); and why it is too late to start, if it
    waited longer than its ``max_queue_seconds``."""
    replaced_by = coalesce.gate() if coalescing else None
    too_late = None
    if request is not None and not replaced_by:
        too_late = limits.expired(RunRequest.from_dict(request))
    return {"started": time.time(), "replaced_by": replaced_by, "expired": too_late}


def resolve_branch(request: dict[str, Any], suffix: str) -> str:
    req = RunRequest.from_dict(request)
    username = runtime.current().bauplan(req).username()
    expected = runtime.current().settings.bauplan.username
    if expected and expected != username:
        raise BauplanFailure(
            f"the config says [bauplan] username = {expected!r} but the API key belongs to "
            f"{username!r}; fix the config or the key",
            retryable=False,
        )
    return user_branch(username, suffix)


def ensure_branch(request: dict[str, Any], branch: str, base_ref: str) -> bool:
    created = (
        runtime.current().bauplan(RunRequest.from_dict(request)).ensure_branch(branch, base_ref)
    )
    if created:
        log.info("created branch %s from %s for run %s", branch, base_ref, request["run_id"])
    return created


def prepare_branch(request: dict[str, Any]) -> str:
    """The run's Bauplan branch, created when missing."""
    req = RunRequest.from_dict(request)
    branch = resolve_branch(request, req.branch_suffix)
    ensure_branch(request, branch, req.base_ref)
    return branch


def remove_code(request: dict[str, Any]) -> None:
    req = RunRequest.from_dict(request)
    if req.git_source and req.git_sha:
        try:
            code.remove(runtime.current().settings.state_path, req.git_source, req.run_id)
        except (OSError, WorkspaceError) as exc:
            # The outcome is known; a leftover folder must not change it.
            log.warning("could not remove the workspace of run %s: %s", req.run_id, exc)


def launch(request: dict[str, Any], coalescing: bool, inline: bool) -> dict[str, Any]:
    """A run with no file to check and no code to fetch starts in one step: its start
    time and gate, its branch (created when missing) and its job when it submits
    itself (``inline``), else its hand-over to the job queue. Every part is safe to
    repeat: the gate only reads and marks, the branch is created once, and the
    submissions table stops a repeated submit from starting a second job."""
    begun = start(coalescing, request)
    if begun["replaced_by"] or begun["expired"]:
        return {**begun, "branch": None, "submitted": None}
    branch = prepare_branch(request)
    submitted = job.submit_job(request, branch) if inline else job.hand_over(request, branch, 0)
    return {**begun, "branch": branch, "submitted": submitted}


def conclude(result: dict[str, Any]) -> dict[str, Any]:
    """The last step: the end time, and the outcome recorded where ``runs`` reads it,
    the result event before the run's attributes. Rewriting both is harmless, so a
    crash here just does it again."""
    outcome = RunResult.from_dict(result)
    if not (outcome.started_at and outcome.branch):
        outcome = _fill_from_queue(outcome)
    outcome = replace(outcome, finished_at=time.time())
    data = outcome.as_dict()
    DBOS.set_event(RESULT_EVENT, data)
    published = {"publish": outcome.publish["state"]} if outcome.publish else {}
    # The duration too, so a list of runs shows a failed run's (its workflow has no output).
    _mark(
        phase="finished",
        outcome=outcome.status,
        error=outcome.error,
        job_id=outcome.job_id,
        duration=outcome.duration,
        **published,
    )
    return data


def _fill_from_queue(outcome: RunResult) -> RunResult:
    """A run that failed before its first step returned, or was superseded, started when
    the queue handed it over, on the branch it was enqueued for."""
    status = DBOS.get_workflow_status(DBOS.workflow_id or "")
    began = (status.dequeued_at or 0) / 1000 if status else 0
    enqueued_for = (status.attributes or {}).get("branch") if status else None
    return replace(
        outcome,
        started_at=outcome.started_at or began or time.time(),
        branch=outcome.branch or str(enqueued_for or ""),
    )


def _mark(**fields: Any) -> None:
    DBOS.update_workflow_attributes(DBOS.workflow_id or "", fields, merge=True)


@DBOS.workflow(name=RUN_WORKFLOW)
def run_workflow(request: dict[str, Any]) -> dict[str, Any]:
    req = RunRequest.from_dict(request)
    coalescing = coalesce.coalescing(req)
    inline = runtime.current().settings.queue.global_concurrency is None
    started = 0.0  # unknown until the first step returns; ``conclude`` fills it in then
    branch: str | None = None
    job_id: str | None = None
    # A file to check or code to fetch comes between the start and the submit.
    separate = bool(req.file or req.git_sha)
    try:
        if separate:
            begun = crashpoint.step({"name": "start"}, start, coalescing, request)
        else:
            begun = step("launch", launch, request, coalescing, inline)
        started = begun["started"]
        if begun["replaced_by"]:
            why = f"superseded by run {begun['replaced_by']} before it started"
            return finish(req, _result(req, "superseded", "", None, started, why))
        if begun.get("expired"):
            return finish(req, _result(req, "expired", "", None, started, begun["expired"]))
        first = None
        if separate:
            files.before_run(req, request)
            branch = step("prepare_branch", prepare_branch, request)
            if req.git_sha:
                step("prepare_code", job.prepare_code, request)
        else:
            branch, first = begun["branch"], begun.get("submitted")
            if begun.get("job_id"):  # recorded by a release before the job workflow
                first = {"job_id": begun["job_id"]}
        assert branch is not None
        ended = job.bauplan_part(req, request, branch, started, first)
        job_id = ended.get("job_id")
        if ended.get("replaced_by"):
            replaced_by = ended["replaced_by"]
            _mark(superseded_by=replaced_by)
            why = f"superseded by run {replaced_by} before it started"
            result = _result(req, "superseded", branch, None, started, why)
        elif ended.get("expired"):
            result = _result(req, "expired", branch, None, started, ended["expired"])
        else:
            result = _ended_result(req, ended, branch, started)
    except (BauplanFailure, BranchError, FileGoneError) as exc:
        result = _result(req, "failed", branch or "", job_id, started, str(exc))
    if result.status == "success" and req.publish_into and branch:
        result = replace(result, publish=_publish(req, request, branch, result.job_id))
    if req.git_sha:
        crashpoint.step({"name": "remove_code"}, remove_code, request)
    files.after_run(req, request, result.status)
    return finish(req, result)


def _publish(
    req: RunRequest, request: dict[str, Any], branch: str, job_id: str | None
) -> dict[str, Any]:
    """Merge the run's branch into its target (``workflows.steps.publish``). A failure
    to publish is the publish's outcome, not the run's: its job succeeded."""
    try:
        outcome: dict[str, Any] = step("publish", publish.publish, request, branch, job_id)
    except BauplanFailure as exc:
        log.warning("run %s was not published into %s: %s", req.run_id, req.publish_into, exc)
        return {"state": "failed", "into": req.publish_into, "error": str(exc)}
    if outcome["state"] == "published" and req.delete_branch_after:
        try:
            step("delete_branch", publish.delete_branch, request, branch)
        except BauplanFailure as exc:
            return {**outcome, "branch_deleted": False, "error": f"branch not deleted: {exc}"}
        return {**outcome, "branch_deleted": True}
    return outcome


def _ended_result(req: RunRequest, ended: dict[str, Any], branch: str, started: float) -> RunResult:
    state, job_id = ended["state"], ended.get("job_id")
    error = None
    if state != "success":
        error = ended.get("error") or f"Bauplan job ended {ended.get('raw')}"
    cancelled_for = ended.get("cancelled_for")
    if cancelled_for and state == "cancelled":
        error = f"job {job_id} cancelled: replaced by run {cancelled_for}"
        _mark(superseded_by=cancelled_for)
    return _result(req, state, branch, job_id, started, error, log_tail=ended.get("log_tail") or [])


def _result(
    req: RunRequest,
    status: str,
    branch: str,
    job_id: str | None,
    started: float,
    error: str | None,
    *,
    log_tail: list[str] | None = None,
) -> RunResult:
    """The outcome so far; ``conclude`` adds the end time."""
    return RunResult(
        run_id=req.run_id,
        trigger=req.trigger,
        event_id=req.event_id,
        status=status,
        branch=branch,
        job_id=job_id,
        parameters=dict(req.parameters),
        started_at=started,
        finished_at=started,
        error=error,
        log_tail=log_tail or [],
    )


def finish(req: RunRequest, result: RunResult) -> dict[str, Any]:
    """Record the outcome where ``runs`` can read it, then fail the workflow if the job did."""
    recorded = crashpoint.step({"name": "finish"}, conclude, result.as_dict())
    result = RunResult.from_dict(recorded)
    log.info(
        "finished run %s status=%s job=%s branch=%s duration=%.1fs",
        req.run_id,
        result.status,
        result.job_id,
        result.branch,
        result.duration,
        extra=ids(
            run_id=req.run_id,
            trigger=req.trigger,
            event_id=req.event_id,
            status=result.status,
            job_id=result.job_id,
            branch=result.branch,
        ),
    )
    # After the outcome is recorded; the run does not wait for the delivery.
    outbox.enqueue(req, final_notice(req, result))
    if result.status not in ("success", "superseded", "expired"):
        raise RunFailed(
            f"run {req.run_id} of trigger {req.trigger!r} on branch {result.branch or '?'!r} "
            f"(job {result.job_id or 'not submitted'}) {result.status}: {result.error}"
        )
    return result.as_dict()
