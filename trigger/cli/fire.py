"""``fire``: enqueue a manual run, and with ``--wait`` follow it to its end."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click

from trigger.cli.common import config_option, dbos_client, json_option, settings_for
from trigger.core.errors import BadParameterError, TriggerError
from trigger.ops.follow import DEFAULT_TIMEOUT


@click.command()
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
    from workflows.intake import Enqueuer

    settings = settings_for(config)
    trig = settings.trigger(trigger_name)
    try:
        inputs = parse_params(trig, list(params))
    except BadParameterError as exc:
        if not exc.missing:
            raise
        flags = " ".join(f"--param {name}=VALUE" for name in exc.missing)
        raise TriggerError(f"{exc} ({flags})") from None
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
    enqueuer = Enqueuer(settings, dbos_client(settings))
    try:
        enqueued = fire_event(enqueuer, event, source_addr="cli")
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
