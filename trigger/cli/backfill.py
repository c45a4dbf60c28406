"""``backfill``: one run per tick of a schedule trigger in a range (``trigger.ops.backfill``)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from trigger.cli.common import config_option, dbos_client, json_option, settings_for, table


@click.command("backfill")
@config_option
@json_option
@click.argument("trigger_name", metavar="TRIGGER")
@click.option(
    "--from", "start", required=True, help="First tick time (ISO 8601; the trigger's zone)."
)
@click.option("--to", "end", required=True, help="Last tick time, included.")
@click.option(
    "--max", "limit", type=int, default=1000, show_default=True, help="Refuse more ticks."
)
@click.option("--dry-run", is_flag=True, help="Show what would run, enqueue nothing.")
def backfill(
    config: Path | None,
    as_json: bool,
    trigger_name: str,
    start: str,
    end: str,
    limit: int,
    dry_run: bool,
) -> None:
    """Run a schedule TRIGGER once per tick between --from and --to, as its scheduler
    would have. Ticks that already have a run (from the scheduler or an earlier backfill)
    are found, not run again, so a backfill stopped halfway can simply be repeated."""
    from trigger.ops import backfill as planner
    from workflows import sysdb
    from workflows.intake import Enqueuer

    settings = settings_for(config)
    trig = settings.trigger(trigger_name)
    ticks = planner.plan(
        trig,
        planner.parse_moment(start, trig, "--from"),
        planner.parse_moment(end, trig, "--to", end=True),
        limit,
    )
    if dry_run:
        client = dbos_client(settings) if sysdb.is_ready(settings) else None
        try:
            _show([t.as_dict() for t in planner.preview(client, trig, ticks)], as_json)
        finally:
            if client is not None:
                client.destroy()
        return
    if sysdb.ensure(settings):
        click.echo(f"note: set up the system database at {sysdb.where(settings)}", err=True)
    enqueuer = Enqueuer(settings, dbos_client(settings))
    try:
        if sys.stderr.isatty() and not as_json:
            from rich.progress import Progress

            with Progress(transient=True) as bar:
                task = bar.add_task(f"backfill {trig.name}", total=len(ticks))
                done = planner.backfill(
                    enqueuer, trig, ticks, progress=lambda tick: bar.advance(task)
                )
        else:
            done = planner.backfill(enqueuer, trig, ticks)
    finally:
        enqueuer.close()
    _show([t.as_dict() for t in done], as_json)
    new = sum(1 for t in done if t.state == "new")
    click.echo(f"{new} new run(s), {len(done) - new} already there", err=True)


def _show(rows: list[dict[str, str]], as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    table(rows, [("SCHEDULED", "scheduled_time"), ("RUN", "run_id"), ("STATE", "state")])
