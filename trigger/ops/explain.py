"""``explain ID``: the whole story of an event or a run, from whatever id is at hand.

The id may be an event id, a delivery id, a run id, a file path or a git sha. The
event log says what arrived and what each trigger decided; DBOS says what each run
did, step by step (whatever steps the run workflow has, including notifications),
and the run's own record gives the job, the outcome and the log tail.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from dbos import DBOSClient

from trigger.core.errors import RunNotFoundError, TriggerError
from trigger.core.eventlog import EventLog
from trigger.core.runstatus import FINAL_STATUSES
from trigger.core.settings import Settings
from trigger.core.text import escaped, problem, readable
from workflows.notify.notice import format_duration, publish_line
from workflows.notify.outbox import notice_ids
from workflows.queue import RUN_QUEUE
from workflows.ratelimit import describe
from workflows.records import enqueued_ms, iso_ms, run_status, show_run


class NothingToExplainError(TriggerError):
    def __init__(self, query: str) -> None:
        super().__init__(
            f"nothing is known about {query!r}: it is not an event id, delivery id, run id, "
            "file path or git sha in the event log (kept for [events] retention_days) "
            "nor a run id; list recent events with `bauplan-trigger runs` or GET /api/events"
        )


def explain(query: str, log: EventLog, client: DBOSClient, settings: Settings) -> dict[str, Any]:
    """The story as data: the matching events (oldest first) and every run they name."""
    if problem(query) is not None:  # no id holds such a string; the database might not
        # even take it (a lone surrogate, NUL on PostgreSQL)
        raise NothingToExplainError(query)
    events = log.find(query)
    run_ids: list[str] = []
    for event in events:
        for decision in event["decisions"]:
            if decision["run_id"] and decision["run_id"] not in run_ids:
                run_ids.append(decision["run_id"])
    if not events and query not in run_ids:
        run_ids.append(query)
    runs: list[dict[str, Any]] = []
    for run_id in run_ids:
        try:
            runs.append(run_story(client, run_id, settings))
        except RunNotFoundError:
            if events:
                runs.append({"id": run_id, "status": "unknown", "missing": True})
    if not events and not runs:
        raise NothingToExplainError(query)
    # A run id also finds the control actions and retries recorded against it.
    return {"query": query, "events": [_event_view(e) for e in events], "runs": runs}


def _event_view(event: dict[str, Any]) -> dict[str, Any]:
    view = dict(event)
    view["received_at"] = iso_ms(event["received_at"] * 1000)
    view["verified"] = _verified(event)
    return view


def _verified(event: dict[str, Any]) -> str:
    attrs = event["attributes"]
    if event["outcome"] == "rejected":
        return f"no: {event['reason'] or 'refused'}"
    if attrs.get("verified"):
        return str(attrs["verified"])
    return {
        "manual": f"not needed: fired by {attrs.get('fired_by') or 'someone'} with access",
        "schedule": "not needed: a schedule tick of this service",
        "control": f"operator {attrs.get('actor') or '?'}",
        "files": "not needed: seen in a watched folder",
    }.get(event["source"], "yes")


def run_story(client: DBOSClient, run_id: str, settings: Settings) -> dict[str, Any]:
    """One run's story; a waiting run says why in the words ``runs show`` uses (the
    settings name every queue and limit the diagnosis reads).

    The timeline is in time order and every time in it is to the millisecond: the
    enqueue time the run recorded, its steps' times and its own end time, never DBOS's
    status times where those are whole seconds (SQLite under Python < 3.12)."""
    run = show_run(client, run_id, settings)
    status = run_status(client, run_id, load_input=False)
    attrs = status.attributes or {}
    raw_steps = client.list_workflow_steps(run_id)
    steps = [_step_view(s) for s in raw_steps]
    raw = {s["function_id"]: s for s in raw_steps}
    timeline: list[tuple[float | None, dict[str, Any]]] = []

    def add(ms: float | None, what: str, detail: str) -> None:
        timeline.append((ms, {"at": iso_ms(ms), "what": what, "detail": detail}))

    enqueued = enqueued_ms(status)
    detail = (
        f"workflow {run_id} on {status.queue_name or RUN_QUEUE}, branch "
        f"{status.queue_partition_key or '?'}, priority {status.priority}"
    )
    if attrs.get("retry_of"):
        detail += f", retry of {attrs['retry_of']}"
    add(enqueued, "enqueued", detail)
    began = min(
        (s["started_at_epoch_ms"] or 0 for s in raw_steps if s.get("started_at_epoch_ms")),
        default=status.dequeued_at,
    )
    waited_ms = None
    if began and enqueued:
        waited_ms = max(0, began - enqueued)
        add(
            began,
            "started",
            f"after waiting {waited_ms / 1000:.1f}s, on executor {status.executor_id or '?'}",
        )
    for step, count in _collapsed(steps):
        line = _step_line(step)
        if count > 1:
            line = f"{step['name']} x{count}, last: " + line.split(" ", 1)[1]
        took = raw[step["id"]]
        add(took.get("started_at_epoch_ms"), "step", line)
        if step["name"] in ("submit", "launch") and step["ok"] and attrs.get("job_id"):
            add(took.get("completed_at_epoch_ms"), "submitted", f"job {attrs['job_id']}")
    if run["status"] in FINAL_STATUSES:
        # The run's own end time; a run stopped from outside has only DBOS's. Either
        # way it did not end before its last step did.
        own = _ms(run.get("finished_at"))
        ended = own if own is not None else (status.completed_at or status.updated_at)
        last = max(
            (
                s.get("completed_at_epoch_ms") or s.get("started_at_epoch_ms") or 0
                for s in raw_steps
            ),
            default=0,
        )
        detail = run["status"]
        if run.get("duration") is not None:
            detail += f" in {format_duration(run['duration'])}"
        if attrs.get("cancelled_by"):
            detail += f", cancelled by {attrs['cancelled_by']}"
        if run.get("error"):
            detail += f": {run['error']}"
        published = publish_line(run.get("publish"))
        if published:
            detail += f"; {published}"
        add(max(ended or 0, last) or None, "finished", detail)
    # Stable: entries of the same millisecond keep the order they happen in.
    timeline.sort(key=lambda item: (item[0] is None, item[0] or 0))
    run["waiting"] = run.pop("waiting_reason", None)
    run["waited_seconds"] = None if waited_ms is None else waited_ms / 1000
    run["priority"] = status.priority
    run["executor"] = status.executor_id
    run["retry_of"] = attrs.get("retry_of")
    run["retried_as"] = attrs.get("retried_as")
    run["steps"] = steps
    notice_steps = [
        _step_view(step)
        for notice in notice_ids(raw_steps)
        for step in client.list_workflow_steps(notice)
    ]
    run["notifications"] = notifications(steps + notice_steps, attrs)
    run["timeline"] = [entry for _, entry in timeline]
    # Step outputs and attributes older versions stored may hold lone surrogates.
    return readable(run)


def notifications(steps: list[dict[str, Any]], attrs: dict[str, Any]) -> list[dict[str, Any]]:
    """Notification deliveries: steps named ``notify...`` (of the run's notice workflows,
    or of the run itself when it predates them) plus any the run recorded."""
    out = [
        {
            "step": s["name"],
            "ok": s["ok"],
            "detail": s["error"] if not s["ok"] else s["output"],
            "at": s["completed_at"],
        }
        for s in steps
        if s["name"].lower().startswith("notif")
    ]
    out.sort(key=lambda n: (n["at"] is None, n["at"] or ""))
    recorded = attrs.get("notifications")
    if isinstance(recorded, list):
        out.extend(r for r in recorded if isinstance(r, dict))
    return out


def _step_view(step: Any) -> dict[str, Any]:
    error = step.get("error")
    output = step.get("output")
    if output is None and step.get("child_workflow_id"):
        output = f"enqueued {step['child_workflow_id']}"
    return {
        "id": step["function_id"],
        "name": step["function_name"].rsplit(".", 1)[-1],
        "ok": error is None,
        "output": None if output is None else _short(_said(output)),
        "error": None if error is None else str(error),
        "started_at": iso_ms(step.get("started_at_epoch_ms")),
        "completed_at": iso_ms(step.get("completed_at_epoch_ms")),
        "seconds": (
            (step["completed_at_epoch_ms"] - step["started_at_epoch_ms"]) / 1000
            if step.get("completed_at_epoch_ms") and step.get("started_at_epoch_ms")
            else None
        ),
    }


def _said(output: Any) -> Any:
    """The run workflow's own step results, in words: the rest as they are."""
    if isinstance(output, dict) and "state" in output and "raw" in output:
        return f"job {output['state']} ({output['raw']})"
    if isinstance(output, dict) and {"started", "replaced_by", "branch"} <= set(output):
        # The launch step: superseded, or its branch and what its submit said.
        if output["replaced_by"]:
            return f"superseded by {output['replaced_by']}"
        submitted = output.get("submitted") or {}
        if output.get("job_id") or submitted.get("job_id"):
            return f"job {output.get('job_id') or submitted['job_id']} on {output['branch']}"
        if submitted:
            return _said(submitted)
        return f"branch {output['branch']}"
    if isinstance(output, dict) and set(output) == {"job_id"}:
        return f"job {output['job_id']}"
    if isinstance(output, dict) and set(output) == {"wait"}:
        return describe(output["wait"])
    if isinstance(output, dict) and set(output) == {"job_workflow"}:
        return f"waits for a global slot as job workflow {output['job_workflow']}"
    if isinstance(output, dict) and set(output) == {"replaced_by"}:
        return f"superseded by {output['replaced_by']}"
    return output


_QUIET_STEPS = ("start", "finish", "clock", "updateWorkflowAttributes", "setEvent", "getEvent")


def _collapsed(steps: list[dict[str, Any]]) -> list[tuple[dict[str, Any], int]]:
    """Consecutive waits and sleeps read as one line each; internal clock reads are hidden."""
    out: list[tuple[dict[str, Any], int]] = []
    for step in steps:
        if step["name"] in _QUIET_STEPS:
            continue
        kind = "sleep" if "sleep" in step["name"].lower() else step["name"]
        if out and out[-1][0]["name"] in (step["name"], kind) and step["ok"] and out[-1][0]["ok"]:
            out[-1] = (step, out[-1][1] + 1)
        else:
            out.append((step, 1))
    return out


def _step_line(step: dict[str, Any]) -> str:
    took = f" ({step['seconds']:.2f}s)" if step["seconds"] is not None else ""
    if not step["ok"]:
        return f"{step['name']} failed{took}: {step['error']}"
    if step["completed_at"] is None:
        return f"{step['name']} in progress"
    out = f" -> {step['output']}" if step["output"] not in (None, "") else ""
    return f"{step['name']} ok{took}{out}"


def _short(value: Any, limit: int = 160) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str, sort_keys=True)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _ms(iso: str | None) -> float | None:
    return None if iso is None else datetime.fromisoformat(iso).timestamp() * 1000


def _clock(iso: str | None) -> str:
    if iso is None:
        return "--:--:--"
    moment = datetime.fromisoformat(iso)
    return moment.strftime("%H:%M:%S.") + f"{moment.microsecond // 1000:03d}"


def render(story: dict[str, Any]) -> str:
    """The story for a terminal: one block per event, one per run, times in UTC.

    Values from outside may hold control characters (older versions stored them):
    each line is escaped, so none can move the cursor, recolour or add a line."""
    lines: list[str] = []
    for event in story["events"]:
        when = event["received_at"].replace("T", " ")[:23]
        sender = f" from {event['source_addr']}" if event["source_addr"] else ""
        lines.append(f"event {event['event_id'] or '(no id)'} ({event['source']}){sender}")
        lines.append(f"  received   {when} UTC")
        lines.append(f"  verified   {event['verified']}")
        outcome = event["outcome"]
        if event["reason"]:
            outcome += f": {event['reason']}"
        lines.append(f"  outcome    {outcome}")
        attrs = {k: v for k, v in event["attributes"].items() if v not in (None, "")}
        if attrs:
            shown = ", ".join(
                f"{k}={json.dumps(v) if isinstance(v, list) else v}"
                for k, v in sorted(attrs.items())
            )
            lines.append(f"  attributes {shown}")
        for i, d in enumerate(event["decisions"]):
            label = "triggers  " if i == 0 else "          "
            if d["matched"]:
                text = f"{d['trigger']}: matched -> {d['run_id'] or '-'}"
                if d["reason"]:
                    text += f" ({d['reason']})"
            else:
                text = f"{d['trigger']}: filtered out ({d['reason']})"
            lines.append(f"  {label} {text}")
        lines.append("")
    for run in story["runs"]:
        if run.get("missing"):
            lines.append(f"run {run['id']}: no such workflow any more (deleted or never enqueued)")
            lines.append("")
            continue
        lines.append(f"run {run['id']} (trigger {run['trigger']}): {run['status'].upper()}")
        for entry in run["timeline"]:
            lines.append(f"  {_clock(entry['at'])}  {entry['what']:<10} {entry['detail']}")
        if run["waiting"]:
            lines.append(f"  waiting    {run['waiting']}")
        lines.append(f"  branch     {run['branch'] or '-'}")
        lines.append(f"  job        {run['job_id'] or '-'}")
        params = json.dumps(run.get("parameters") or {}, sort_keys=True)
        lines.append(f"  parameters {params}")
        if run.get("retried_as"):
            lines.append(f"  retried as {run['retried_as']}")
        if run["notifications"]:
            for n in run["notifications"]:
                mark = "delivered" if n.get("ok") else "FAILED"
                lines.append(
                    f"  notify     {n.get('step')}: {mark} {n.get('detail') or ''}".rstrip()
                )
        else:
            lines.append("  notify     (no notifications sent)")
        if run.get("log_tail"):
            lines.append("  log tail")
            lines.extend(f"    {line}" for line in run["log_tail"][-10:])
        lines.append("")
    return "\n".join(escaped(line) for line in lines).rstrip() + "\n"
