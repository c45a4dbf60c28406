"""Publish on success: merge the run's branch, at the commit the run produced, into the
trigger's ``[triggers.publish] into`` (write, audit, publish).

The merge carries the run id as a commit property, so a repeated step (after a crash
between Bauplan's merge and the checkpoint) finds the merge it made instead of merging
again. A conflict, or a target that moved under the merge, is recorded as the publish's
outcome (``conflict``) and never retried: the run keeps its ``succeeded``, and the
operator decides. The result is ``{"state": "published" | "conflict" | "failed",
"into", "source", "commit", "error", "branch_deleted"}``.
"""

from __future__ import annotations

import logging
from typing import Any

from trigger.core.errors import PublishConflict
from trigger.core.matching import RunRequest
from trigger.core.secrets import redact
from workflows import runtime

log = logging.getLogger(__name__)

# The commit property that names the run a merge published.
RUN_PROPERTY = "bauplan_trigger_run"


def publish(request: dict[str, Any], branch: str, job_id: str | None) -> dict[str, Any]:
    req = RunRequest.from_dict(request)
    into = str(req.publish_into)
    bauplan = runtime.current().bauplan(req)
    made = bauplan.merge_with(into, {RUN_PROPERTY: req.run_id})
    if made is not None:
        log.info("run %s was already published into %s as %s", req.run_id, into, made)
        return {"state": "published", "into": into, "source": None, "commit": made}
    source = f"{branch}@{bauplan.head(branch)}"
    message = f"Publish run {req.run_id} of trigger {req.trigger}"
    body = f"bauplan-trigger merged {source} after job {job_id} (event {req.event_id})."
    properties = {
        RUN_PROPERTY: req.run_id,
        "bauplan_trigger_trigger": req.trigger,
        "bauplan_trigger_event": req.event_id,
    }
    try:
        made = bauplan.merge(source, into, message, body, properties)
    except PublishConflict as exc:
        log.warning("run %s was not published into %s: %s", req.run_id, into, exc)
        return {"state": "conflict", "into": into, "source": source, "error": redact(str(exc))}
    log.info("published run %s: merged %s into %s as %s", req.run_id, source, into, made)
    return {"state": "published", "into": into, "source": source, "commit": made}


def delete_branch(request: dict[str, Any], branch: str) -> None:
    runtime.current().bauplan(RunRequest.from_dict(request)).delete_branch(branch)
    log.info("deleted branch %s of run %s once published", branch, request["run_id"])
