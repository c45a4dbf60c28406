"""What every command shares: one-line errors, ``--config`` and ``--json``, the settings,
a client on the system database, and a table."""

from __future__ import annotations

import io
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click

from trigger.core.errors import TriggerError

F = TypeVar("F", bound=Callable[..., Any])

# Where the innermost ``--config`` seen so far is kept: ``ctx.meta`` is shared by a
# command and the groups above it, and click parses the outer ones first.
_CONFIG_KEY = "bauplan_trigger.config"


class Group(click.Group):
    """Turns our errors, click's usage errors, and a system database that cannot be
    reached, into one line on stderr and exit code 1, never a traceback."""

    def make_context(
        self,
        info_name: str | None,
        args: list[str],
        parent: click.Context | None = None,
        **extra: Any,
    ) -> click.Context:
        try:
            return super().make_context(info_name, args, parent=parent, **extra)
        except click.UsageError as exc:  # a bad option of this group itself
            _usage_error(exc)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.UsageError as exc:  # an unknown command, or a bad option of one
            _usage_error(exc)
        except TriggerError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(getattr(exc, "exit_code", 1))
        except Exception as exc:
            from trigger.core import outage

            if not outage.is_unreachable(exc):
                raise
            click.echo(f"error: {outage.unreachable(exc)}", err=True)
            sys.exit(1)


def _usage_error(exc: click.UsageError) -> NoReturn:
    """Click's own words on one line, and where to look: exit 1 like every other mistake
    (click's default is 2, and its usage banner takes three lines)."""
    if isinstance(exc, click.exceptions.NoArgsIsHelpError) and exc.ctx is not None:
        click.echo(exc.ctx.get_help())  # a group named alone: its help, as asked
        sys.exit(0)
    message = " ".join(exc.format_message().split()).rstrip(".")
    where = f"{exc.ctx.command_path} --help" if exc.ctx is not None else "--help"
    click.echo(f"error: {message}; see `{where}`", err=True)
    sys.exit(1)


def _innermost_config(ctx: click.Context, _param: click.Parameter, value: Path | None) -> Any:
    if value is not None:
        ctx.meta[_CONFIG_KEY] = value
    return ctx.meta.get(_CONFIG_KEY)


def config_option(fn: F) -> F:
    """``--config FILE``, taken before or after the command's name (``bauplan-trigger
    --config x.toml runs show ID`` or ``bauplan-trigger runs show ID --config x.toml``);
    given in both places, the one nearer the end of the command's name wins."""
    option = click.option(
        "--config",
        "config",
        type=click.Path(path_type=Path, dir_okay=False),
        default=None,
        callback=_innermost_config,
        metavar="FILE",
        help="TOML config (default: $BAUPLAN_TRIGGER_CONFIG, then ./bauplan-trigger.toml). "
        "Accepted before or after the command's name; given in both places, the one "
        "after it wins.",
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
    """Rows under a header line, and nothing else on stdout: on a terminal a rich table,
    piped plain columns (no colour, no box drawing) whose first line is the header, so
    ``awk 'NR==1'`` finds it and ``awk 'NR>1'`` the rows. No rows: the header alone, and
    ``(none)`` on stderr."""
    from rich import box
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    from trigger.core.text import escaped

    tty = sys.stdout.isatty()
    grid = Table(
        box=box.SIMPLE_HEAD if tty else None,
        show_edge=False,
        pad_edge=False,
        padding=(0, 1) if tty else (0, 2, 0, 0),
        header_style="bold" if tty else "",
    )
    for header, _ in columns:
        grid.add_column(header, no_wrap=not tty, overflow="fold" if tty else "ignore")
    for row in rows:
        cells = [row.get(key) for _, key in columns]
        # Text, not markup: a value from outside may hold "[bold]" or a control character.
        grid.add_row(*(Text(escaped("-" if c is None else str(c))) for c in cells))
    if tty:
        Console(highlight=False, emoji=False).print(grid)
    else:
        out = io.StringIO()
        plain = Console(
            file=out,
            width=1_000_000,
            color_system=None,
            no_color=True,
            force_terminal=False,
            highlight=False,
            emoji=False,
        )
        plain.print(grid)
        for line in out.getvalue().splitlines():
            click.echo(line.rstrip())
    if not rows:
        click.echo("(none)", err=True)
