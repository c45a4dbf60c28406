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
            ("fire", "orders", "--config", str(config)),
            "needs a value for parameter run_date; pass it in params (--param run_date=VALUE)",
        ),
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
    assert run_cli(rehearse[0], "faults", *rehearse[1:]).stdout.strip() == "(none)"


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
