"""``bauplan-trigger check``: a table or ``--json``, exit 1 on any failed check only."""

from __future__ import annotations

import json
from pathlib import Path

from tests.support import base_config, run_cli, write_config


def _config(tmp_path: Path, project_dir: Path, **notifier: str) -> Path:
    data = base_config(tmp_path, project_dir)
    data["notifiers"] = {"alerts": {"kind": "slack", "url_env": "CK_SLACK_URL", **notifier}}
    data["triggers"][0]["notify"] = ["alerts"]
    return write_config(tmp_path / "bauplan-trigger.toml", data)


def test_json_lists_every_check_and_exit_0_when_none_failed(
    tmp_path: Path, project_dir: Path
) -> None:
    config = _config(tmp_path, project_dir)
    env = {"CK_SLACK_URL": "https://hooks.slack.com/services/T0/B0/hushhush"}
    result = run_cli("check", "--json", "--config", str(config), env=env)
    assert result.returncode == 0, result.stderr
    checks = json.loads(result.stdout)
    assert [set(c) for c in checks] == [{"name", "status", "message"}] * len(checks)
    by_name = {c["name"]: c for c in checks}
    assert by_name["notifier slack:alerts"]["status"] == "ok"
    assert {c["status"] for c in checks} == {"ok"}
    assert "hushhush" not in result.stdout + result.stderr


def test_a_warning_alone_exits_0_and_a_failure_exits_1(tmp_path: Path, project_dir: Path) -> None:
    config = _config(tmp_path, project_dir)
    warned = run_cli(
        "check", "--config", str(config), env={"CK_SLACK_URL": "http://hooks.example.com/hush"}
    )
    assert warned.returncode == 0, warned.stdout
    assert "WARN" in warned.stdout and "cross the network in clear" in warned.stdout

    failed = run_cli("check", "--json", "--config", str(config))
    assert failed.returncode == 1
    [bad] = [c for c in json.loads(failed.stdout) if c["status"] == "fail"]
    assert bad == {
        "name": "notifier slack:alerts",
        "status": "fail",
        "message": "$CK_SLACK_URL (url_env) is not set; nothing can be sent",
    }
    table = run_cli("check", "--config", str(config))
    assert table.returncode == 1
    assert table.stdout.splitlines()[0].split() == ["CHECK", "STATUS", "MESSAGE"]
    assert "FAIL" in table.stdout and "error: some checks failed" in table.stderr


def test_a_config_that_does_not_load_is_one_failed_check_in_json(tmp_path: Path) -> None:
    result = run_cli("check", "--json", "--config", str(tmp_path / "missing.toml"))
    assert result.returncode == 1
    [only] = json.loads(result.stdout)
    assert only["name"] == "config" and only["status"] == "fail"
    assert "file not found" in only["message"]
