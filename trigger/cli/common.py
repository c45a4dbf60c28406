"""What every command shares: one-line errors, ``--config`` and ``--json``, the settings,
a client on the system database, and a plain table."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from trigger.core.errors import TriggerError

F = TypeVar("F", bound=Callable[..., Any])


class Group(click.Group):
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


def dbos_client(settings: Any) -> Any:
    """A DBOSClient on the shared system database, or one line saying why not: on a
    state folder or database ``serve`` never ran on, there is nothing to read yet, and
    nothing is left behind (only ``fire`` sets one up, with ``sysdb.ensure``)."""
    from dbos import DBOSClient

    from workflows import sysdb

    sysdb.require(settings)
    # Fail at once when the database goes away mid-command, instead of blocking.
    return DBOSClient(system_database_url=settings.database_url(), retry_connection_errors=False)


def settings_for(config: Path | None) -> Any:
    from trigger.core import secrets
    from trigger.core.settings import load_settings

    settings = load_settings(config)
    secrets.install(settings)  # before anything can log or print a secret
    return settings


def table(rows: list[dict[str, Any]], columns: list[tuple[str, str]]) -> None:
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
