"""``check`` tells the truth: about the system database (finding out creates nothing),
git-sourced project folders, webhook secrets and every notifier's variables."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from tests.support import make_settings
from tests.trigger.hookkit import generic_trigger, git, github_trigger, make_repo
from trigger.ops.checks import Check, run_checks
from workflows.app import prepare_database
from workflows.sysdb import is_ready


def _database_row(settings: Any) -> dict[str, Any]:
    return next(c.as_dict() for c in run_checks(settings) if c.name == "system database")


def test_a_database_never_set_up_is_reported_as_such_until_it_is(
    tmp_path: Path, backend: str | None, project_dir: Path
) -> None:
    settings = make_settings(tmp_path, backend, project_dir)
    row = _database_row(settings)
    assert row["status"] == "ok"
    assert row["message"].endswith("is not set up yet; `serve` (or the first `fire`) sets it up")
    assert not settings.state_path.exists()
    prepare_database(settings)
    assert _database_row(settings)["message"].endswith("is set up and answers")


@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
def test_a_postgresql_database_that_does_not_exist_is_not_created_by_asking(
    tmp_path: Path, backend: str, project_dir: Path
) -> None:
    absent = f"{backend}_absent"
    settings = make_settings(tmp_path, absent, project_dir)
    assert "is not set up yet" in _database_row(settings)["message"]
    assert is_ready(settings) is False
    admin = sa.create_engine(sa.make_url(backend).set(database="postgres"))
    try:
        with admin.connect() as conn:
            found = conn.execute(
                sa.text("SELECT 1 FROM pg_database WHERE datname = :name"),
                {"name": sa.make_url(absent).database},
            ).first()
    finally:
        admin.dispose()
    assert found is None


def test_a_database_that_cannot_be_reached_fails_with_the_drivers_words(
    tmp_path: Path, project_dir: Path
) -> None:
    settings = make_settings(tmp_path, "postgresql://postgres@127.0.0.1:9/nowhere", project_dir)
    row = _database_row(settings)
    assert row["status"] == "fail"
    assert row["message"].startswith(
        'cannot reach the system database (connection to server at "127.0.0.1", port 9 '
        "failed: Connection refused)"
    )


def test_a_file_that_is_not_a_database_fails(tmp_path: Path, project_dir: Path) -> None:
    settings = make_settings(tmp_path, None, project_dir)
    settings.state_path.mkdir()
    (settings.state_path / "dbos.sqlite").write_text("not a database\n" * 100)
    row = _database_row(settings)
    assert row["status"] == "fail"
    assert "dbos.sqlite is not an SQLite database: move it away" in row["message"]


# -- triggers with a git source -------------------------------------------------------


def _trigger_check(settings: Any, name: str = "trigger orders") -> Check:
    [found] = [c for c in run_checks(settings) if c.name == name]
    return found


def _git_settings(tmp_path: Path, project_dir: Path, source: str, **rules: Any) -> Any:
    trig = github_trigger(project_dir, source=source, **rules)
    trig["project_dir"] = "pipelines/orders"  # inside the repository
    return make_settings(tmp_path, None, project_dir, triggers=[trig])


def test_a_remote_git_source_is_not_looked_for_on_local_disk(
    tmp_path: Path, project_dir: Path
) -> None:
    settings = _git_settings(tmp_path, project_dir, "https://github.com/acme/lakehouse.git")
    assert not (tmp_path / "pipelines" / "orders" / "x").exists()
    check = _trigger_check(settings)
    assert check.status == "ok"
    assert check.message == (
        "https://github.com/acme/lakehouse.git is a remote repository: pipelines/orders "
        "is checked at run time, in the pushed commit"
    )
    assert (
        _trigger_check(_git_settings(tmp_path, project_dir, "git@github.com:a/b.git")).status
        == "ok"
    )


def test_a_source_url_that_git_cannot_use_fails(tmp_path: Path, project_dir: Path) -> None:
    check = _trigger_check(_git_settings(tmp_path, project_dir, "mailto://nobody"))
    assert check.status == "fail" and "is not a clone URL git can use" in check.message


def test_credentials_in_a_source_url_warn_without_being_shown(
    tmp_path: Path, project_dir: Path
) -> None:
    url = "https://bot:ghp_tokenSECRET123@github.com/acme/lakehouse.git"
    check = _trigger_check(_git_settings(tmp_path, project_dir, url))
    assert check.status == "warn" and "holds credentials" in check.message
    assert "ghp_tokenSECRET123" not in check.message and "bot" not in check.message


def test_a_local_source_is_checked_at_each_ref_the_trigger_runs_on(
    tmp_path: Path, project_dir: Path
) -> None:
    repo = tmp_path / "lakehouse"
    make_repo(repo)
    git(repo, "branch", "release/1")
    check = _trigger_check(_git_settings(tmp_path, project_dir, str(repo)))
    assert check.status == "ok"
    assert (
        check.message == f"pipelines/orders holds bauplan_project.yml at main, release/1 of {repo}"
    )

    git(repo, "switch", "-q", "-c", "release/2")
    git(repo, "rm", "-q", "-r", "pipelines")
    git(repo, "commit", "-q", "-m", "drop the project")
    check = _trigger_check(_git_settings(tmp_path, project_dir, str(repo), branches=["release/*"]))
    assert check.status == "fail"
    assert check.message.startswith(
        f"pipelines/orders has no bauplan_project.yml at release/2 of {repo}"
    )

    only_tags = _git_settings(tmp_path, project_dir, str(repo), branches=["nothing"], tags=["v*"])
    check = _trigger_check(only_tags)
    assert check.status == "warn"
    assert "no branch or tag of" in check.message and "checked at run time" in check.message
    git(repo, "tag", "v1.0", "main")
    assert _trigger_check(only_tags).message.endswith(f"at tags/v1.0 of {repo}")


def test_a_local_source_that_is_missing_or_not_a_repository_fails(
    tmp_path: Path, project_dir: Path
) -> None:
    check = _trigger_check(_git_settings(tmp_path, project_dir, str(tmp_path / "gone")))
    assert check.status == "fail" and "does not exist; fix source" in check.message
    (tmp_path / "plain").mkdir()
    check = _trigger_check(_git_settings(tmp_path, project_dir, str(tmp_path / "plain")))
    assert check.status == "fail" and "is not a git repository" in check.message


def test_a_generic_hook_secret_must_be_a_standard_webhooks_secret(
    tmp_path: Path, project_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = make_settings(tmp_path, None, project_dir, triggers=[generic_trigger(project_dir)])
    assert _trigger_check(settings, "trigger loader secret").status == "ok"
    monkeypatch.setenv("GENERIC_WEBHOOK_SECRET", "plainSECRETvalue")
    check = _trigger_check(settings, "trigger loader secret")
    assert check.status == "fail"
    assert check.message.startswith("$GENERIC_WEBHOOK_SECRET does not start with whsec_")
    assert "plainSECRETvalue" not in check.message


def test_a_rotation_is_checked_secret_by_secret_and_cloudevents_signatures_too(
    tmp_path: Path, project_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.trigger.hookkit import WHSEC, cloudevents_trigger

    triggers = [generic_trigger(project_dir), cloudevents_trigger(project_dir)]
    settings = make_settings(tmp_path, None, project_dir, triggers=triggers)
    monkeypatch.setenv("GENERIC_WEBHOOK_SECRET", f"{WHSEC} {WHSEC}")
    assert _trigger_check(settings, "trigger loaded secret").status == "ok"
    monkeypatch.setenv("GENERIC_WEBHOOK_SECRET", f"{WHSEC} oldplainhush")
    for name in ("trigger loader secret", "trigger loaded secret"):
        check = _trigger_check(settings, name)
        assert check.status == "fail", name
        assert "(secret 2 of 2) does not start with whsec_" in check.message
        assert "oldplainhush" not in check.message
    bearer = [cloudevents_trigger(project_dir, auth="bearer")]
    plain = make_settings(tmp_path, None, project_dir, triggers=bearer)
    assert _trigger_check(plain, "trigger loaded secret").status == "ok"


# -- notifiers ------------------------------------------------------------------------

NOTIFIERS = {
    "alerts": {"kind": "slack", "url_env": "CK_SLACK_URL"},
    "ops": {"kind": "webhook", "url_env": "CK_HOOK_URL", "secret_env": "CK_HOOK_SECRET"},
    "commits": {"kind": "github_status", "token_env": "CK_TOKEN"},
}
GOOD = {
    "CK_SLACK_URL": "https://hooks.slack.com/services/T0/B0/slackhush42",
    "CK_HOOK_URL": "https://ops.example.com/hooks/hookhush77",
    "CK_HOOK_SECRET": "whsec_" + base64.b64encode(b"signing-key-hush-32-bytes-long!!").decode(),
    "CK_TOKEN": "ghp_tokenhush0123",
}


def _notifier_checks(tmp_path: Path, project_dir: Path, env: dict[str, str]) -> dict[str, Check]:
    trig = {
        "name": "orders",
        "project_dir": str(project_dir),
        "branch": "orders",
        "notify": sorted(NOTIFIERS),
    }
    settings = make_settings(tmp_path, None, project_dir, triggers=[trig], notifiers=NOTIFIERS)
    return {c.name: c for c in run_checks(settings, env) if c.name.startswith("notifier ")}


def test_every_notifier_variable_set_and_well_formed_passes(
    tmp_path: Path, project_dir: Path
) -> None:
    checks = _notifier_checks(tmp_path, project_dir, GOOD)
    assert {name: c.status for name, c in checks.items()} == {
        "notifier slack:alerts": "ok",
        "notifier webhook:ops": "ok",
        "notifier github_status:commits": "ok",
    }
    assert checks["notifier webhook:ops"].message == (
        "$CK_HOOK_URL, $CK_HOOK_SECRET are set: an http(s) URL and a whsec_ secret"
    )


def test_unset_notifier_variables_fail_each_by_name(tmp_path: Path, project_dir: Path) -> None:
    checks = _notifier_checks(tmp_path, project_dir, {})
    assert all(c.status == "fail" for c in checks.values())
    assert checks["notifier webhook:ops"].message == (
        "$CK_HOOK_URL (url_env) is not set; $CK_HOOK_SECRET (secret_env) is not set; "
        "nothing can be sent"
    )
    assert "$CK_TOKEN (token_env) is not set" in checks["notifier github_status:commits"].message


@pytest.mark.parametrize(
    ("variable", "value", "said"),
    [
        (
            "CK_SLACK_URL",
            "hooks.slack.com/services/T0/B0/slackhush42",
            "not an http:// or https:// URL",
        ),
        ("CK_SLACK_URL", "ftp://hooks.slack.com/slackhush42", "not an http:// or https:// URL"),
        ("CK_HOOK_URL", "https:///hooks/hookhush77", "not an http:// or https:// URL"),
        ("CK_HOOK_SECRET", "plain-hush-value", "does not start with whsec_"),
        ("CK_HOOK_SECRET", "whsec_not*base64hush", "is not base64 after whsec_"),
    ],
)
def test_a_malformed_notifier_value_fails_without_being_shown(
    tmp_path: Path, project_dir: Path, variable: str, value: str, said: str
) -> None:
    checks = _notifier_checks(tmp_path, project_dir, {**GOOD, variable: value})
    [bad] = [c for c in checks.values() if c.status != "ok"]
    assert bad.status == "fail" and variable in bad.message and said in bad.message
    for text in [c.message for c in checks.values()]:
        assert "hush" not in text


def test_a_notifier_url_over_plain_http_to_another_host_warns(
    tmp_path: Path, project_dir: Path
) -> None:
    env = {**GOOD, "CK_SLACK_URL": "http://hooks.example.com/slackhush42"}
    check = _notifier_checks(tmp_path, project_dir, env)["notifier slack:alerts"]
    assert check.status == "warn" and "cross the network in clear" in check.message
    local = {**GOOD, "CK_SLACK_URL": "http://127.0.0.1:9/slackhush42"}
    assert _notifier_checks(tmp_path, project_dir, local)["notifier slack:alerts"].status == "ok"
