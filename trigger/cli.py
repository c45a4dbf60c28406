"""The ``bauplan-trigger`` command: parse, call, print. User mistakes are one line, exit 1."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import click

from trigger.core.errors import TriggerError
from trigger.core.runstatus import NOTICE_STATUSES, RUN_STATUSES
from trigger.ops.follow import DEFAULT_TIMEOUT

F = TypeVar("F", bound=Callable[..., Any])


class _Group(click.Group):
    """Turns our errors, and a system database that cannot be reached, into one line on
    stderr and exit code 1, never a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except TriggerError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(getattr(exc, "exit_code", 1))
        except Exception as exc:
            from trigger.core import outage

            if not outage.is_unreachable(exc):
                raise
            click.echo(f"error: {outage.unreachable(exc)}", err=True)
            sys.exit(1)


def config_option(fn: F) -> F:
    option = click.option(
        "--config",
        "config",
        type=click.Path(path_type=Path, dir_okay=False),
        default=None,
        help="TOML config (default: $BAUPLAN_TRIGGER_CONFIG, then ./bauplan-trigger.toml).",
    )
    return option(fn)


def json_option(fn: F) -> F:
    return click.option("--json", "as_json", is_flag=True, help="Print JSON.")(fn)


def _client(settings: Any) -> Any:
    """A DBOSClient on the shared system database, or one line saying why not: on a
    state folder or database ``serve`` never ran on, there is nothing to read yet, and
    nothing is left behind (only ``fire`` sets one up, with ``sysdb.ensure``)."""
    from dbos import DBOSClient

    from workflows import sysdb

    sysdb.require(settings)
    # Fail at once when the database goes away mid-command, instead of blocking.
    return DBOSClient(system_database_url=settings.database_url(), retry_connection_errors=False)


def _settings(config: Path | None) -> Any:
    from trigger.core import secrets
    from trigger.core.settings import load_settings

    settings = load_settings(config)
    secrets.install(settings)  # before anything can log or print a secret
    return settings


@click.group(cls=_Group)
@click.version_option(package_name="bauplan-trigger")
@click.pass_context
def main(ctx: click.Context) -> None:
    """Durable run triggers for Bauplan pipelines."""
    if ctx.invoked_subcommand != "serve":  # serve logs an outage its own way
        import logging

        from trigger.core.outage import DropUnreachable

        # A command's one error line says the database cannot be reached; DBOS's
        # logger would say it first, in three lines.
        logging.getLogger("dbos").addFilter(DropUnreachable())


@main.command()
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
    from trigger.core.outage import OutageLog
    from trigger.logs import setup_logging
    from trigger.service import serve as run_service

    settings = _settings(config)
    setup_logging(fmt=log_format)
    outages = OutageLog(settings.database_url()).install()
    try:
        run_service(settings, role)
    finally:
        outages.close()


@main.command()
@config_option
@click.argument("trigger_name", metavar="TRIGGER")
@click.option("--param", "params", multiple=True, metavar="NAME=VALUE", help="A declared input.")
@click.option("--event-id", default=None, help="Idempotency key: the same id runs once.")
@click.option("--wait", is_flag=True, help="Block until the run ends; exit 1 if it failed.")
@click.option(
    "--timeout",
    type=click.FloatRange(min=0),
    default=DEFAULT_TIMEOUT,
    show_default=True,
    help="With --wait: give up after N seconds (exit 3; the run goes on). 0: never.",
)
@json_option
def fire(
    config: Path | None,
    trigger_name: str,
    params: Sequence[str],
    event_id: str | None,
    wait: bool,
    timeout: float,
    as_json: bool,
) -> None:
    """Enqueue a run of TRIGGER into the running service's queue."""
    from pydantic import ValidationError

    from trigger.core.event import manual_event
    from trigger.core.matching import parse_params
    from trigger.ops.follow import follow
    from trigger.sources.manual import fire_event
    from workflows import sysdb, workers
    from workflows.queue import Enqueuer

    settings = _settings(config)
    trig = settings.trigger(trigger_name)
    inputs = parse_params(trig, list(params))
    try:
        event = manual_event(trig.name, inputs, event_id=event_id)
    except ValidationError:
        raise TriggerError(
            f"--event-id {event_id!r} is not a valid event id: use 1-200 letters, digits "
            "and ._:@/+=- starting with a letter or digit"
        ) from None
    # On a state folder serve never ran on, set the database up: the run waits for a worker.
    if sysdb.ensure(settings):
        click.echo(f"note: set up the system database at {sysdb.where(settings)}", err=True)
    enqueuer = Enqueuer(settings, _client(settings))
    try:
        enqueued = fire_event(settings, enqueuer, event, source_addr="cli")
        if not as_json:
            note = " (already exists: this event id was fired before)" if enqueued.duplicate else ""
            click.echo(f"{enqueued.run_id}{note}")
        gone = None if enqueued.duplicate else workers.absent(settings)
        if gone is not None:
            click.echo(
                f"warning: {gone}; run {enqueued.run_id} waits in the queue until one starts "
                "(`bauplan-trigger serve`, role all or worker, with this config)",
                err=True,
            )
        if not wait:
            if as_json:
                click.echo(json.dumps({"id": enqueued.run_id, "duplicate": enqueued.duplicate}))
            return
        on_phase = _say if sys.stderr.isatty() else None
        try:
            final = follow(enqueuer.client, enqueued.run_id, settings, timeout, on_phase)
        except KeyboardInterrupt:
            click.echo(
                f"\ninterrupted: run {enqueued.run_id} goes on; follow it with "
                f"`bauplan-trigger runs show {enqueued.run_id}`",
                err=True,
            )
            sys.exit(130)
    finally:
        enqueuer.close()
    if as_json:
        click.echo(json.dumps(final, indent=2))
    else:
        click.echo(_describe(final))
    if final["status"] != "succeeded":
        sys.exit(1)


def _say(line: str) -> None:
    click.echo(f"  {line}", err=True)


def _describe(run: dict[str, Any]) -> str:
    parts = [
        f"{run['id']} {run['status']}",
        f"branch={run['branch']}",
        f"job={run['job_id'] or '-'}",
    ]
    if run.get("duration") is not None:
        parts.append(f"duration={run['duration']:.1f}s")
    line = " ".join(parts)
    if run.get("error"):
        line += f"\nerror: {run['error']}"
    return line


@main.group(cls=_Group, invoke_without_command=True)
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

    settings = _settings(config)
    if trigger_name is not None:
        settings.trigger(trigger_name)
    client = _client(settings)
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
    _table(
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

    settings = _settings(config)
    client = _client(settings)
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
    from workflows.queue import Enqueuer

    settings = _settings(config)
    enqueuer = Enqueuer(settings, _client(settings))
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

    settings = _settings(config)
    client = _client(settings)
    try:
        result = getattr(control, action)(settings, client, run_id)
    finally:
        client.destroy()
    if as_json:
        click.echo(json.dumps(result.as_dict(), indent=2))
    else:
        click.echo(f"{run_id}: {result.detail}")


@main.command()
@config_option
@json_option
@click.argument("ident", metavar="ID")
def explain(config: Path | None, as_json: bool, ident: str) -> None:
    """The story of an event or run: event id, delivery id, run id, file path or git sha."""
    from trigger.core.eventlog import event_log
    from trigger.ops.explain import explain as build
    from trigger.ops.explain import render

    settings = _settings(config)
    client = _client(settings)
    try:
        story = build(ident, event_log(settings), client, settings)
    finally:
        client.destroy()
    click.echo(json.dumps(story, indent=2, default=str) if as_json else render(story), nl=as_json)


@main.command()
@config_option
def check(config: Path | None) -> None:
    """Validate the config, the Bauplan user and every trigger's project folder."""
    from trigger.ops.checks import run_checks

    settings = _settings(config)
    rows, ok = run_checks(settings)
    _table(rows, [("CHECK", "check"), ("RESULT", "result"), ("DETAIL", "detail")])
    if not ok:
        click.echo("error: some checks failed (see above)", err=True)
        sys.exit(1)


@main.command("notify-test")
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

    settings = _settings(config)
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


@main.command()
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

    settings = _settings(config)
    sysdb.require(settings)
    taken = recover_executor(settings, executor_id, force=force, by="cli")
    if as_json:
        click.echo(json.dumps({"executor_id": executor_id, "recovered": taken}, indent=2))
        return
    click.echo(f"recovered {len(taken)} run(s) of executor {executor_id}")
    for run_id in taken:
        click.echo(f"  {run_id}")


@main.group(cls=_Group)
def rehearsal() -> None:
    """Inspect rehearsal mode's job ledger; rehearse Bauplan outages and worker crashes."""


@rehearsal.command("jobs")
@config_option
@json_option
def rehearsal_jobs(config: Path | None, as_json: bool) -> None:
    """Every submission rehearsal mode recorded instead of sending to Bauplan."""
    from workflows.bauplan.rehearsal import Ledger
    from workflows.runtime import ledger_path

    settings = _settings(config)
    path = ledger_path(settings)
    jobs = Ledger(path).jobs() if path.exists() else []
    public = [{k: v for k, v in job.items() if not k.endswith("_ts")} for job in jobs]
    if as_json:
        click.echo(json.dumps(public, indent=2))
        return
    _table(
        public,
        [
            ("JOB", "job_id"),
            ("REF", "ref"),
            ("STATUS", "status"),
            ("SUBMITTED", "submitted_at"),
            ("PROJECT", "project_dir"),
        ],
    )


def _ledger(config: Path | None) -> Any:
    """The rehearsal ledger ``serve`` uses with this config; refused in live mode."""
    from trigger.core.errors import RehearsalFaultError
    from workflows.runtime import rehearsal_ledger

    settings = _settings(config)
    ledger = rehearsal_ledger(settings)
    if ledger is None:
        raise RehearsalFaultError(
            f"faults are rehearsed only in rehearsal mode, and this config has [bauplan] "
            f'mode = {settings.bauplan.mode!r}; set mode = "rehearse" to try them'
        )
    return ledger


@rehearsal.command("fault")
@config_option
@json_option
@click.argument("method")
@click.argument("error")
@click.option("--count", default=1, show_default=True, help="How many calls it hits.")
@click.option("--message", default="rehearsed fault", show_default=True, help="Its message.")
def rehearsal_fault(
    config: Path | None, as_json: bool, method: str, error: str, count: int, message: str
) -> None:
    """Make the next COUNT calls of Bauplan METHOD raise the SDK's exception ERROR.

    ERROR EXIT_AFTER lets the call do its work, then kills the worker. METHOD
    step:NAME (with EXIT_AFTER) kills the worker right after the run step NAME is
    checkpointed."""
    from workflows.bauplan.faults import EXIT_AFTER, check

    check(method, error, count)
    ledger = _ledger(config)
    ledger.inject_fault(method, error, message, count)
    if as_json:
        click.echo(json.dumps(ledger.faults(), indent=2))
        return
    one = count == 1
    calls = "call" if one else f"{count} calls"
    if method.startswith("step:"):
        times = "time" if one else f"{count} times"
        click.echo(
            f"armed: the worker exits right after step {method[5:]!r} is checkpointed, "
            f"the next {times}"
        )
    elif error == EXIT_AFTER:
        work = "does its work, then kills" if one else "do their work, then kill"
        click.echo(f"armed: the next {calls} of {method} {work} the worker")
    else:
        click.echo(f"armed: the next {calls} of {method} raise {error}: {message}")


@rehearsal.command("faults")
@config_option
@json_option
@click.option("--clear", is_flag=True, help="Disarm every fault.")
def rehearsal_faults(config: Path | None, as_json: bool, clear: bool) -> None:
    """The faults still armed, oldest first (the first matching one hits next)."""
    ledger = _ledger(config)
    if clear:
        cleared = ledger.clear_faults()
        click.echo(json.dumps({"cleared": cleared}) if as_json else f"cleared {cleared} fault(s)")
        return
    faults = ledger.faults()
    if as_json:
        click.echo(json.dumps(faults, indent=2))
        return
    _table(
        faults,
        [("METHOD", "method"), ("ERROR", "error"), ("LEFT", "remaining"), ("MESSAGE", "message")],
    )


def _table(rows: list[dict[str, Any]], columns: list[tuple[str, str]]) -> None:
    if not rows:
        click.echo("(none)")
        return
    cells = [
        [str(row.get(key) if row.get(key) is not None else "-") for _, key in columns]
        for row in rows
    ]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, (h, _) in enumerate(columns)]
    click.echo("  ".join(h.ljust(w) for (h, _), w in zip(columns, widths, strict=True)).rstrip())
    for line in cells:
        click.echo("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip())


if __name__ == "__main__":
    main()
