"""Every example in config/ loads and validates, as users will copy them."""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.support import CONFIG_DIR, REPO
from trigger.core.settings import load_settings
from workflows.bauplan.adapter import has_project_file

EXAMPLES = sorted(CONFIG_DIR.glob("*.toml"))


def test_there_are_examples() -> None:
    assert any(p.name == "quickstart.toml" for p in EXAMPLES)


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_each_example_loads(path: Path) -> None:
    settings = load_settings(path, environ={})
    assert settings.triggers, f"{path.name} defines no triggers"


def test_the_quickstart_runs_in_rehearsal_on_sqlite_with_real_project_folders() -> None:
    settings = load_settings(CONFIG_DIR / "quickstart.toml", environ={})
    assert settings.bauplan.mode == "rehearse"
    assert not settings.is_postgres
    assert settings.state_path == CONFIG_DIR.parent / ".bauplan-trigger"
    for trig in settings.triggers:
        assert has_project_file(settings.project_path(trig)), trig.name


# -- every example passes its own check on a fresh clone ------------------------------

# Values of the right shape for the variables the examples tell a user to export.
EXAMPLE_VALUES = {
    "GITHUB_WEBHOOK_SECRET": "the-secret-typed-into-github",
    "GITLAB_WEBHOOK_TOKEN": "the-gitlab-secret-token",
    "LOADER_WEBHOOK_SECRET": "whsec_" + base64.b64encode(b"k" * 32).decode(),
    "SLACK_WEBHOOK_URL": "https://hooks.slack.com/services/T000/B000/XXXXXXXX",
    "OPS_WEBHOOK_URL": "https://ops.example.com/hooks/bauplan",
    "OPS_WEBHOOK_SECRET": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    "GITHUB_STATUS_TOKEN": "ghp_exampletoken0123456789",
}
_EXPORT = re.compile(r"^#\s*export\s+([A-Z][A-Z0-9_]*)=", re.MULTILINE)


def exported(path: Path) -> list[str]:
    """The variables an example's own comments tell the user to export."""
    return _EXPORT.findall(path.read_text())


def fresh_clone(into: Path) -> Path:
    """The repository's config/ as ``git clone`` gives it: tracked files only, so no
    state folder, no landing files, nothing a working copy picked up."""
    listed = subprocess.run(
        ["git", "-C", str(REPO), "ls-files", "-z", "--", "config"],
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    files = [name.decode() for name in listed if name]
    assert "config/quickstart.toml" in files, "config/ is not tracked by git here"
    for name in files:
        target = into / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, target)
    return into


def check_in_clone(clone: Path, name: str, env: dict[str, str]) -> Any:
    """``bauplan-trigger check --json`` run the way the example says, from the clone's
    root, with nothing of ours in the environment but ``env``."""
    base = {key: os.environ[key] for key in ("PATH", "LANG", "SYSTEMROOT") if key in os.environ}
    return subprocess.run(
        [sys.executable, "-m", "trigger.cli", "check", "--json", "--config", f"config/{name}"],
        capture_output=True,
        text=True,
        cwd=clone,
        env={**base, "HOME": str(clone.parent / "home"), **env},
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_each_example_passes_its_own_check_on_a_fresh_clone(path: Path, tmp_path: Path) -> None:
    clone = fresh_clone(tmp_path / "clone")
    env = {name: EXAMPLE_VALUES[name] for name in exported(path)}
    result = check_in_clone(clone, path.name, env)
    checks = json.loads(result.stdout)
    failures = [c for c in checks if c["status"] == "fail"]
    assert result.returncode == 0 and not failures, (failures, result.stderr)
    assert {c["status"] for c in checks} <= {"ok", "warn"}
    for value in env.values():
        assert value not in result.stdout, "check printed a secret"
    assert not (clone / ".bauplan-trigger").exists(), "check created the state folder"
    assert not (clone / "config" / ".bauplan-trigger").exists()


@pytest.mark.parametrize(
    "path", [p for p in EXAMPLES if exported(p)], ids=[p.name for p in EXAMPLES if exported(p)]
)
def test_without_the_exported_variables_check_fails_naming_each(path: Path, tmp_path: Path) -> None:
    clone = fresh_clone(tmp_path / "clone")
    result = check_in_clone(clone, path.name, {})
    assert result.returncode == 1
    failed = " ".join(c["message"] for c in json.loads(result.stdout) if c["status"] == "fail")
    for name in exported(path):
        assert f"${name}" in failed
