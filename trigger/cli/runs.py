"""``runs``: list, show, retry, cancel and resume runs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from trigger.cli.common import (
    Group,
    config_option,
    dbos_client,
    json_option,
    settings_for,
    table,
)
from trigger.core.runstatus import RUN_STATUSES


@click.group(cls=Group, invoke_without_command=True)
@config_option
@json_option
@click.option("--trigger", "trigger_name", default=None, help="Only this trigger's runs.")
@click.option(
    "--status",
    type=click.Choice(RUN_STATUSES),
    default=None,
)
@click.option("--limit", type=click.IntRange(1, 10000), default=50, show_default=True)
@click.pass_context
def runs(
    ctx: click.Context,
    config: Path | None,
    as_json: bool,
    trigger_name: str | None,
    status: str | None,
    limit: int,
) -> None:
    """List runs, newest first."""
    if ctx.invoked_subcommand is not None:
        return
    from trigger.sources.schedule import schedule_rows
    from workflows.records import list_runs

    settings = settings_for(config)
    if trigger_name is not None:
        settings.trigger(trigger_name)
    client = dbos_client(settings)
    try:
        rows = list_runs(
            client, trigger=trigger_name, status=status, limit=limit, settings=settings
        )
        schedules = schedule_rows(settings, client)
    finally:
        client.destroy()
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    # Notes go to stderr: stdout holds the table alone, its header first.
    for item in schedules:
        click.echo(
            f"schedule {item['trigger']}: cron {item['cron']!r} {item['timezone']}, "
            f"next {item['next_fire']}, last {item['last_fired'] or 'never'}",
            err=True,
        )
    table(
        rows,
        [
            ("ID", "id"),
            ("TRIGGER", "trigger"),
            ("STATUS", "status"),
            ("BRANCH", "branch"),
            ("JOB", "job_id"),
            ("CREATED", "created_at"),
        ]
        + ([("WHY WAITING", "waiting_reason")] if status == "waiting" else []),
    )


@runs.command("show")
@config_option
@json_option
@click.argument("run_id")
def runs_show(config: Path | None, as_json: bool, run_id: str) -> None:
    """Show one run in full."""
    from workflows.records import show_run

    settings = settings_for(config)
    client = dbos_client(settings)
    try:
        run = show_run(client, run_id, settings)
    finally:
        client.destroy()
    if as_json:
        click.echo(json.dumps(run, indent=2))
        return
    click.echo(describe_run(run), nl=False)


# How ``runs show`` names an event's attributes, in this order; the rest follow sorted.
_EVENT_LABELS = (
    ("repo", "repo"),
    ("git_ref", "ref"),
    ("git_branch", "git branch"),
    ("git_tag", "tag"),
    ("git_before", "before"),
    ("git_sha", "sha"),
    ("pusher", "pusher"),
    ("head_message", "message"),
    ("head_timestamp", "committed"),
    ("commits_count", "commits"),
    ("changed_paths", "changed"),
    ("paths_complete", "paths complete"),
    ("file_path", "file"),
    ("file_size", "size"),
    ("scheduled_time", "scheduled"),
    ("fired_by", "fired by"),
)
_EVENT_HIDDEN = {"kind", "id", "received_at", "git_short_sha"}


def describe_run(run: dict[str, Any]) -> str:
    """``runs show`` in text: the run, how long it took, and the event behind it (for a
    push: repo, branch, before and after sha, pusher, message, changed paths)."""
    from trigger.core.text import escaped
    from workflows.notify.notice import format_duration, publish_line

    lines: list[str] = []

    def put(label: str, value: Any) -> None:
        lines.append(f"{label:>11}: {'-' if value in (None, '') else value}")

    for key in ("id", "trigger", "event_id", "status", "phase", "branch", "job_id"):
        put(key, run.get(key))
    for key in ("waiting_reason", "superseded_by", "executor_id"):
        if run.get(key):
            put(key.replace("_", " "), run[key])
    for key in ("created_at", "started_at", "finished_at"):
        put(key.replace("_", " "), run.get(key))
    put("duration", format_duration(run.get("duration")))
    put("project_dir", run.get("project_dir"))
    put("error", run.get("error"))
    put("parameters", json.dumps(run.get("parameters") or {}, sort_keys=True))
    published = publish_line(run.get("publish"))
    if published:
        put("publish", published)
    event = run.get("event") or {}
    if event:
        received = f", received {event['received_at']}" if event.get("received_at") else ""
        put("event", f"{event.get('kind') or '?'} {event.get('id') or '?'}{received}")
        known = [(key, label) for key, label in _EVENT_LABELS if key in event]
        rest = sorted(k for k in event if k not in _EVENT_HIDDEN and k not in dict(known))
        for key, label in known + [(k, k.replace("_", " ")) for k in rest]:
            value = event[key]
            items = value if isinstance(value, list) else [value]
            for i, item in enumerate(items or ["(none)"]):
                shown = json.dumps(item) if isinstance(item, bool) else item
                lines.append(f"{'':>13}{label if i == 0 else '':<15}{shown}")
    for item in run.get("notifications", []):
        detail = item.get("message") or f"{item['status']} ({item['reason']})"
        put("notify", f"{item['name']} {item['on']}: {detail}")
    if run.get("log_tail"):
        lines.append("   log tail:")
        lines.extend(f"    {line}" for line in run["log_tail"])
    # Values from outside (a commit message, a path) stay on their own line.
    return "".join(escaped(line) + "\n" for line in lines)


@runs.command("retry")
@config_option
@json_option
@click.argument("run_id")
def runs_retry(config: Path | None, as_json: bool, run_id: str) -> None:
    """Start a new run of RUN_ID's request, linked to it."""
    from trigger.ops.control import retry
    from workflows.intake import Enqueuer

    settings = settings_for(config)
    enqueuer = Enqueuer(settings, dbos_client(settings))
    try:
        result = retry(settings, enqueuer, run_id)
    finally:
        enqueuer.close()
    click.echo(json.dumps(result.as_dict(), indent=2) if as_json else result.new_run_id)


@runs.command("cancel")
@config_option
@json_option
@click.argument("run_id")
def runs_cancel(config: Path | None, as_json: bool, run_id: str) -> None:
    """Dequeue a waiting run, or stop a running one and cancel its Bauplan job."""
    _control("cancel", config, as_json, run_id)


@runs.command("resume")
@config_option
@json_option
@click.argument("run_id")
def runs_resume(config: Path | None, as_json: bool, run_id: str) -> None:
    """Put a cancelled run back on the run queue, on its own branch."""
    _control("resume", config, as_json, run_id)


def _control(action: str, config: Path | None, as_json: bool, run_id: str) -> None:
    from trigger.ops import control

    settings = settings_for(config)
    client = dbos_client(settings)
    try:
        result = getattr(control, action)(settings, client, run_id)
    finally:
        client.destroy()
    if as_json:
        click.echo(json.dumps(result.as_dict(), indent=2))
    else:
        click.echo(f"{run_id}: {result.detail}")
