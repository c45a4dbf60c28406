"""The one reader of secret variables, and the one redactor behind logs and records."""

from __future__ import annotations

import logging
import pickle
import uuid
from pathlib import Path

import httpx
import pytest

from tests.support import make_settings
from tests.trigger.hookkit import github_trigger
from trigger.core import secrets
from trigger.core.errors import BauplanFailure


def fresh(prefix: str) -> str:
    """A value no other test registered (the redactor only ever grows)."""
    return f"{prefix}{uuid.uuid4().hex}"


def test_a_variable_is_read_here_and_its_value_redacted_from_then_on() -> None:
    value = fresh("tok-")
    assert secrets.read("TOKEN", {"TOKEN": value}) == value
    assert secrets.read("TOKEN", {"TOKEN": ""}) is None
    assert secrets.read("TOKEN", {}) is None
    assert secrets.read("TOKEN", {"TOKEN": f"  {value}\n"}, strip=True) == value
    assert secrets.redact(f"the server said: bad token {value}.") == (
        "the server said: bad token ***."
    )


def test_a_signing_secret_is_redacted_with_and_without_its_prefix() -> None:
    body = fresh("c2lnbmluZy")
    secrets.read("HOOK_SECRET", {"HOOK_SECRET": f"whsec_{body}"})
    assert secrets.redact(f"whsec_{body} / {body}") == "*** / ***"


def test_each_secret_of_a_key_rotation_is_redacted_on_its_own() -> None:
    new, old = fresh("bmV3a2V5"), fresh("b2xka2V5")
    secrets.read("HOOK_SECRET", {"HOOK_SECRET": f"whsec_{new} whsec_{old}"})
    assert secrets.redact(f"old whsec_{old}, new {new}") == "old ***, new ***"


def test_a_notifier_url_loses_its_path_its_query_and_every_key_in_them() -> None:
    team, key, sig = fresh("T0"), fresh("Xk"), fresh("s1g")
    url = f"https://hooks.example.com/services/{team}/{key}?sig={sig}&mode=full"
    secrets.read("SLACK_URL", {"SLACK_URL": url}, url=True)
    assert secrets.redact(f"POST {url} failed") == "POST https://hooks.example.com/*** failed"
    assert secrets.redact(f"no_service for /services/{team}/{key}") == "no_service for /***"
    assert secrets.redact(f"invalid_token {key}; team {team}; sig={sig}") == (
        "invalid_token ***; team ***; sig=***"
    )
    # Plain words of the path are not keys: ordinary text keeps them.
    assert secrets.redact("services, hooks and full mode") == "services, hooks and full mode"


def test_install_learns_every_variable_the_config_names(
    tmp_path: Path, project_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    values = {
        "GITHUB_WEBHOOK_SECRET": fresh("gh-"),
        "OPS_URL": f"https://ops.example.com/hooks/{fresh('H')}",
        "OPS_SECRET": fresh("whsec_"),
        "STATUS_TOKEN": fresh("ghp_"),
        "API_TOKEN": fresh("api-"),
    }
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    password = fresh("pw")
    settings = make_settings(
        tmp_path,
        f"postgresql://bt:{password}@db.internal:5432/bt",
        project_dir,
        triggers=[github_trigger(project_dir)],
        api={"token_env": "API_TOKEN"},
        notifiers={
            "ops": {"kind": "webhook", "url_env": "OPS_URL", "secret_env": "OPS_SECRET"},
            "commits": {"kind": "github_status", "token_env": "STATUS_TOKEN"},
        },
    )
    secrets.install(settings)
    text = " ".join([*values.values(), password])
    assert secrets.redact(text) == "*** https://ops.example.com/*** *** *** *** ***"


def test_no_log_record_carries_a_known_secret_whatever_logs_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    value = fresh("tok-")
    secrets.read("TOKEN", {"TOKEN": value})
    secrets.install_log_filter()
    caplog.set_level(logging.DEBUG)
    other = logging.getLogger("some.library")
    other.warning("sent %s", value)
    other.warning(f"inline {value}")
    other.warning("error %s", ValueError(f"rejected {value}"))
    other.warning("%s%s", value[:6], value[6:])  # split across two arguments
    other.info("HTTP Request: %s %s", "POST", httpx.URL("https://h.example.com/x/y?key=1"))
    try:
        raise RuntimeError(f"boom {value}")
    except RuntimeError:
        other.exception("it failed")
    messages = [record.getMessage() for record in caplog.records]
    assert messages[:5] == [
        "sent ***",
        "inline ***",
        "error rejected ***",
        "***",
        "HTTP Request: POST https://h.example.com/***",
    ]
    assert "boom ***" in caplog.text
    assert value not in caplog.text


def test_our_errors_never_quote_a_known_secret() -> None:
    value = fresh("key-")
    secrets.read("BAUPLAN_KEY", {"BAUPLAN_KEY": value})
    error = BauplanFailure(f"Bauplan said: key {value} is revoked", retryable=True)
    assert str(error) == "Bauplan said: key *** is revoked"
    again = pickle.loads(pickle.dumps(error))  # noqa: S301  (as DBOS records it)
    assert str(again) == str(error) and again.retryable
