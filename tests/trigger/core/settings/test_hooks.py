"""The webhook config sections: the example files load, and bad values say what to fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support import CONFIG_DIR
from trigger.core.errors import ConfigError
from trigger.core.settings import build_settings, load_settings

CONFIG = CONFIG_DIR


@pytest.mark.parametrize("name", ["github-push.toml", "gitlab-generic.toml"])
def test_the_example_files_load(name: str) -> None:
    settings = load_settings(CONFIG / name, environ={})
    kinds = {kind for trig in settings.triggers for kind in trig.sources()}
    assert kinds & {"github", "gitlab", "generic"}


def _trigger(**extra: object) -> dict[str, object]:
    return {"name": "t", "project_dir": "p", "branch": "b", **extra}


@pytest.mark.parametrize(
    ("trigger", "message"),
    [
        (_trigger(github={"repo": "nope", "secret_env": "S"}), "owner/name"),
        (_trigger(github={"repo": "a/b", "secret_env": "not a name"}), "environment variable"),
        (_trigger(github={"repo": "a/b", "secret_env": "S", "source": "--upload-pack=x"}), "'-'"),
        (
            _trigger(project_dir="/abs", github={"repo": "a/b", "secret_env": "S", "source": "."}),
            "inside the repository",
        ),
        (_trigger(generic={"secret_env": "S", "fields": {"Bad-Key": "string"}}), "lower-case"),
        (_trigger(generic={"secret_env": "S", "optional": ["x"]}), "not in fields"),
        (_trigger(branch="{body_x}", generic={"secret_env": "S"}), "body_x"),
    ],
)
def test_bad_sections_are_config_errors(trigger: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        build_settings({"triggers": [trigger]}, environ={})


def test_body_fields_are_template_fields() -> None:
    trig = _trigger(
        branch="load_{body_table}", generic={"secret_env": "S", "fields": {"table": "string"}}
    )
    settings = build_settings({"triggers": [trig]}, environ={})
    assert "body_table" in settings.triggers[0].allowed_fields()


def test_check_names_an_unset_secret_variable(
    tmp_path: Path, project_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.support import make_settings
    from tests.trigger.hookkit import github_trigger
    from trigger.ops.checks import failed, run_checks

    settings = make_settings(tmp_path, None, project_dir, triggers=[github_trigger(project_dir)])
    checks = run_checks(settings)
    assert not failed(checks), checks
    monkeypatch.delenv("GITHUB_WEBHOOK_SECRET")
    checks = run_checks(settings)
    [check] = [c for c in checks if c.name == "trigger orders secret"]
    assert failed(checks) and check.status == "fail" and "$GITHUB_WEBHOOK_SECRET" in check.message
