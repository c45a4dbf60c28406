"""The Bauplan part of a run: a start in its rate window, one job, the job's end.

The run workflow (``workflows.run``) holds the run's branch: it is on the
partitioned run queue, one run per partition key. What it does with the branch
is here, in one of two ways:

- **Inline**, when no global cap is set: the run reserves a start
  (``workflows.ratelimit``), submits and waits itself.
- **As a child**, with ``[queue] global_concurrency``: the run reserves its start,
  then hands the submit and the wait to a job workflow on the job queue, an
  unpartitioned DBOS queue whose own ``global_concurrency`` is the cap, and
  waits for its report (a DBOS message). Both queues keep DBOS's one-transaction
  dequeue, which a partitioned queue with a global cap would lose. The run keeps
  its branch while its job waits for a slot, as it would have waited on the
  branch anyway.

While it waits for its rate window (``rate-limited``) or a slot
(``awaiting-slot``), a run is *parked*: ``runs`` says it waits and why, and a newer
event of a coalescing trigger supersedes it (``workflows.coalesce``). It leaves
those phases through ``coalesce.claim_start`` right before it reserves, so it
either starts or is superseded. Its waits are ``DBOS.recv`` with a timeout, durable
like a sleep, so a superseding writer can wake it.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from dbos import DBOS, EnqueueOptions

from trigger.core.errors import BauplanFailure, BranchError, FileGoneError, WorkspaceError
from trigger.core.logfields import ids
from trigger.core.matching import RunRequest
from trigger.core.runstatus import AWAITING_SLOT, RATE_LIMITED
from trigger.core.secrets import redact
from trigger.core.settings.flow import BranchLimit
from workflows import coalesce, crashpoint, limits, ratelimit, runtime
from workflows.branch_flow import spec_of
from workflows.notify import outbox
from workflows.notify.delivery import started_notice
from workflows.queue import JOB_QUEUE, JOB_WORKFLOW
from workflows.steps import code, submit
from workflows.steps.retry import step

log = logging.getLogger(__name__)

# The longest one ``wait`` step polls before it checkpoints and hands back to the
# workflow, which is also when an operator's cancel of a stuck job takes effect.
WAIT_STEP_SECONDS = 60.0
# How long a run waiting for its job workflow listens before it looks at that
# workflow itself (one that ended without reporting: cancelled, or failed on a bug).
CHILD_CHECK_SECONDS = 120.0


def _mark(run_id: str, **fields: Any) -> None:
    DBOS.update_workflow_attributes(run_id, fields, merge=True)


def _window(req: RunRequest, branch: str) -> tuple[str, BranchLimit] | None:
    spec = spec_of(runtime.current().settings, req.trigger)
    if spec.per_branch_limit is None:
        return None
    return spec.window(branch), spec.per_branch_limit


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


def reserve(request: dict[str, Any], branch: str, record: bool = True) -> dict[str, Any]:
    """Claim the start and record it in the rate window (``record=False``: only see
    that it fits): ``{}`` to go on, ``{"replaced_by": id}`` when a newer run superseded
    this one while it was parked, ``{"expired": why}`` when it waited too long to start,
    ``{"wait": slot}`` when the window is full (the run is then rate-limited until the
    slot's time)."""
    req = RunRequest.from_dict(request)
    windows = runtime.current().windows
    too_late = limits.expired(req)
    if too_late:
        windows.release([req.run_id])
        return {"expired": too_late}
    if coalesce.coalescing(req):
        replaced = coalesce.claim_start(req.run_id)
        if replaced:
            windows.release([req.run_id])
            return {"replaced_by": replaced}
    gated = _window(req, branch)
    if gated is None:
        return {}
    window, limit = gated
    slot = windows.reserve(window, req.run_id, limit, record=record)
    if slot.wait_seconds() > 0:
        too_late = limits.expired(req, start_at=slot.at)
        if too_late:
            return {"expired": too_late}
        _mark(req.run_id, phase=RATE_LIMITED, rate_limited=slot.as_dict())
        return {"wait": slot.as_dict()}
    return {}


def submit_job(request: dict[str, Any], branch: str) -> dict[str, Any]:
    """The run's job: the one recorded for it, else a new submission once its start is
    reserved. ``{"job_id": id, "deadline": t}`` (``t``: when the job must have ended, or
    None), or what :func:`reserve` says instead."""
    req = RunRequest.from_dict(request)
    rt = runtime.current()
    bauplan = rt.bauplan(req)
    gated = _window(req, branch) is not None
    job_id = submit.recorded_job(rt.store, bauplan, req.run_id)
    if job_id is None:
        held = reserve(request, branch)
        if held:
            return held
        if gated:
            crashpoint.reached("submit.reserved")  # its start recorded, the job not yet
        # Re-checked here, not only in its own step: a resumed run must not submit a
        # workspace that was removed between the two steps.
        project_dir = prepare_code(request) or req.project_dir
        job_id = submit.submit_new(
            rt.store, bauplan, req.run_id, branch, project_dir, dict(req.parameters)
        )
    if gated:
        rt.windows.confirm(req.run_id)
    _mark(req.run_id, job_id=job_id, phase="running")
    return {"job_id": job_id, "deadline": limits.job_deadline(rt.store, req)}


def park(req: RunRequest, slot: dict[str, Any]) -> None:
    """Wait for the reserved start; a superseding writer may wake the run earlier."""
    log.info("run %s is %s", req.run_id, ratelimit.describe(slot))
    DBOS.recv(coalesce.WAKE_TOPIC, timeout_seconds=max(0.0, float(slot["until"]) - time.time()))


def wait(
    request: dict[str, Any],
    job_id: str,
    delay: float,
    watch_cancel: bool,
    job_deadline: float | None = None,
) -> dict[str, Any]:
    """Poll the job until it ends (then fetch its log tail), a newer run asks to cancel
    it (``watch_cancel``), its ``job_deadline`` passes (``timed_out``), or
    ``WAIT_STEP_SECONDS`` pass. The delay between polls grows by half each time up to
    ``poll_max_interval``; the next step carries on from the returned delay."""
    rt = runtime.current()
    req = RunRequest.from_dict(request)
    bauplan = rt.bauplan(req)
    deadline = time.monotonic() + WAIT_STEP_SECONDS
    while True:
        status = bauplan.status(job_id)
        cancel_for = (
            coalesce.cancel_requested(req.run_id) if watch_cancel and not status.final else None
        )
        late = job_deadline is not None and time.time() >= job_deadline and not status.final
        if status.final or cancel_for or late or time.monotonic() >= deadline:
            return {
                "state": status.state,
                "raw": status.raw,
                # Bauplan's words, recorded as they are checkpointed: a known secret goes.
                "error": None if status.error is None else redact(status.error),
                "delay": delay,
                "cancel_for": cancel_for,
                "timed_out": late,
                "log_tail": log_tail(request, job_id) if status.final else [],
            }
        time.sleep(
            delay if job_deadline is None else max(0.0, min(delay, job_deadline - time.time()))
        )
        delay = min(delay * 1.5, rt.settings.bauplan.poll_max_interval)


def log_tail(request: dict[str, Any], job_id: str) -> list[str]:
    lines = runtime.current().settings.bauplan.log_tail_lines
    try:
        tail = runtime.current().bauplan(RunRequest.from_dict(request)).log_tail(job_id, lines)
        return [redact(line) for line in tail]
    except BauplanFailure as exc:
        # Logs are a courtesy: their absence must not change the run's outcome.
        return [f"(log tail unavailable: {exc})"]


def _cancel(request: dict[str, Any], job_id: str) -> None:
    runtime.current().bauplan(RunRequest.from_dict(request)).cancel(job_id)


def cancel_job(request: dict[str, Any], job_id: str) -> None:
    _cancel(request, job_id)
    log.info(
        "cancelled job %s of run %s: a newer run replaces it",
        job_id,
        request["run_id"],
        extra=ids(run_id=request["run_id"], job_id=job_id),
    )


def stop_late_job(request: dict[str, Any], job_id: str) -> list[str]:
    """Cancel a job that outlived the run's timeout; its log tail, for the run's record."""
    _cancel(request, job_id)
    log.warning(
        "cancelled job %s of run %s: it outlived its timeout",
        job_id,
        request["run_id"],
        extra=ids(run_id=request["run_id"], job_id=job_id),
    )
    return log_tail(request, job_id)


def run_job(
    request: dict[str, Any],
    branch: str,
    started: float,
    *,
    inline: bool,
    first: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Submit and wait. The job's end: ``state``, ``raw``, ``error``, ``log_tail``,
    ``job_id`` and ``cancelled_for``; or ``replaced_by`` or ``expired``; or, in a job
    workflow, ``wait``
    (the window filled up meanwhile: the run parks and hands over again). ``first``: a
    submission already made by the run's launch step."""
    req = RunRequest.from_dict(request)
    job_id: str | None = None
    try:
        while True:
            submitted = first or step("submit", submit_job, request, branch)
            first = None
            if isinstance(submitted, str):  # recorded by a release that returned the id
                submitted = {"job_id": submitted}
            if "job_id" in submitted:
                job_id = str(submitted["job_id"])
                job_deadline = submitted.get("deadline")
                break
            if "wait" in submitted and inline:
                park(req, submitted["wait"])
                continue
            return dict(submitted)
        log.info(
            "submitted run %s job=%s branch=%s",
            req.run_id,
            job_id,
            branch,
            extra=ids(
                run_id=req.run_id,
                trigger=req.trigger,
                event_id=req.event_id,
                job_id=job_id,
                branch=branch,
            ),
        )
        outbox.enqueue(req, started_notice(req, branch, job_id, started))
        delay = runtime.current().settings.bauplan.poll_interval
        cancelled_for: str | None = None
        while True:
            watch = req.on_burst == "cancel" and cancelled_for is None
            status = step("wait", wait, request, job_id, delay, watch, job_deadline)
            if status["state"] in ("success", "failed", "cancelled"):
                break
            if status.get("timed_out"):
                tail = step("stop", stop_late_job, request, job_id)
                error = limits.timed_out(req, job_id)
                return {
                    **status,
                    "state": "failed",
                    "error": error,
                    "log_tail": tail,
                    "job_id": job_id,
                    "cancelled_for": None,
                }
            delay = status["delay"]
            if status["cancel_for"]:
                cancelled_for = status["cancel_for"]
                step("cancel", cancel_job, request, job_id)
        return {**status, "job_id": job_id, "cancelled_for": cancelled_for}
    except (BauplanFailure, BranchError, FileGoneError) as exc:
        return {"state": "failed", "raw": None, "error": str(exc), "log_tail": [], "job_id": job_id}


@DBOS.workflow(name=JOB_WORKFLOW)
def job_workflow(request: dict[str, Any], branch: str, started: float) -> dict[str, Any]:
    """A run's Bauplan part under the global cap; reports to the run when it ends,
    however it ends short of being cancelled (which ends the run too)."""
    try:
        outcome = run_job(request, branch, started, inline=False)
    except Exception as exc:  # e.g. the system database refused a step: the run fails
        log.error("the job workflow of run %s failed: %s", request["run_id"], exc)
        outcome = {"state": "failed", "raw": None, "error": redact(str(exc)), "log_tail": []}
    DBOS.send(request["run_id"], {"done": outcome}, topic=coalesce.WAKE_TOPIC)
    return outcome


def hand_over(request: dict[str, Any], branch: str, attempt: int) -> dict[str, Any]:
    """Under the cap: see that the start fits the rate window (the job workflow records
    it once it has its slot), and if so wait for a slot. What :func:`reserve` says, or
    ``{"job_workflow": id}`` (the id of the job workflow to enqueue)."""
    held = reserve(request, branch, record=False)
    if held:
        return held
    child_id = job_workflow_id(request["run_id"], attempt)
    _mark(request["run_id"], phase=AWAITING_SLOT, job_workflow=child_id)
    return {"job_workflow": child_id}


def job_workflow_id(run_id: str, attempt: int) -> str:
    return f"{run_id}:job" + (f"-{attempt}" if attempt else "")


def look_at_child(run_id: str, child_id: str) -> dict[str, Any]:
    """What a run waiting for its job workflow learns by looking: ``{}`` to go on
    waiting; ``done``; ``replaced_by``; or ``again`` (the job workflow was cancelled
    under a run that goes on, e.g. resumed: a new one picks up the recorded job)."""
    attrs = coalesce.attributes_of(run_id)
    found = DBOS.list_workflows(workflow_ids=[child_id], load_input=False)
    child = found[0] if found else None
    state = str(child.status) if child is not None else "CANCELLED"
    if state in ("ENQUEUED", "DELAYED", "PENDING"):
        return {}
    if state == "SUCCESS" and child is not None and isinstance(child.output, dict):
        return {"done": child.output}
    if attrs.get("superseded_by"):
        return {"replaced_by": str(attrs["superseded_by"])}
    if state == "CANCELLED":
        return {"again": True}
    error = redact(str(child.error)) if child is not None else "gone"
    return {"done": {"state": "failed", "raw": None, "error": f"job workflow {child_id}: {error}"}}


def via_child(
    req: RunRequest,
    request: dict[str, Any],
    branch: str,
    started: float,
    first: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Hand the job to a job workflow on the capped queue and wait for its report.
    ``first``: the hand-over already made by the run's launch step."""
    attempt = 0
    while True:
        held = first or step("hand_over", hand_over, request, branch, attempt)
        first = None
        if "replaced_by" in held or "expired" in held:
            return dict(held)
        if "wait" in held:
            park(req, held["wait"])
            continue
        child_id = str(held["job_workflow"])
        options: EnqueueOptions = {
            "workflow_name": JOB_WORKFLOW,
            "queue_name": JOB_QUEUE,
            "workflow_id": child_id,
            "priority": req.priority,
            "app_version": runtime.current().settings.service.application_version,
            "attributes": {"run_id": req.run_id, "trigger": req.trigger, "branch": branch},
        }
        DBOS.enqueue_workflow_with_options(options, request, branch, started)
        report = _await(req.run_id, child_id)
        if "again" in report or "wait" in report:
            if "wait" in report:
                park(req, report["wait"])
            attempt += 1
            continue
        return report


def _await(run_id: str, child_id: str) -> dict[str, Any]:
    while True:
        message = DBOS.recv(coalesce.WAKE_TOPIC, timeout_seconds=CHILD_CHECK_SECONDS)
        if isinstance(message, dict) and isinstance(message.get("done"), dict):
            done: dict[str, Any] = message["done"]
            return done
        seen = crashpoint.step({"name": "look"}, look_at_child, run_id, child_id)
        if "done" in seen:
            result: dict[str, Any] = seen["done"]
            return result
        if seen:
            return dict(seen)


def bauplan_part(
    req: RunRequest,
    request: dict[str, Any],
    branch: str,
    started: float,
    first: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The job's end (see :func:`run_job`), inline or through the job queue."""
    if runtime.current().settings.queue.global_concurrency is None:
        return run_job(request, branch, started, inline=True, first=first)
    return via_child(req, request, branch, started, first)
