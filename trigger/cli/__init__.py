"""The ``bauplan-trigger`` command: parse, call, print. User mistakes are one line, exit 1.

``main`` is the group (the entry point ``trigger.cli:main``); each module holds a few
commands and ``main`` lists them here: ``ops`` (serve, explain, check, notify-test,
recover), ``fire``, ``runs`` and ``rehearsal``. ``common`` is what they share and
``logs`` the log set-up ``serve`` installs.
"""

from __future__ import annotations

from pathlib import Path

import click

from trigger.cli import fire, ops, rehearsal, runs
from trigger.cli.common import Group, config_option

__all__ = ["main"]


@click.group(cls=Group)
@click.version_option(package_name="bauplan-trigger")
@config_option
@click.pass_context
def main(ctx: click.Context, config: Path | None) -> None:
    """Durable run triggers for Bauplan pipelines.

    Every command takes --config FILE, before or after its name; given in both
    places, the one after the command's name wins. Every mistake is one line on
    stderr and exit code 1."""
    if ctx.invoked_subcommand != "serve":  # serve logs an outage its own way
        import logging

        from trigger.core.outage import DropUnreachable

        # A command's one error line says the database cannot be reached; DBOS's
        # logger would say it first, in three lines.
        logging.getLogger("dbos").addFilter(DropUnreachable())


for command in (
    ops.serve,
    fire.fire,
    runs.runs,
    ops.explain,
    ops.check,
    ops.notify_test,
    ops.recover,
    rehearsal.rehearsal,
):
    main.add_command(command)
