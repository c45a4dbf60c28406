"""What the console shows, as plain data for its templates: the filtered runs list, the
events, the triggers overview and one run's page.

The listing is ``workflows.records.list_runs`` and a run's story is
``trigger.ops.explain``, as for ``runs`` and the API; this module only chooses,
pages and words them for a person.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from dbos import DBOSClient

from trigger.core.eventlog import OUTCOMES, EventLog
from trigger.core.runstatus import FINAL_STATUSES, RUN_STATUSES
from trigger.core.settings import Settings, TriggerConfig
from trigger.core.templates import SOURCE_FIELDS
from trigger.core.text import problem
from trigger.http.app import HealthProvider
from workflows.notify.notice import publish_line
from workflows.records import list_runs

PAGE_SIZE = 25
MAX_PAGE_SIZE = 200
MAX_OFFSET = 1_000_000
EVENTS_SHOWN = 20
# The kinds of event a run can come from, and the event log's own sources.
SOURCES = (*SOURCE_FIELDS, "control")


@dataclass(frozen=True)
class Filters:
    """The runs list's query string: ``/?status=failed&trigger=orders&q=abc123``."""

    trigger: str = ""
    status: str = ""
    source: str = ""
    outcome: str = ""
    q: str = ""
    offset: int = 0
    limit: int = PAGE_SIZE

    @classmethod
    def parse(cls, params: Mapping[str, str]) -> tuple[Filters, list[str]]:
        """The filters, and a sentence for each value that was dropped because it cannot
        match anything (the page still answers, showing what it did instead)."""
        problems: list[str] = []
        words: dict[str, str] = {}
        for name in ("trigger", "status", "source", "outcome", "q"):
            value = params.get(name, "").strip()[:300]
            if value and problem(value) is not None:
                problems.append(f"the {name} filter holds characters no id can hold; ignored")
                value = ""
            words[name] = value
        for name, allowed in (("status", RUN_STATUSES), ("outcome", OUTCOMES)):
            if words[name] and words[name] not in allowed:
                problems.append(
                    f"{name} {words[name]!r} is not one of {', '.join(allowed)}; showing all"
                )
                words[name] = ""
        offset = _number(params, "offset", 0, MAX_OFFSET, problems)
        limit = _number(params, "limit", PAGE_SIZE, MAX_PAGE_SIZE, problems, low=1)
        return cls(**words, offset=offset, limit=limit), problems

    def query(self, **changes: Any) -> str:
        """This list's URL with some filters changed; defaults are left out."""
        changed = replace(self, **changes)
        pairs = [
            (f.name, str(getattr(changed, f.name)))
            for f in fields(changed)
            if getattr(changed, f.name) != f.default
        ]
        return "/?" + urlencode(pairs) if pairs else "/"

    def active(self) -> bool:
        return any(getattr(self, name) for name in ("trigger", "status", "source", "outcome", "q"))


def _number(
    params: Mapping[str, str],
    name: str,
    default: int,
    high: int,
    problems: list[str],
    low: int = 0,
) -> int:
    raw = params.get(name, "").strip()
    if not raw:
        return default
    if raw.isdigit() and low <= int(raw) <= high:
        return int(raw)
    problems.append(f"{name} {raw[:20]!r} is not a whole number from {low} to {high}; ignored")
    return default


def run_ids_for(log: EventLog, text: str) -> list[str]:
    """The runs of the events an id names (event or delivery id, sha, file path)."""
    found: list[str] = []
    for event in log.find(text.strip()):
        for decision in event["decisions"]:
            if decision["run_id"] and decision["run_id"] not in found:
                found.append(decision["run_id"])
    return found


def runs_list(
    client: DBOSClient, log: EventLog, settings: Settings, filters: Filters
) -> dict[str, Any]:
    """One page of runs and the events beside them, for ``/``."""
    rows = list_runs(
        client,
        trigger=filters.trigger or None,
        status=filters.status or None,
        source=filters.source or None,
        search=filters.q or None,
        run_ids=run_ids_for(log, filters.q) if filters.q else (),
        limit=filters.limit + 1,  # one more tells whether a next page exists
        offset=filters.offset or None,
        settings=settings,
    )
    runs = [run_row(r) for r in rows[: filters.limit]]
    previous = max(0, filters.offset - filters.limit) if filters.offset else None
    following = filters.offset + filters.limit if len(rows) > filters.limit else None
    return {
        "runs": runs,
        "events": events_list(log, filters),
        "first": filters.offset + 1 if runs else 0,
        "last": filters.offset + len(runs),
        "previous": None if previous is None else filters.query(offset=previous),
        "next": None if following is None else filters.query(offset=following),
    }


def events_list(log: EventLog, filters: Filters) -> list[dict[str, Any]]:
    if filters.q:
        found = list(reversed(log.find(filters.q)))
        rows = [
            e
            for e in found
            if (not filters.source or e["source"] == filters.source)
            and (not filters.outcome or e["outcome"] == filters.outcome)
        ][:EVENTS_SHOWN]
    else:
        rows = log.recent(
            source=filters.source or None, outcome=filters.outcome or None, limit=EVENTS_SHOWN
        )
    return [
        {**e, "received_iso": datetime.fromtimestamp(e["received_at"], UTC).isoformat()}
        for e in rows
    ]


def run_row(run: Mapping[str, Any]) -> dict[str, Any]:
    """A run record with the times a person reads: how long it took, or since when."""
    row = dict(run)
    row["final"] = run["status"] in FINAL_STATUSES
    row["seconds"] = took(run)
    row["since"] = None if row["final"] else (run.get("started_at") or run.get("created_at"))
    return row


def took(run: Mapping[str, Any]) -> float | None:
    """The run's own duration when it has one, else the span from its start (or its
    enqueue, for a run that never started) to its end."""
    if run.get("duration") is not None:
        return float(run["duration"])
    end = run.get("completed_at")
    start = run.get("started_at") or run.get("created_at")
    if run["status"] not in FINAL_STATUSES or not end or not start:
        return None
    span = datetime.fromisoformat(end) - datetime.fromisoformat(start)
    return max(0.0, span.total_seconds())


def triggers_overview(
    settings: Settings,
    client: DBOSClient,
    health: Mapping[str, HealthProvider],
    now: datetime | None = None,
) -> list[dict[str, Any]]:
    """Per trigger: what it listens to, its last run, its next tick, its watcher."""
    moment = now or datetime.now(UTC)
    watchers = _watchers(health)
    out = []
    for trig in settings.triggers:
        last = list_runs(client, trigger=trig.name, limit=1)
        out.append(
            {
                "name": trig.name,
                "description": trig.description,
                "sources": [s for s in trig.sources() if s != "manual"] or ["manual"],
                "inputs": list(trig.inputs),
                "last": run_row(last[0]) if last else None,
                "schedule": _schedule(trig, moment),
                "watcher": _watcher(trig, watchers),
            }
        )
    return out


def _schedule(trig: TriggerConfig, now: datetime) -> dict[str, Any] | None:
    if trig.schedule is None:
        return None
    tick = trig.schedule.next_after(now).astimezone(UTC)
    return {
        "cron": trig.schedule.cron,
        "timezone": trig.schedule.timezone or "UTC",
        "next": tick.isoformat(),
    }


def _watchers(health: Mapping[str, HealthProvider]) -> dict[str, dict[str, Any]]:
    """Watcher states by trigger, from the health providers that report watchers."""
    found: dict[str, dict[str, Any]] = {}
    for provider in health.values():
        try:
            report = provider()
        except Exception:  # /healthz says so; the page just shows no watcher
            report = {}
        for watcher in report.get("watchers") or ():
            if isinstance(watcher, dict) and watcher.get("trigger"):
                found[str(watcher["trigger"])] = watcher
    return found


def _watcher(trig: TriggerConfig, watchers: Mapping[str, dict[str, Any]]) -> dict[str, Any] | None:
    if trig.files is None:
        return None
    watcher = watchers.get(trig.name)
    if watcher is None:
        return {"state": "not here", "ok": None, "dir": str(trig.files.dir), "detail": None}
    state = str(watcher.get("state") or "unknown")
    return {
        "state": state,
        "ok": state not in ("missing", "error", "stopped"),
        "dir": watcher.get("dir"),
        "last_scan_at": watcher.get("last_scan_at"),
        "detail": watcher.get("last_error"),
    }


def run_page(story: Mapping[str, Any], run_id: str) -> dict[str, Any] | None:
    """The run ``run_id`` out of its explain story, with what its page shows; None when
    the story has no such run."""
    runs = [r for r in story["runs"] if r.get("id") == run_id]
    if not runs or runs[0].get("missing"):
        return None
    run = run_row(runs[0])
    if run.get("duration") is not None:
        run["seconds"] = float(run["duration"])
    event = run.get("event") or {}
    run["commit"] = _commit(event)
    run["publish_line"] = publish_line(run.get("publish"))
    run["actions"] = actions(run)
    return {"run": run, "events": story["events"]}


def _commit(event: Mapping[str, Any]) -> dict[str, Any] | None:
    sha = event.get("git_sha")
    if not isinstance(sha, str) or not sha:
        return None
    repo = event.get("repo")
    url = (
        f"https://github.com/{repo}/commit/{sha}"
        if event.get("kind") == "github" and isinstance(repo, str) and repo.count("/") == 1
        else None
    )
    return {"sha": sha, "short": sha[:12], "repo": repo, "url": url}


def actions(run: Mapping[str, Any]) -> list[str]:
    """The buttons a run's state allows; the server checks again when one is pressed."""
    if run["status"] in ("waiting", "running"):
        return ["cancel"]
    out = ["retry"]
    if run.get("dbos_status") in ("CANCELLED", "MAX_RECOVERY_ATTEMPTS_EXCEEDED"):
        out.append("resume")
    return out
