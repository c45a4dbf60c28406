"""The ids a transition's log line carries as fields, beside its ``%``-style text.

A JSON log line names its run, trigger and event as fields the log search can filter
on; the text says the same for a person. Call sites pass what they know::

    log.info("submitted run %s job=%s", run_id, job_id, extra=ids(run_id=run_id, job_id=job_id))

The JSON formatter (``trigger.cli.logs``) writes them; the text formatter leaves them
out (the message says it already).
"""

from __future__ import annotations

FIELDS = ("run_id", "trigger", "event_id", "delivery_id", "branch", "job_id", "outcome", "status")


def ids(
    *,
    run_id: str | None = None,
    trigger: str | None = None,
    event_id: str | None = None,
    delivery_id: str | None = None,
    branch: str | None = None,
    job_id: str | None = None,
    outcome: str | None = None,
    status: str | None = None,
) -> dict[str, str]:
    """``extra=`` for a log call: the known values only (``None``, ``""`` and the ``"-"``
    placeholder are left out, so a field is never a stand-in for "unknown")."""
    values = {
        "run_id": run_id,
        "trigger": trigger,
        "event_id": event_id,
        "delivery_id": delivery_id,
        "branch": branch,
        "job_id": job_id,
        "outcome": outcome,
        "status": status,
    }
    return {key: str(value) for key, value in values.items() if value not in (None, "", "-")}
