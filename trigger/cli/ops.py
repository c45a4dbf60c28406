"""The operator's commands: ``serve``, ``explain``, ``check``, ``notify-test``, ``recover``."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from trigger.cli.common import (
    config_option,
    dbos_client,
    json_option,
    settings_for,
    table,
)
from trigger.core.errors import TriggerError
from trigger.core.runstatus import NOTICE_STATUSES


@click.command()
@config_option
@click.option(
    "--role",
    type=click.Choice(["all", "ingress", "worker"]),
    default="all",
    show_default=True,
    help="ingress accepts events, worker runs them, all does both.",
)
@click.option(
    "--log-format",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="json: one object per line with time, level, logger, message, run id, trigger, event id.",
)
def serve(config: Path | None, role: str, log_format: str) -> None:
    """Run the service until SIGINT/SIGTERM."""
    from trigger.cli.logs import setup_logging
    from trigger.core.outage import OutageLog
    from trigger.service import serve as run_service

    settings = settings_for(config)
    setup_logging(fmt=log_format)
    outages = OutageLog(settings.database_url()).install()
    try:
        run_service(settings, role)
    finally:
        outages.close()


@click.command()
@config_option
@json_option
@click.argument("ident", metavar="ID")
def explain(config: Path | None, as_json: bool, ident: str) -> None:
    """The story of an event or run: event id, delivery id, run id, file path or git sha."""
    from trigger.core.eventlog import event_log
    from trigger.ops.explain import explain as build
    from trigger.ops.explain import render

    settings = settings_for(config)
    client = dbos_client(settings)
    try:
        story = build(ident, event_log(settings), client, settings)
    finally:
        client.destroy()
    click.echo(json.dumps(story, indent=2, default=str) if as_json else render(story), nl=as_json)


@click.command()
@config_option
@json_option
def check(config: Path | None, as_json: bool) -> None:
    """Check the config, the database, Bauplan, every trigger and every notifier.

    Exit 1 when any check fails; warnings alone exit 0."""
    from trigger.ops.checks import failed, run_checks

    try:
        settings = settings_for(config)
    except TriggerError as exc:
        if not as_json:
            raise
        click.echo(json.dumps([{"name": "config", "status": "fail", "message": str(exc)}]))
        sys.exit(1)
    checks = run_checks(settings)
    if as_json:
        click.echo(json.dumps([c.as_dict() for c in checks], indent=2))
    else:
        rows = [{**c.as_dict(), "status": _STATUS_WORD[c.status]} for c in checks]
        table(rows, [("CHECK", "name"), ("STATUS", "status"), ("MESSAGE", "message")])
    if failed(checks):
        if not as_json:
            click.echo("error: some checks failed (see above)", err=True)
        sys.exit(1)


_STATUS_WORD = {"ok": "ok", "warn": "WARN", "fail": "FAIL"}


@click.command("notify-test")
@config_option
@json_option
@click.argument("name")
@click.option(
    "--status",
    type=click.Choice(NOTICE_STATUSES),
    default="succeeded",
    show_default=True,
    help="Which message to send.",
)
@click.option("--repo", default=None, help="github_status: OWNER/NAME of the commit to mark.")
@click.option("--sha", default=None, help="github_status: full commit sha to mark.")
def notify_test(
    config: Path | None,
    as_json: bool,
    name: str,
    status: str,
    repo: str | None,
    sha: str | None,
) -> None:
    """Send a test message through notifier NAME and report the receiver's answer."""
    from workflows.notify.delivery import send_test

    settings = settings_for(config)
    display, answer = send_test(settings, name, status=status, repo=repo, sha=sha)
    if as_json:
        click.echo(json.dumps({"notifier": display, **answer}, indent=2))
    elif answer["delivered"]:
        click.echo(f"{display}: delivered ({answer['reason']})")
    elif answer["skipped"]:
        click.echo(f"{display}: not sent: {answer['reason']}")
    else:
        click.echo(f"{display}: not delivered: {answer['reason']}")
    if not answer["delivered"]:
        sys.exit(1)


@click.command()
@config_option
@json_option
@click.argument("executor_id")
@click.option(
    "--force",
    is_flag=True,
    help="Take over even if the executor's heartbeat is fresh (only if you know it is dead).",
)
def recover(config: Path | None, as_json: bool, executor_id: str, force: bool) -> None:
    """Put a dead worker's in-flight runs back on their queues for live workers."""
    from workflows import sysdb
    from workflows.executors import recover_executor

    settings = settings_for(config)
    sysdb.require(settings)
    taken = recover_executor(settings, executor_id, force=force, by="cli")
    if as_json:
        click.echo(json.dumps({"executor_id": executor_id, "recovered": taken}, indent=2))
        return
    click.echo(f"recovered {len(taken)} run(s) of executor {executor_id}")
    for run_id in taken:
        click.echo(f"  {run_id}")
