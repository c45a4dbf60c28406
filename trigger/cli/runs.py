"""``runs``: list, show, retry, cancel and resume runs."""

from __future__ import annotations

import json
from pathlib import Path

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
    if schedules:
        for item in schedules:
            click.echo(
                f"schedule {item['trigger']}: cron {item['cron']!r} {item['timezone']}, "
                f"next {item['next_fire']}, last {item['last_fired'] or 'never'}"
            )
        click.echo("")
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
    from workflows.notify.notice import publish_line
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
    for key in ("id", "trigger", "event_id", "status", "phase", "branch", "job_id"):
        click.echo(f"{key:>11}: {run.get(key) or '-'}")
    for key in ("waiting_reason", "superseded_by", "executor_id"):
        if run.get(key):
            click.echo(f"{key.replace('_', ' '):>11}: {run[key]}")
    for key in ("created_at", "updated_at", "duration", "project_dir", "error"):
        click.echo(f"{key:>11}: {run.get(key) if run.get(key) is not None else '-'}")
    click.echo(f"{'parameters':>11}: {json.dumps(run['parameters'], sort_keys=True)}")
    published = publish_line(run.get("publish"))
    if published:
        click.echo(f"{'publish':>11}: {published}")
    for item in run.get("notifications", []):
        detail = item.get("message") or f"{item['status']} ({item['reason']})"
        click.echo(f"{'notify':>11}: {item['name']} {item['on']}: {detail}")
    if run["log_tail"]:
        click.echo("   log tail:")
        for line in run["log_tail"]:
            click.echo(f"    {line}")


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
