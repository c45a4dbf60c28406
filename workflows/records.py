"""Run records, read from DBOS's own workflow table: what ``runs`` shows.

The JSON shape is a contract (scripts depend on it): ``id``, ``trigger``,
``event_id``, ``status``, ``branch``, ``job_id``, ``created_at``,
``updated_at``, ``error``, plus ``phase``, ``duration``, ``started_at``,
``completed_at``, ``publish`` and ``dbos_status``. Times are ISO 8601 in UTC with
milliseconds; ``duration`` is the run's own (``workflows.result.run_seconds``), the
same number its notifications give.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from datetime import UTC, datetime
from typing import Any

from dbos import DBOSClient, WorkflowStatus

from trigger.core import text
from trigger.core.errors import RunNotFoundError
from trigger.core.event import readable_attributes
from trigger.core.matching import run_id_prefix
from trigger.core.runstatus import dbos_statuses, status_word
from trigger.core.settings import Settings
from workflows.diagnosis import reasons
from workflows.notify.delivery import records as notification_records
from workflows.queue import RUN_QUEUE, RUN_WORKFLOW
from workflows.run import RESULT_EVENT

# A run writes its phase only once it has news (its job id, its outcome): until then
# a waiting run is queued and a running one is preparing its branch.
_DEFAULT_PHASES = {"waiting": "queued", "running": "preparing"}


def iso_ms(ms: float | None) -> str | None:
    """Every time a run reports, in one shape (ISO 8601, UTC, milliseconds), so times
    sort as text and none reads as a rounder number than it is."""
    if ms is None:
        return None
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")


def enqueued_ms(status: WorkflowStatus) -> int | None:
    """When the run was enqueued: its own record to the millisecond, else DBOS's
    created_at (whole seconds on SQLite under Python < 3.12, for runs older than it)."""
    recorded = (status.attributes or {}).get("enqueued_at")
    return recorded if isinstance(recorded, int) else status.created_at


def _duration(attrs: dict[str, Any], output: dict[str, Any]) -> float | None:
    """The duration the run recorded as it finished (``RunResult.duration``, the number
    its notifications carry); a failed run's workflow has no output, only that record."""
    for source in (attrs, output):
        value = source.get("duration")
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    return None


def _iso_s(seconds: Any) -> str | None:
    return iso_ms(seconds * 1000) if isinstance(seconds, int | float) and seconds else None


def record(status: WorkflowStatus) -> dict[str, Any]:
    # Older versions stored strings that are not valid Unicode: they come back escaped.
    attrs = text.readable(status.attributes or {})
    word = status_word(str(status.status), attrs)
    output = status.output if isinstance(status.output, dict) else {}
    error = attrs.get("error")
    if status.error is not None and not error:
        error = text.readable(str(status.error))
    return {
        "id": status.workflow_id,
        "trigger": attrs.get("trigger"),
        "event_id": attrs.get("event_id"),
        "event_kind": attrs.get("event_kind"),
        "status": word,
        "phase": attrs.get("phase", _DEFAULT_PHASES.get(word)),
        "branch": attrs.get("branch") or status.queue_partition_key,
        "job_id": attrs.get("job_id"),
        "created_at": iso_ms(enqueued_ms(status)),
        "started_at": iso_ms(status.dequeued_at),
        "completed_at": iso_ms(status.completed_at),
        "updated_at": iso_ms(status.updated_at),
        "duration": _duration(attrs, output),
        "error": error,
        "dbos_status": str(status.status),
        # A run dequeued just as a newer one marked it went on to run: no pointer then.
        "superseded_by": attrs.get("superseded_by")
        if word in ("superseded", "cancelled")
        else None,
        "executor_id": status.executor_id,
        "publish": attrs.get("publish"),
    }


def list_runs(
    client: DBOSClient,
    *,
    trigger: str | None = None,
    status: str | None = None,
    limit: int = 50,
    settings: Settings | None = None,
    offset: int | None = None,
    source: str | None = None,
    search: str | None = None,
    run_ids: Collection[str] = (),
) -> list[dict[str, Any]]:
    """Runs, newest first, ``offset`` rows into the ones that pass every filter.

    ``source`` is the kind of event that started the run (``manual``, ``github``,
    ``files``, ...). ``search`` keeps the runs whose id, event id or branch holds
    the text (case-insensitively), and the runs named in ``run_ids`` (what the event
    log found for it: a sha, a file path, a delivery id).
    """
    if trigger is not None and text.problem(trigger) is not None:
        return []  # no trigger is named so; PostgreSQL cannot even compare a text with NUL
    # A run's word comes from its outcome attribute as well as its DBOS status (which
    # DBOS filters on PostgreSQL only), waiting and running runs differ by their phase
    # (a parked run is PENDING), and the event kind and branch are attributes too: a
    # filtered listing reads the rows DBOS narrowed down and pages after its own filter.
    kept = _keeper(status, source, search, run_ids)
    rows = client.list_workflows(
        name=RUN_WORKFLOW,
        workflow_id_prefix=run_id_prefix(trigger) if trigger else None,
        status=dbos_statuses(status) if status else None,
        limit=limit if kept is None else None,
        offset=offset if kept is None else None,
        sort_desc=True,
        load_input=False,
    )
    records = [record(row) for row in rows]
    if kept is not None:
        start = offset or 0
        records = [r for r in records if kept(r)][start : start + limit]
    records.sort(key=lambda r: r["created_at"] or "", reverse=True)
    page = records[:limit]
    shown = {r["id"] for r in page}
    _add_waiting_reasons(
        client,
        settings,
        [row for row in rows if row.workflow_id in shown],
        {r["id"]: r for r in page},
    )
    return page


def _keeper(
    status: str | None, source: str | None, search: str | None, run_ids: Collection[str]
) -> Callable[[dict[str, Any]], bool] | None:
    """The filter list_runs applies to records itself; None when DBOS's own suffice."""
    needle = (search or "").strip().lower()
    named = set(run_ids)
    if status is None and not source and not needle and not named:
        return None

    def keep(run: dict[str, Any]) -> bool:
        if status is not None and run["status"] != status:
            return False
        if source and run["event_kind"] != source:
            return False
        if not needle and not named:
            return True
        if run["id"] in named:
            return True
        return bool(needle) and any(
            needle in str(run[key] or "").lower() for key in ("id", "event_id", "branch")
        )

    return keep


def _add_waiting_reasons(
    client: DBOSClient,
    settings: Settings | None,
    rows: list[WorkflowStatus],
    records: dict[str, dict[str, Any]],
) -> None:
    if settings is None:
        return
    waiting = [row for row in rows if records.get(row.workflow_id, {}).get("status") == "waiting"]
    if waiting:
        for run_id, reason in reasons(client, settings, waiting, RUN_WORKFLOW, RUN_QUEUE).items():
            records[run_id]["waiting_reason"] = reason


def run_status(client: DBOSClient, run_id: str, *, load_input: bool = True) -> WorkflowStatus:
    """The DBOS status of run ``run_id``; ``RunNotFoundError`` when there is no such run."""
    if text.problem(run_id) is not None:  # no run id holds such a string; PostgreSQL
        # could not even compare one holding NUL
        raise RunNotFoundError(run_id)
    rows = client.list_workflows(workflow_ids=[run_id], name=RUN_WORKFLOW, load_input=load_input)
    if not rows:
        raise RunNotFoundError(run_id)
    return rows[0]


def show_run(client: DBOSClient, run_id: str, settings: Settings | None = None) -> dict[str, Any]:
    rows = [run_status(client, run_id)]
    data = record(rows[0])
    _add_waiting_reasons(client, settings, rows, {run_id: data})
    inputs = rows[0].input
    request: dict[str, Any] = inputs["args"][0] if inputs and inputs["args"] else {}
    result = client.get_event(run_id, RESULT_EVENT, timeout_seconds=0) or {}
    data["parameters"] = result.get("parameters", request.get("parameters", {}))
    if data["duration"] is None:  # recorded by versions before the attribute
        data["duration"] = _duration(result, {})
    # The run's own clock, to the millisecond: its first step began, its last one ended.
    data["started_at"] = _iso_s(result.get("started_at"))
    data["finished_at"] = _iso_s(result.get("finished_at"))
    data["project_dir"] = request.get("project_dir")
    data["event"] = readable_attributes(request.get("summary", {}))
    data["log_tail"] = result.get("log_tail", [])
    data["publish"] = result.get("publish")
    data["notifications"] = notification_records(rows[0].attributes)
    return text.readable(data)
