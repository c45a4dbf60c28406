"""The CLI as users run it: real subprocesses against a real ``serve``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.support import base_config, run_cli, write_config

RUN_KEYS = {
    "id",
    "trigger",
    "event_id",
    "status",
    "branch",
    "job_id",
    "created_at",
    "updated_at",
    "error",
}


def _config(tmp_path: Path, project_dir: Path) -> Path:
    config = base_config(tmp_path, project_dir)
    config["triggers"].append(
        {
            "name": "broken",
            "project_dir": str(project_dir),
            "branch": "broken",
            "rehearse_outcome": "fail",
        }
    )
    return write_config(tmp_path / "bauplan-trigger.toml", config)


def _env(backend: str | None) -> dict[str, str]:
    return {"DBOS_SYSTEM_DATABASE_URL": backend} if backend else {}


def test_fire_reaches_serve_and_wait_reports_the_outcome(
    tmp_path: Path, project_dir: Path, backend: str | None, serve_process: Any
) -> None:
    config = _config(tmp_path, project_dir)
    env = _env(backend)
    serve_process(config, env)

    fire = ("fire", "orders", "--config", str(config), "--param", "run_date=2026-11-23")
    ok = run_cli(*fire, "--event-id", "cli-1", "--wait", env=env)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.splitlines()[0] == "run:orders:cli-1"
    assert "succeeded branch=rehearsal.orders_2026_11_23" in ok.stdout

    again = run_cli(*fire, "--event-id", "cli-1", env=env)
    assert again.returncode == 0
    assert "already exists" in again.stdout

    bad = run_cli("fire", "broken", "--config", str(config), "--wait", "--json", env=env)
    assert bad.returncode == 1
    failed = json.loads(bad.stdout[bad.stdout.index("{") :])
    assert failed["status"] == "failed" and "told to fail" in failed["error"]

    listed = run_cli("runs", "--config", str(config), "--json", env=env)
    runs = json.loads(listed.stdout)
    assert {r["id"] for r in runs} == {"run:orders:cli-1", failed["id"]}
    assert all(set(r) >= RUN_KEYS for r in runs)
    only_failed = json.loads(
        run_cli("runs", "--config", str(config), "--json", "--status", "failed", env=env).stdout
    )
    assert [r["trigger"] for r in only_failed] == ["broken"]

    shown = json.loads(
        run_cli(
            "runs", "show", "run:orders:cli-1", "--config", str(config), "--json", env=env
        ).stdout
    )
    assert shown["parameters"] == {"run_date": "2026-11-23", "source": "fire"}

    jobs = json.loads(
        run_cli("rehearsal", "jobs", "--config", str(config), "--json", env=env).stdout
    )
    assert len(jobs) == 2
    assert {j["ref"] for j in jobs} == {"rehearsal.orders_2026_11_23", "rehearsal.broken"}


def test_user_mistakes_are_one_line_and_exit_1(tmp_path: Path, project_dir: Path) -> None:
    config = _config(tmp_path, project_dir)
    cases = [
        (("fire", "nope", "--config", str(config)), "no trigger named 'nope'"),
        (("fire", "orders", "--config", str(config), "--param", "x=1"), "does not declare it"),
        (
            (
                "fire",
                "orders",
                "--config",
                str(config),
                "--param",
                "run_date=1",
                "--event-id",
                "-x",
            ),
            "not a valid event id",
        ),
        (("runs", "show", "run:nope:1", "--config", str(config)), "no system database at"),
        (("runs", "--config", str(tmp_path / "missing.toml")), "file not found"),
    ]
    for args, needle in cases:
        result = run_cli(*args)
        assert result.returncode == 1, (args, result.stdout, result.stderr)
        assert needle in result.stderr, (args, result.stderr)
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert "Traceback" not in result.stderr


def test_check_reports_each_problem(tmp_path: Path, project_dir: Path) -> None:
    config = _config(tmp_path, project_dir)
    good = run_cli("check", "--config", str(config))
    assert good.returncode == 0, good.stdout
    assert "rehearsal mode as rehearsal" in good.stdout

    data = base_config(tmp_path, project_dir)
    data["triggers"][0]["project_dir"] = str(tmp_path / "nowhere")
    data["bauplan"]["mode"] = "live"
    bad = run_cli("check", "--config", str(write_config(tmp_path / "bad.toml", data)))
    assert bad.returncode == 1
    assert "no Bauplan API key found" in bad.stdout
    assert "has no bauplan_project.yml" in bad.stdout


def test_rehearsal_faults_are_armed_listed_and_cleared_from_the_command_line(
    tmp_path: Path, project_dir: Path
) -> None:
    import bauplan.exceptions
    import pytest

    from workflows.bauplan.rehearsal import Ledger, RehearsalClient

    config = _config(tmp_path, project_dir)
    rehearse = ("rehearsal", "--config", str(config))
    armed = run_cli(
        "rehearsal", "fault", "run", "TooManyRequestsError", "--count", "2",
        "--message", "slow down", "--config", str(config),
    )  # fmt: skip
    assert armed.returncode == 0, armed.stderr
    assert (
        armed.stdout.strip()
        == "armed: the next 2 calls of run raise TooManyRequestsError: slow down"
    )
    crash = run_cli("rehearsal", "fault", "step:wait", "EXIT_AFTER", "--config", str(config))
    assert "worker exits right after step 'wait' is checkpointed" in crash.stdout

    # What serve would meet: the SDK's own exception, twice.
    client = RehearsalClient(Ledger(tmp_path / "state" / "rehearsal.sqlite"))
    with pytest.raises(bauplan.exceptions.TooManyRequestsError, match="slow down"):
        client.run(project_dir=str(project_dir), ref="rehearsal.x", detach=True)
    listed = json.loads(run_cli(rehearse[0], "faults", *rehearse[1:], "--json").stdout)
    assert [(f["method"], f["error"], f["remaining"]) for f in listed] == [
        ("run", "TooManyRequestsError", 1),
        ("step:wait", "EXIT_AFTER", 1),
    ]

    wrong = run_cli("rehearsal", "fault", "runn", "EXIT_AFTER", "--config", str(config))
    assert wrong.returncode == 1 and "Traceback" not in wrong.stderr
    assert wrong.stderr.startswith("error: no rehearsed Bauplan method named 'runn'; use one of")
    assert len(wrong.stderr.strip().splitlines()) == 1

    cleared = run_cli(rehearse[0], "faults", *rehearse[1:], "--clear")
    assert cleared.stdout.strip() == "cleared 2 fault(s)"
    disarmed = run_cli(rehearse[0], "faults", *rehearse[1:])
    assert disarmed.stdout.split() == ["METHOD", "ERROR", "LEFT", "MESSAGE"]
    assert disarmed.stderr.strip() == "(none)"


def test_a_state_folder_serve_never_ran_on(
    tmp_path: Path, project_dir: Path, backend: str | None, serve_process: Any
) -> None:
    config = _config(tmp_path, project_dir)
    env = _env(backend)

    def cli(*args: str) -> Any:
        return run_cli(*args, "--config", str(config), env=env)

    for args in (("runs",), ("explain", "x")):
        result = cli(*args)
        assert result.returncode == 1, (args, result)
        assert result.stderr.startswith("error: no system database at "), (args, result.stderr)
        assert len(result.stderr.splitlines()) == 1, (args, result.stderr)
    assert not (tmp_path / "state").exists()  # reading left nothing behind, not even a file

    fired = cli("fire", "orders", "--param", "run_date=d", "--event-id", "fresh-1")
    assert fired.returncode == 0, fired.stderr
    assert fired.stdout.strip() == "run:orders:fresh-1"
    assert "note: set up the system database at " in fired.stderr
    assert "warning: no worker has ever run on this system database" in fired.stderr
    waiting = json.loads(cli("runs", "show", "run:orders:fresh-1", "--json").stdout)
    assert waiting["status"] == "waiting"
    assert "no worker has ever run on this system database" in waiting["waiting_reason"]

    serve_process(config, env)
    ended = cli("fire", "orders", "--param", "run_date=d", "--event-id", "fresh-1", "--wait")
    assert ended.returncode == 0, ended.stderr
    assert "already exists" in ended.stdout and "succeeded" in ended.stdout


def test_config_is_taken_before_or_after_the_command_name_and_the_one_after_wins(
    tmp_path: Path, project_dir: Path
) -> None:
    rehearse = str(_config(tmp_path, project_dir))
    data = base_config(tmp_path, project_dir)
    data["bauplan"]["mode"] = "live"
    live = str(write_config(tmp_path / "live.toml", data))
    refused = "faults are rehearsed only in rehearsal mode"

    for args in (
        ("--config", rehearse, "rehearsal", "faults", "--json"),
        ("rehearsal", "--config", rehearse, "faults", "--json"),
        ("rehearsal", "faults", "--json", "--config", rehearse),
        ("--config", live, "rehearsal", "faults", "--config", rehearse, "--json"),
        ("rehearsal", "--config", live, "faults", "--config", rehearse, "--json"),
    ):
        result = run_cli(*args)
        assert result.returncode == 0, (args, result.stderr)
        assert json.loads(result.stdout) == [], args
    for args in (
        ("--config", rehearse, "rehearsal", "faults", "--config", live),
        ("--config", live, "rehearsal", "faults"),
    ):
        result = run_cli(*args)
        assert result.returncode == 1 and refused in result.stderr, (args, result.stderr)

    # Down a nested group: the config given before `runs` reaches `runs show`.
    missing = run_cli("--config", "missing.toml", "runs", "show", "run:x:1", cwd=tmp_path)
    assert missing.returncode == 1 and "missing.toml" in missing.stderr, missing.stderr
    assert "file not found" in missing.stderr
    unread = run_cli("--config", rehearse, "runs", "show", "run:x:1")
    assert unread.stderr.startswith("error: no system database at "), unread.stderr
    assert "--config" in run_cli("--help").stdout
    assert "the one after it wins" in " ".join(run_cli("runs", "show", "--help").stdout.split())


def test_usage_errors_are_one_line_naming_the_bad_value_and_exit_1(
    tmp_path: Path, project_dir: Path
) -> None:
    config = str(_config(tmp_path, project_dir))
    cases = [
        (("runs", "--bogus"), "--bogus", "bauplan-trigger runs --help"),
        (("runs", "show", "--config", config), "RUN_ID", "bauplan-trigger runs show --help"),
        (("runs", "--status", "nope"), "'nope'", "bauplan-trigger runs --help"),
        (("nosuch",), "'nosuch'", "bauplan-trigger --help"),
        (("--bogus", "runs"), "--bogus", "bauplan-trigger --help"),
        (("fire", "orders", "--timeout", "soon"), "'soon'", "bauplan-trigger fire --help"),
        (("rehearsal", "jobs", "--limit", "3"), "--limit", "bauplan-trigger rehearsal jobs --help"),
    ]
    for args, bad, fix in cases:
        result = run_cli(*args)
        assert result.returncode == 1, (args, result.returncode, result.stderr)
        assert result.stdout == "", (args, result.stdout)
        [line] = result.stderr.splitlines()
        assert line.startswith("error: ") and bad in line and f"see `{fix}`" in line, line
    for group in ((), ("rehearsal",)):  # a group named alone is asked for its help
        helped = run_cli(*group)
        assert helped.returncode == 0 and helped.stdout.startswith("Usage: "), helped


def _schedule_config(tmp_path: Path, project_dir: Path) -> Path:
    config = base_config(tmp_path, project_dir)
    config["triggers"].append(
        {
            "name": "nightly",
            "project_dir": str(project_dir),
            "branch": "nightly",
            "schedule": {"cron": "0 2 * * *"},
        }
    )
    return write_config(tmp_path / "bauplan-trigger.toml", config)


def test_a_piped_table_is_plain_its_header_first_and_alone_on_stdout(
    tmp_path: Path, project_dir: Path
) -> None:
    config = str(_schedule_config(tmp_path, project_dir))
    for n in (1, 2):
        fired = run_cli("fire", "orders", "--config", config, "--param", f"run_date=d{n}")
        assert fired.returncode == 0, fired.stderr
    listed = run_cli("runs", "--config", config)
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert lines[0].split() == ["ID", "TRIGGER", "STATUS", "BRANCH", "JOB", "CREATED"]
    assert len(lines) == 3 and all(line.split()[2] == "waiting" for line in lines[1:])
    assert "\x1b" not in listed.stdout and not set(listed.stdout) & set("─━│┃┏┡╇")
    # Aligned: each column starts where its header does.
    status_at = lines[0].index("STATUS")
    assert all(line[status_at:].startswith("waiting") for line in lines[1:])
    # Notes go to stderr, never above the table.
    assert "schedule nightly: cron '0 2 * * *' UTC" in listed.stderr

    nothing = run_cli("runs", "--config", config, "--status", "failed")
    assert nothing.stdout.split() == ["ID", "TRIGGER", "STATUS", "BRANCH", "JOB", "CREATED"]
    assert "(none)" in nothing.stderr


def test_a_table_on_a_terminal_is_drawn_by_rich(tmp_path: Path, project_dir: Path) -> None:
    import os
    import pty
    import subprocess
    import sys

    from tests.support import cli_env

    config = str(_config(tmp_path, project_dir))
    leader, follower = pty.openpty()
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "trigger.cli", "rehearsal", "faults", "--config", config],
            stdout=follower,
            stderr=subprocess.PIPE,
            env={**cli_env(), "COLUMNS": "120", "TERM": "xterm"},
            timeout=120,
            check=False,
        )
        os.close(follower)
        follower = -1
        out = b""
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # the terminal's other end is closed: all of it was read
                break
            if not chunk:
                break
            out += chunk
    finally:
        if follower != -1:
            os.close(follower)
        os.close(leader)
    assert proc.returncode == 0, proc.stderr
    shown = out.decode()
    assert "METHOD" in shown and "─" in shown  # the header and rich's rule under it
