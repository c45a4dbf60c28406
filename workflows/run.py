"""The run workflow: one Bauplan run for one ``RunRequest``, durably.

Each function below is a DBOS step (or a durable sleep), so a crash resumes at
the last finished one. The job id is checkpointed by the submit step, and the
submissions table covers the moment between Bauplan accepting a job and that
checkpoint: a job is never submitted twice for one request.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from dbos import DBOS, StepOptions
from dbos._error import DBOSMaxStepRetriesExceeded

from trigger.errors import BauplanFailure, BranchError, FileGoneError, RunFailed, WorkspaceError
from trigger.matching import RunRequest
from workflows import after, coalesce, runtime, workspace
from workflows.bauplan_adapter import is_retryable
from workflows.branch import user_branch
from workflows.notify import delivery as notify
from workflows.queue import RUN_WORKFLOW
from workflows.result import RunResult

log = logging.getLogger(__name__)

RESULT_EVENT = "result"
# How far back a re-executed submit looks for the job its first attempt started.
_RECONCILE_SLACK = timedelta(seconds=5)


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
        return DBOS.run_step(_retrying(name), fn, *args)
    except DBOSMaxStepRetriesExceeded as exc:
        last = exc.errors[-1] if exc.errors else exc
        raise BauplanFailure(
            f"gave up after {exc.max_retries} attempts: {last}", retryable=False
        ) from None


def _clock() -> float:
    return time.time()


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


def prepare_code(request: dict[str, Any]) -> str | None:
    """The pushed commit's project folder, or None when the run uses project_dir as is."""
    req = RunRequest.from_dict(request)
    if not (req.git_source and req.git_sha):
        return None
    try:
        path = workspace.prepare(
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
            workspace.remove(runtime.current().settings.state_path, req.git_source, req.run_id)
        except (OSError, WorkspaceError) as exc:
            # The outcome is known; a leftover folder must not change it.
            log.warning("could not remove the workspace of run %s: %s", req.run_id, exc)


def submit(request: dict[str, Any], branch: str) -> str:
    req = RunRequest.from_dict(request)
    rt = runtime.current()
    bauplan = rt.bauplan(req)
    previous = rt.store.submission(req.run_id)
    if previous is not None and previous.job_id:
        return previous.job_id
    if previous is not None:
        # A previous attempt got as far as calling Bauplan and then died.
        since = datetime.fromtimestamp(previous.started_at, UTC) - _RECONCILE_SLACK
        candidates = bauplan.jobs_on_ref_since(branch, since)
        claimed = rt.store.claimed_job_ids(candidates)
        unclaimed = [job for job in candidates if job not in claimed]
        if unclaimed:
            job_id = unclaimed[0]
            rt.store.finish_submission(req.run_id, job_id)
            log.warning("run %s adopted job %s submitted before a crash", req.run_id, job_id)
            return job_id
    # Re-checked here, not only in its own step: a resumed run must not submit a
    # workspace that was removed between the two steps.
    project_dir = prepare_code(request) or req.project_dir
    rt.store.begin_submission(req.run_id, branch)
    job_id = bauplan.submit(project_dir, branch, dict(req.parameters))
    rt.store.finish_submission(req.run_id, job_id)
    return job_id


def poll(request: dict[str, Any], job_id: str) -> dict[str, Any]:
    status = runtime.current().bauplan(RunRequest.from_dict(request)).status(job_id)
    return {"state": status.state, "raw": status.raw, "error": status.error}


def log_tail(request: dict[str, Any], job_id: str) -> list[str]:
    lines = runtime.current().settings.bauplan.log_tail_lines
    try:
        return runtime.current().bauplan(RunRequest.from_dict(request)).log_tail(job_id, lines)
    except BauplanFailure as exc:
        # Logs are a courtesy: their absence must not change the run's outcome.
        return [f"(log tail unavailable: {exc})"]


def _mark(**fields: Any) -> None:
    DBOS.update_workflow_attributes(DBOS.workflow_id or "", fields, merge=True)


@DBOS.workflow(name=RUN_WORKFLOW)
def run_workflow(request: dict[str, Any]) -> dict[str, Any]:
    req = RunRequest.from_dict(request)
    cfg = runtime.current().settings.bauplan
    started = DBOS.run_step({"name": "clock"}, _clock)
    if req.on_burst != "queue" or req.debounce_seconds is not None:
        replaced_by = DBOS.run_step({"name": "gate"}, coalesce.gate)
        if replaced_by:
            return finish(req, superseded_result(req, replaced_by, started))
    branch = job_id = None
    cancelled_for: str | None = None
    try:
        after.before_run(req, request)
        branch = _step("resolve_branch", resolve_branch, request, req.branch_suffix)
        _mark(branch=branch, phase="preparing")
        _step("ensure_branch", ensure_branch, request, branch, req.base_ref)
        if req.git_sha:
            _step("prepare_code", prepare_code, request)
        job_id = _step("submit", submit, request, branch)
        _mark(job_id=job_id, phase="running")
        log.info("submitted run %s job=%s branch=%s", req.run_id, job_id, branch)
        notify.notify(req, notify.started_notice(req, branch, job_id, started))
        delay = cfg.poll_interval
        while True:
            status = _step("poll", poll, request, job_id)
            if status["state"] in ("success", "failed", "cancelled"):
                break
            if req.on_burst == "cancel" and cancelled_for is None:
                cancelled_for = DBOS.run_step({"name": "cancel_check"}, coalesce.cancel_requested)
                if cancelled_for:
                    _step("cancel", cancel_job, request, job_id)
            DBOS.sleep(delay)
            delay = min(delay * 1.5, cfg.poll_max_interval)
        tail = DBOS.run_step({"name": "log_tail"}, log_tail, request, job_id)
        error = None
        if status["state"] != "success":
            error = status["error"] or f"Bauplan job ended {status['raw']}"
        if cancelled_for and status["state"] == "cancelled":
            error = f"job {job_id} cancelled: replaced by run {cancelled_for}"
            _mark(superseded_by=cancelled_for)
        result = RunResult(
            run_id=req.run_id,
            trigger=req.trigger,
            event_id=req.event_id,
            status=status["state"],
            branch=branch,
            job_id=job_id,
            parameters=dict(req.parameters),
            started_at=started,
            finished_at=DBOS.run_step({"name": "clock"}, _clock),
            error=error,
            log_tail=tail,
        )
    except (BauplanFailure, BranchError, FileGoneError) as exc:
        result = RunResult(
            run_id=req.run_id,
            trigger=req.trigger,
            event_id=req.event_id,
            status="failed",
            branch=branch or "",
            job_id=job_id,
            parameters=dict(req.parameters),
            started_at=started,
            finished_at=DBOS.run_step({"name": "clock"}, _clock),
            error=str(exc),
        )
    if req.git_sha:
        DBOS.run_step({"name": "remove_code"}, remove_code, request)
    after.after_run(req, request, result.status)
    return finish(req, result)


def cancel_job(request: dict[str, Any], job_id: str) -> None:
    runtime.current().bauplan(RunRequest.from_dict(request)).cancel(job_id)
    log.info("cancelled job %s of run %s: a newer run replaces it", job_id, request["run_id"])


def superseded_result(req: RunRequest, replaced_by: str, started: float) -> RunResult:
    return RunResult(
        run_id=req.run_id,
        trigger=req.trigger,
        event_id=req.event_id,
        status="superseded",
        branch="",
        job_id=None,
        parameters=dict(req.parameters),
        started_at=started,
        finished_at=started,
        error=f"superseded by run {replaced_by} before it started",
    )


def finish(req: RunRequest, result: RunResult) -> dict[str, Any]:
    """Record the outcome where ``runs`` can read it, then fail the workflow if the job did."""
    DBOS.set_event(RESULT_EVENT, result.as_dict())
    _mark(phase="finished", outcome=result.status, error=result.error, job_id=result.job_id)
    log.info(
        "finished run %s status=%s job=%s branch=%s duration=%.1fs",
        req.run_id,
        result.status,
        result.job_id,
        result.branch,
        result.duration,
    )
    # After the outcome is recorded; a delivery failure never changes it.
    notify.notify(req, notify.final_notice(req, result))
    if result.status not in ("success", "superseded"):
        raise RunFailed(
            f"run {req.run_id} of trigger {req.trigger!r} on branch {result.branch or '?'!r} "
            f"(job {result.job_id or 'not submitted'}) {result.status}: {result.error}"
        )
    return result.as_dict()
