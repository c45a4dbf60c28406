"""``bauplan-trigger fire`` for every kind of trigger, as users run it (subprocesses),
and the fire commands ``serve`` suggests at start-up."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from dbos import DBOSClient

from tests.support import base_config, make_settings, run_cli, write_config
from tests.trigger.firekit import kinds, queued, settled
from tests.trigger.hookkit import make_repo
from trigger.cli.fire import suggestion


def _triggers(tmp_path: Path, project_dir: Path, landing: Path) -> list[dict[str, Any]]:
    backfill = {
        "name": "backfill",
        "project_dir": str(project_dir),
        "branch": "backfill_{run_date}",
        "inputs": ["run_date"],
    }
    return [*kinds(project_dir, landing, tmp_path / "upstream"), backfill]


def _setup(tmp_path: Path, project_dir: Path, landing: Path, backend: str | None) -> Any:
    shas = make_repo(tmp_path / "upstream")
    triggers = _triggers(tmp_path, project_dir, landing)
    config = write_config(
        tmp_path / "bauplan-trigger.toml", base_config(tmp_path, project_dir, triggers=triggers)
    )
    env = {"DBOS_SYSTEM_DATABASE_URL": backend} if backend else {}

    def cli(*args: str) -> Any:
        return run_cli("fire", *args, "--config", str(config), env=env, cwd=tmp_path)

    return cli, make_settings(tmp_path, backend, project_dir, triggers=triggers), shas


def test_fire_runs_each_kind_now_with_the_values_its_source_gives(
    tmp_path: Path, project_dir: Path, landing: Path, backend: str | None
) -> None:
    cli, settings, (_, new) = _setup(tmp_path, project_dir, landing, backend)
    settled(landing / "orders.csv")
    nightly = cli("nightly")
    landed = cli("landing", "--file", "landing/orders.csv")  # from the shell's folder
    again = cli("landing", "--file", str(landing / "orders.csv"))
    pushed = cli("orders", "--sha", new, "--branch", "main", "--json")
    for result in (nightly, landed, again, pushed):
        assert result.returncode == 0, result.stderr
    assert again.stdout.strip() == (
        f"{landed.stdout.strip()} (already exists: this file version was fired before)"
    )
    client = DBOSClient(system_database_url=settings.database_url())
    try:
        tick = queued(client, nightly.stdout.strip())
        dropped = queued(client, landed.stdout.strip())
        push = queued(client, json.loads(pushed.stdout)["id"])
    finally:
        client.destroy()
    assert tick.event_kind == "schedule" and str(tick.parameters["at"])[:4].isdigit()
    assert dropped.parameters["source_file"] == str(landing / "orders.csv")
    assert push.parameters == {"sha": new, "short": new[:7], "repo": "acme/lakehouse"}
    assert (push.branch_suffix, push.git_sha) == ("orders_main", new)


def test_a_fire_that_cannot_run_says_why_and_the_flags_that_would(
    tmp_path: Path, project_dir: Path, landing: Path
) -> None:
    cli, _, (_, new) = _setup(tmp_path, project_dir, landing, None)
    settled(landing / "notes.txt")
    cases = [
        (
            ("orders",),
            "trigger 'orders' runs pipelines/orders of github pushes to acme/lakehouse; "
            "fire it with --sha SHA --branch B",
        ),
        (("landing",), "file_size, file_stem; fire it with --file PATH"),
        (
            ("landing", "--file", str(landing / "notes.txt")),
            f"file {landing / 'notes.txt'} does not match files.patterns (*.csv)",
        ),
        (("orders", "--sha", "abc"), "commit 'abc' is not a 40-character hex sha"),
        (
            ("orders", "--sha", new),
            "trigger 'orders' uses git_branch in its templates; fire it with --branch B",
        ),
        (("hooked",), "cannot be fired by hand: its templates use body_day"),
        (
            ("backfill",),
            "trigger 'backfill' needs a value for its inputs: run_date; "
            "fire it with --param run_date=VALUE",
        ),
    ]
    for args, words in cases:
        result = cli(*args)
        assert result.returncode == 1, (args, result.stdout, result.stderr)
        # One line, after the note of the first command that set the database up.
        [said] = [line for line in result.stderr.splitlines() if not line.startswith("note:")]
        assert said.startswith("error: ") and words in said, (args, result.stderr)


def test_serve_suggests_only_fire_commands_that_work_for_each_kind(
    tmp_path: Path, project_dir: Path, landing: Path
) -> None:
    settings = make_settings(
        tmp_path, None, project_dir, triggers=_triggers(tmp_path, project_dir, landing)
    )
    at = f"--config {settings.config_path}"
    said = {t.name: suggestion(settings, t) for t in settings.triggers}
    assert said["nightly"] == (f"bauplan-trigger fire nightly {at} --wait", "")
    assert said["landing"] == (f"bauplan-trigger fire landing {at} --file PATH --wait", "")
    assert said["orders"] == (f"bauplan-trigger fire orders {at} --sha SHA --branch B --wait", "")
    assert said["pushed"] == (f"bauplan-trigger fire pushed {at} --sha SHA [--branch B] --wait", "")
    assert said["backfill"] == (
        f"bauplan-trigger fire backfill {at} --param run_date=... --wait",
        "",
    )
    command, why = said["hooked"]
    assert command is None and why.startswith("trigger 'hooked' cannot be fired by hand")
