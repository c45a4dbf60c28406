"""[notifiers.<name>]: one model per kind, env var names only, helpful refusals."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support import CONFIG_DIR
from trigger.core.errors import ConfigError
from trigger.core.settings import build_settings
from trigger.core.settings.notify import GithubStatusNotifier, SlackNotifier, WebhookNotifier


def settings(notifiers: dict[str, Any], notify: list[str] | None = None) -> Any:
    trig = {"name": "t", "project_dir": ".", "branch": "b", "notify": notify or []}
    return build_settings({"triggers": [trig], "notifiers": notifiers}, environ={})


def test_each_kind_gets_its_own_model_and_defaults() -> None:
    got = settings(
        {
            "data-alerts": {"kind": "slack", "url_env": "SLACK_URL"},
            "ops": {"kind": "webhook", "url_env": "HOOK_URL", "secret_env": "HOOK_SECRET"},
            "commits": {"kind": "github_status", "token_env": "GITHUB_TOKEN"},
        },
        notify=["data-alerts", "ops", "commits"],
    ).notifiers
    assert isinstance(got["data-alerts"], SlackNotifier)
    assert got["data-alerts"].on == ["succeeded", "failed"]
    assert isinstance(got["ops"], WebhookNotifier) and got["ops"].max_attempts == 5
    assert isinstance(got["commits"], GithubStatusNotifier)
    assert got["commits"].on == [
        "started",
        "succeeded",
        "failed",
        "superseded",
        "cancelled",
        "expired",
    ]
    assert got["commits"].api_url == "https://api.github.com"


def test_a_pasted_secret_is_refused_and_not_echoed() -> None:
    url = "https://hooks.slack.com/services/T0/B0/pastedSECRET"
    with pytest.raises(ConfigError) as caught:
        settings({"a": {"kind": "slack", "url": url}})
    assert "url_env" in str(caught.value)
    assert "pastedSECRET" not in str(caught.value)


@pytest.mark.parametrize(
    ("notifier", "words"),
    [
        ({"kind": "slack", "url_env": "https://x/y"}, "NAME of an environment variable"),
        ({"kind": "sms", "url_env": "X"}, "kind"),
        ({"kind": "webhook", "url_env": "X"}, "secret_env"),
        ({"kind": "slack", "url_env": "X", "on": ["finished"]}, "on"),
        (
            {"kind": "webhook", "url_env": "X", "secret_env": "Y", "headers": {"webhook-id": "1"}},
            "set by bauplan-trigger",
        ),
        ({"kind": "slack", "url_env": "X", "chanel": "#x"}, "not a known key"),
    ],
)
def test_bad_notifier_config_is_named(notifier: dict[str, Any], words: str) -> None:
    with pytest.raises(ConfigError, match="notifiers") as caught:
        settings({"a": notifier})
    assert words in str(caught.value)


def test_a_trigger_naming_an_unknown_notifier_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"names no \[notifiers.nope\]"):
        settings({"a": {"kind": "slack", "url_env": "X"}}, notify=["nope"])


def test_the_example_config_loads() -> None:

    from trigger.core.settings import load_settings

    path = CONFIG_DIR / "notifications.toml"
    loaded = load_settings(path, environ={})
    assert sorted(loaded.notifiers) == ["commits", "data-alerts", "ops"]
    assert loaded.notifiers["ops"].max_attempts == 8
