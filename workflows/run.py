"""The run workflow: one Bauplan run for one ``RunRequest``, durably.

Each function below is a DBOS step, so a crash resumes at the last finished one.
The job id is checkpointed by the submit step, and the submissions table covers
the moment between Bauplan accepting a job and that checkpoint
(``workflows.steps.submit``): a job is never submitted twice for one request.

A run is a handful of checkpoints, not one per poll: every checkpoint is a
round trip to the system database, and with many runs in flight those round
trips, not Bauplan, set the pace. So the steps group what belongs together
(resolving and creating the branch; submitting and recording the job id) and
the job is polled inside one ``wait`` step for up to ``WAIT_STEP_SECONDS``.
Polling is a read, so a crash in the middle of it just polls again.
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from typing import Any

from dbos import DBOS, StepOptions

from trigger.core.errors import (
    BauplanFailure,
    BranchError,
    FileGoneError,
    RunFailed,
    WorkspaceError,
)
from trigger.core.matching import RunRequest
from trigger.core.secrets import redact
from workflows import coalesce, crashpoint, runtime
from workflows.bauplan.adapter import is_retryable
from workflows.dbos_compat import DBOSMaxStepRetriesExceeded
from workflows.notify import outbox
from workflows.notify.delivery import final_notice, started_notice
from workflows.queue import RUN_WORKFLOW
from workflows.result import RunResult
from workflows.steps import code, files, submit
from workflows.steps.branch import user_branch

log = logging.getLogger(__name__)

RESULT_EVENT = "result"
# The longest one ``wait`` step polls before it checkpoints and hands back to the
# workflow, which is also when an operator's cancel of a stuck job takes effect.
WAIT_STEP_SECONDS = 60.0


def _retrying(name: str) -> StepOptions:
    cfg = runtime.current().settings.bauplan
    return {
        "name": name,
        "retries_allowed": True,
        "max_attempts": cfg.retry_attempts,
        "interval_seconds": cfg.retry_interval,
        "backoff_rate": 2.0,
        "should_retry": is_retryable,
    }


def _step(name: str, fn: Any, *args: Any) -> Any:
    """Run ``fn`` as a retrying DBOS step; a give-up surfaces the last SDK message."""
    try:
        return crashpoint.step(_retrying(name), fn, *args)
    except DBOSMaxStepRetriesExceeded as exc:
        last = exc.errors[-1] if exc.errors else exc
        raise BauplanFailure(
            f"gave up after {exc.max_retries} attempts: {last}", retryable=False
        ) from None


def start(coalescing: bool) -> dict[str, Any]:
    """The first step: when the run started and, for a coalescing trigger, the run
    that superseded it while it waited (its gate)."""
    return {"started": time.time(), "replaced_by": coalesce.gate() if coalescing else None}


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


def prepare_code(request: dict[str, Any]) -> str | None:
    """The pushed commit's project folder, or None when the run uses project_dir as is."""
    req = RunRequest.from_dict(request)
    if not (req.git_source and req.git_sha):
        return None
    try:
        path = code.prepare(
            runtime.current().settings.state_path,
            req.git_source,
            req.git_sha,
            req.run_id,
            req.project_subdir or ".",
        )
    except WorkspaceError as exc:
        raise BauplanFailure(str(exc), retryable=exc.retryable) from None
    return str(path)


def remove_code(request: dict[str, Any]) -> None:
    req = RunRequest.from_dict(request)
    if req.git_source and req.git_sha:
        try:
            code.remove(runtime.current().settings.state_path, req.git_source, req.run_id)
        except (OSError, WorkspaceError) as exc:
            # The outcome is known; a leftover folder must not change it.
            log.warning("could not remove the workspace of run %s: %s", req.run_id, exc)


def find_or_submit(request: dict[str, Any], branch: str) -> str:
    """The run's job: the one recorded for it, else a new submission."""
    req = RunRequest.from_dict(request)
    rt = runtime.current()
    bauplan = rt.bauplan(req)
    job_id = submit.recorded_job(rt.store, bauplan, req.run_id)
    if job_id is not None:
        return job_id
    # Re-checked here, not only in its own step: a resumed run must not submit a
    # workspace that was removed between the two steps.
    project_dir = prepare_code(request) or req.project_dir
    return submit.submit_new(
        rt.store, bauplan, req.run_id, branch, project_dir, dict(req.parameters)
    )


def submit_job(request: dict[str, Any], branch: str) -> str:
    job_id = find_or_submit(request, branch)
    _mark(job_id=job_id, phase="running")
    return job_id


def launch(request: dict[str, Any], coalescing: bool) -> dict[str, Any]:
    """A run with no file to check and no code to fetch starts in one step: its start
    time and gate, its branch (created when missing) and its job. Every part is safe to
    repeat: the gate only reads and marks, the branch is created once, and the
    submissions table stops a repeated submit from starting a second job."""
    begun = start(coalescing)
    if begun["replaced_by"]:
        return {**begun, "branch": None, "job_id": None}
    branch = prepare_branch(request)
    return {**begun, "branch": branch, "job_id": submit_job(request, branch)}


def wait(request: dict[str, Any], job_id: str, delay: float, watch_cancel: bool) -> dict[str, Any]:
    """Poll the job until it ends (then fetch its log tail), a newer run asks to cancel
    it (``watch_cancel``), or ``WAIT_STEP_SECONDS`` pass. The delay between polls grows
    by half each time up to ``poll_max_interval``; the next step carries on from the
    returned delay."""
    rt = runtime.current()
    bauplan = rt.bauplan(RunRequest.from_dict(request))
    deadline = time.monotonic() + WAIT_STEP_SECONDS
    while True:
        status = bauplan.status(job_id)
        cancel_for = coalesce.cancel_requested() if watch_cancel and not status.final else None
        if status.final or cancel_for or time.monotonic() >= deadline:
            return {
                "state": status.state,
                "raw": status.raw,
                # Bauplan's words, recorded as they are checkpointed: a known secret goes.
                "error": None if status.error is None else redact(status.error),
                "delay": delay,
                "cancel_for": cancel_for,
                "log_tail": log_tail(request, job_id) if status.final else [],
            }
        time.sleep(delay)
        delay = min(delay * 1.5, rt.settings.bauplan.poll_max_interval)


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
    _mark(phase="finished", outcome=outcome.status, error=outcome.error, job_id=outcome.job_id)
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


def log_tail(request: dict[str, Any], job_id: str) -> list[str]:
    lines = runtime.current().settings.bauplan.log_tail_lines
    try:
        tail = runtime.current().bauplan(RunRequest.from_dict(request)).log_tail(job_id, lines)
        return [redact(line) for line in tail]
    except BauplanFailure as exc:
        # Logs are a courtesy: their absence must not change the run's outcome.
        return [f"(log tail unavailable: {exc})"]


def _mark(**fields: Any) -> None:
    DBOS.update_workflow_attributes(DBOS.workflow_id or "", fields, merge=True)


@DBOS.workflow(name=RUN_WORKFLOW)
def run_workflow(request: dict[str, Any]) -> dict[str, Any]:
    req = RunRequest.from_dict(request)
    coalescing = req.on_burst != "queue" or req.debounce_seconds is not None
    started = 0.0  # unknown until the first step returns; ``conclude`` fills it in then
    branch = job_id = None
    cancelled_for: str | None = None
    # A file to check or code to fetch comes between the start and the submit.
    separate = bool(req.file or req.git_sha)
    try:
        if separate:
            begun = crashpoint.step({"name": "start"}, start, coalescing)
        else:
            begun = _step("launch", launch, request, coalescing)
        started = begun["started"]
        if begun["replaced_by"]:
            why = f"superseded by run {begun['replaced_by']} before it started"
            return finish(req, _result(req, "superseded", "", None, started, why))
        if separate:
            files.before_run(req, request)
            branch = _step("prepare_branch", prepare_branch, request)
            if req.git_sha:
                _step("prepare_code", prepare_code, request)
            job_id = _step("submit", submit_job, request, branch)
        else:
            branch, job_id = begun["branch"], begun["job_id"]
        log.info("submitted run %s job=%s branch=%s", req.run_id, job_id, branch)
        outbox.enqueue(req, started_notice(req, branch, job_id, started))
        delay = runtime.current().settings.bauplan.poll_interval
        while True:
            watch = req.on_burst == "cancel" and cancelled_for is None
            status = _step("wait", wait, request, job_id, delay, watch)
            if status["state"] in ("success", "failed", "cancelled"):
                break
            delay = status["delay"]
            if status["cancel_for"]:
                cancelled_for = status["cancel_for"]
                _step("cancel", cancel_job, request, job_id)
        error = None
        if status["state"] != "success":
            error = status["error"] or f"Bauplan job ended {status['raw']}"
        if cancelled_for and status["state"] == "cancelled":
            error = f"job {job_id} cancelled: replaced by run {cancelled_for}"
            _mark(superseded_by=cancelled_for)
        result = _result(
            req, status["state"], branch, job_id, started, error, log_tail=status["log_tail"]
        )
    except (BauplanFailure, BranchError, FileGoneError) as exc:
        result = _result(req, "failed", branch or "", job_id, started, str(exc))
    if req.git_sha:
        crashpoint.step({"name": "remove_code"}, remove_code, request)
    files.after_run(req, request, result.status)
    return finish(req, result)


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


def cancel_job(request: dict[str, Any], job_id: str) -> None:
    runtime.current().bauplan(RunRequest.from_dict(request)).cancel(job_id)
    log.info("cancelled job %s of run %s: a newer run replaces it", job_id, request["run_id"])


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
    )
    # After the outcome is recorded; the run does not wait for the delivery.
    outbox.enqueue(req, final_notice(req, result))
    if result.status not in ("success", "superseded"):
        raise RunFailed(
            f"run {req.run_id} of trigger {req.trigger!r} on branch {result.branch or '?'!r} "
            f"(job {result.job_id or 'not submitted'}) {result.status}: {result.error}"
        )
    return result.as_dict()
