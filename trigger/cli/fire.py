"""``fire``: run a trigger now (any kind), and with ``--wait`` follow it to its end."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click

from trigger.cli.common import config_option, dbos_client, json_option, settings_for
from trigger.core.errors import FireError, TriggerError
from trigger.core.settings import Settings, TriggerConfig
from trigger.ops.follow import DEFAULT_TIMEOUT


@click.command()
@config_option
@click.argument("trigger_name", metavar="TRIGGER")
@click.option("--param", "params", multiple=True, metavar="NAME=VALUE", help="A declared input.")
@click.option("--file", "file", default=None, metavar="PATH", help="File trigger: run this file.")
@click.option("--sha", default=None, metavar="SHA", help="Git trigger: run this commit.")
@click.option("--branch", default=None, metavar="B", help="With --sha: the commit's branch.")
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
    file: str | None,
    sha: str | None,
    branch: str | None,
    event_id: str | None,
    wait: bool,
    timeout: float,
    as_json: bool,
) -> None:
    """Run TRIGGER now, through the running service's queue.

    A schedule trigger runs as a tick of this second; a file trigger needs --file, a
    git trigger --sha (and --branch), and they run as that file or push would."""
    from pydantic import ValidationError

    from trigger.core.matching import parse_params
    from trigger.ops.follow import follow
    from trigger.sources.manual import Fire, prepare
    from trigger.sources.manual import fire as fire_now
    from workflows import sysdb, workers
    from workflows.intake import Enqueuer

    settings = settings_for(config)
    trig = settings.trigger(trigger_name)
    try:
        request = Fire(
            trig.name,
            params=parse_params(trig, list(params)),
            event_id=event_id,
            # The shell's folder, not the watched dir, is where a relative path starts here.
            file=os.path.abspath(file) if file is not None else None,
            sha=sha,
            branch=branch,
        )
        # Every check before the database is touched: a mistake leaves nothing behind.
        ready = prepare(settings, request)
    except FireError as exc:
        raise TriggerError(cli_message(exc)) from None
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
        try:
            fired = fire_now(enqueuer, ready, source_addr="cli")
        except FireError as exc:
            raise TriggerError(cli_message(exc)) from None
        enqueued = fired.run
        if not as_json:
            note = f" (already exists: {_seen(fired.event.kind)} was fired before)"
            click.echo(f"{enqueued.run_id}{note if enqueued.duplicate else ''}")
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


# The fields a FireError names, as this command's flags.
_FLAGS = {"file": "--file PATH", "sha": "--sha SHA", "branch": "--branch B"}


def flag(name: str) -> str:
    kind, _, input_name = name.partition(":")
    return f"--param {input_name}=VALUE" if kind == "param" else _FLAGS[name]


def cli_message(exc: FireError) -> str:
    """The error in this command's words: its fix names flags, not request fields."""
    return exc.worded(flag, "fire it with ", " [{}]", " ")


def suggestion(settings: Settings, trig: TriggerConfig) -> tuple[str | None, str]:
    """The ``fire`` command that runs ``trig`` as its own source would (None, and why,
    when no fire can run it)."""
    from trigger.sources.manual import plain_refusal

    where = f" --config {settings.config_path}" if settings.config_path else ""
    params = "".join(f" --param {name}=..." for name in trig.inputs)
    refusal = plain_refusal(trig)
    if trig.files is not None and (refusal is None or refusal.needs):
        extra = " --file PATH"
    elif (trig.github or trig.gitlab) is not None and (refusal is None or refusal.needs):
        needs_branch = refusal is not None and "branch" in refusal.needs
        extra = " --sha SHA --branch B" if needs_branch else " --sha SHA [--branch B]"
    elif refusal is not None:
        return None, cli_message(refusal)
    else:
        extra = ""
    return f"bauplan-trigger fire {trig.name}{where}{params}{extra} --wait", ""


def _seen(kind: str) -> str:
    return {"files": "this file version", "github": "this commit", "gitlab": "this commit"}.get(
        kind, "this event id"
    )


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
