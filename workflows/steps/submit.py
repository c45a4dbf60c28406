"""Exactly-once submission: one Bauplan job per run, whatever crashes in between.

Before calling Bauplan the submit step records what identifies the submission
(ref, project, parameters, when the call began); right after, the job id. A step
re-executed with the record but no job id does not know whether the call
reached Bauplan, so it looks: every run job of our user created while that call
could have been running, paged to the end, on the same ref and project and not
claimed by another run.

What the SDK lets us prove is limited: a job tells its user, kind and creation
time, its context the ref and project, but nothing carries the parameters, and
``run()`` takes nothing that comes back with the job to tag it. So:

- no such job: the call never created one; submit.
- exactly one, and no other run was submitting on that ref and project while it
  was created: it is ours; adopt it.
- anything else: another run's job and ours cannot be told apart. The run fails
  with ``SubmissionUnclear`` naming the jobs, rather than adopt another run's
  job or submit a second one.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from trigger.core.errors import RunRefused, SubmissionUnclear
from trigger.core.logfields import ids
from workflows.bauplan.adapter import Bauplan, JobFacts, project_identity
from workflows.store import Store, Submission

log = logging.getLogger(__name__)

# Our clock against Bauplan's: how far a job's created_at may read before the call.
SLACK = timedelta(seconds=5)
# How long one ``run()`` call can last, hence how late a job it starts can be created:
# the SDK's default ``client_timeout`` (1800 s), which we never change.
CALL_HORIZON = timedelta(seconds=1800)


def recorded_job(store: Store, bauplan: Bauplan, run_id: str) -> str | None:
    """The run's job when it has one already, recorded or (after a crash in the call)
    found in Bauplan; None when it has provably not submitted yet."""
    previous = store.submission(run_id)
    if previous is None:
        return None
    if previous.job_id:
        return previous.job_id
    if not previous.unresolved:
        return None  # Bauplan refused the last call: it started nothing
    found = _reconcile(store, bauplan, previous)
    if found is None:
        log.info("run %s: no job of its interrupted submission exists; submitting", run_id)
        return None
    try:
        store.finish_submission(run_id, found)
    except sa.exc.IntegrityError:
        raise SubmissionUnclear(
            f"run {run_id} found job {found} on branch {previous.ref!r} after a crash, but "
            "another run claimed that job at the same moment; check the job in Bauplan and "
            f"start the run again with `bauplan-trigger runs retry {run_id}` if it is not its own"
        ) from None
    log.warning(
        "run %s adopted job %s submitted before a crash",
        run_id,
        found,
        extra=ids(run_id=run_id, job_id=found),
    )
    return found


def submit_new(
    store: Store,
    bauplan: Bauplan,
    run_id: str,
    ref: str,
    project_dir: str,
    parameters: dict[str, Any],
) -> str:
    """Record the submission, call Bauplan, record the job id."""
    project = project_identity(Path(project_dir))
    store.begin_submission(
        run_id,
        ref,
        project_dir=project_dir,
        project_id=project.id,
        project_name=project.name,
        parameters=json.dumps(parameters, sort_keys=True, default=str),
        again=store.submission(run_id) is not None,
    )
    try:
        job_id = bauplan.submit(project_dir, ref, parameters)
    except RunRefused:
        store.refuse_submission(run_id)
        raise
    store.finish_submission(run_id, job_id)
    return job_id


def _reconcile(store: Store, bauplan: Bauplan, previous: Submission) -> str | None:
    began = datetime.fromtimestamp(previous.started_at, UTC)
    listed = bauplan.run_jobs(began - SLACK, began + CALL_HORIZON + SLACK)
    claimed = store.claimed_job_ids([job.job_id for job in listed])
    ours = [job for job in listed if job.job_id not in claimed and could_be(previous, job)]
    log.info(
        "run %s: %d run jobs in the window of its interrupted submission, %d could be its own",
        previous.run_id,
        len(listed),
        len(ours),
    )
    if not ours:
        return None
    rivals = [
        other
        for other in store.unresolved_submissions(previous.ref, besides=previous.run_id)
        if any(could_be(other, job) for job in ours)
    ]
    if len(ours) == 1 and not rivals:
        return ours[0].job_id
    raise SubmissionUnclear(_unclear(previous, ours, rivals))


def could_be(submission: Submission, job: JobFacts) -> bool:
    """Whether ``job`` matches everything Bauplan tells that the submission recorded:
    the ref, the project (by id, else by name, when both sides know it) and a creation
    time inside the call's window."""
    if job.ref != submission.ref:
        return False
    if submission.project_id and job.project.id:
        same_project = submission.project_id == job.project.id
    elif submission.project_name and job.project.name:
        same_project = submission.project_name == job.project.name
    else:
        same_project = True  # neither side says; the ref and time must do
    if not same_project:
        return False
    if job.created_at is None:
        return True  # Bauplan's own window filter let it through
    began = datetime.fromtimestamp(submission.started_at, UTC)
    return began - SLACK <= job.created_at <= began + CALL_HORIZON + SLACK


def _unclear(previous: Submission, ours: Sequence[JobFacts], rivals: Sequence[Submission]) -> str:
    began = datetime.fromtimestamp(previous.started_at, UTC).isoformat(timespec="seconds")
    jobs = ", ".join(job.job_id for job in ours)
    found = f"job {jobs} was" if len(ours) == 1 else f"jobs {jobs} were"
    also = ""
    if rivals:
        names = ", ".join(r.run_id for r in rivals)
        also = f" while run{'s' if len(rivals) > 1 else ''} {names} also submitted there"
    return (
        f"run {previous.run_id} was interrupted while submitting to branch {previous.ref!r} "
        f"at {began} and cannot tell which Bauplan job is its own: {found} created there "
        f"for the same project since{also}, and Bauplan does not report a job's parameters. "
        "Rather than adopt another run's job or submit a second one, the run stops here: "
        "check those jobs in Bauplan and, if none is this run's, start it again with "
        f"`bauplan-trigger runs retry {previous.run_id}`"
    )
