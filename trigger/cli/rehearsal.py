"""``rehearsal``: rehearsal mode's ledger of jobs and merges, and the faults it can be
told to raise."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from trigger.cli.common import Group, config_option, json_option, settings_for, table


@click.group(cls=Group)
@config_option
def rehearsal(config: Path | None) -> None:
    """Inspect rehearsal mode's job ledger; rehearse Bauplan outages and worker crashes."""


@rehearsal.command("jobs")
@config_option
@json_option
def rehearsal_jobs(config: Path | None, as_json: bool) -> None:
    """Every submission rehearsal mode recorded instead of sending to Bauplan."""
    from workflows.bauplan.rehearsal import Ledger
    from workflows.runtime import ledger_path

    settings = settings_for(config)
    path = ledger_path(settings)
    jobs = Ledger(path).jobs() if path.exists() else []
    public = [{k: v for k, v in job.items() if not k.endswith("_ts")} for job in jobs]
    if as_json:
        click.echo(json.dumps(public, indent=2))
        return
    table(
        public,
        [
            ("JOB", "job_id"),
            ("REF", "ref"),
            ("STATUS", "status"),
            ("SUBMITTED", "submitted_at"),
            ("PROJECT", "project_dir"),
        ],
    )


@rehearsal.command("merges")
@config_option
@json_option
def rehearsal_merges(config: Path | None, as_json: bool) -> None:
    """Every merge rehearsal mode recorded: what publishing runs merged, and into what."""
    from workflows.bauplan.rehearsal import Ledger
    from workflows.bauplan.rehearsal_refs import merges
    from workflows.runtime import ledger_path

    path = ledger_path(settings_for(config))
    found = merges(Ledger(path)) if path.exists() else []
    if as_json:
        click.echo(json.dumps(found, indent=2))
        return
    rows = [{**m, "run": m["properties"].get("bauplan_trigger_run", "-")} for m in found]
    table(
        rows,
        [
            ("INTO", "into_branch"),
            ("FROM", "source_ref"),
            ("RUN", "run"),
            ("MERGED", "merged_at"),
        ],
    )


def _ledger(config: Path | None) -> Any:
    """The rehearsal ledger ``serve`` uses with this config; refused in live mode."""
    from trigger.core.errors import RehearsalFaultError
    from workflows.runtime import rehearsal_ledger

    settings = settings_for(config)
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
    table(
        faults,
        [("METHOD", "method"), ("ERROR", "error"), ("LEFT", "remaining"), ("MESSAGE", "message")],
    )
