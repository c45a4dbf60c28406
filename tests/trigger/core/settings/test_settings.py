"""Configuration: one TOML file, env overrides, one-line errors naming key, value and fix."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from tests.support import base_config, write_config
from tests.trigger.fuzzkit import JSON_VALUES
from tests.trigger.properties import OUTSIDE_TEXT, examples
from trigger.core.errors import ConfigError
from trigger.core.settings import (
    ApiSettings,
    BauplanSettings,
    EventsSettings,
    QueueSettings,
    ServiceSettings,
    TriggerConfig,
    build_settings,
    find_config,
    load_settings,
)
from trigger.core.text import problem


def _build(
    tmp_path: Path, project_dir: Path, env: dict[str, str] | None = None, **over: Any
) -> Any:
    return build_settings(base_config(tmp_path, project_dir, **over), environ=env or {})


def test_a_valid_file_loads_with_paths_relative_to_it(tmp_path: Path, project_dir: Path) -> None:
    config = base_config(tmp_path, project_dir)
    config["service"]["state_dir"] = "state"
    config["triggers"][0]["project_dir"] = "pipelines/orders"
    path = write_config(tmp_path / "bt.toml", config)
    settings = load_settings(path, environ={})
    assert settings.state_path == tmp_path / "state"
    assert settings.project_path(settings.triggers[0]) == project_dir
    assert settings.database_url() == f"sqlite:///{tmp_path / 'state' / 'dbos.sqlite'}"


def test_dbos_system_database_url_selects_postgres(tmp_path: Path, project_dir: Path) -> None:
    url = "postgresql://u@127.0.0.1:5432/x"
    settings = _build(tmp_path, project_dir, env={"DBOS_SYSTEM_DATABASE_URL": url})
    assert settings.database_url() == url and settings.is_postgres


def test_environment_overrides_the_file(tmp_path: Path, project_dir: Path) -> None:
    settings = _build(
        tmp_path,
        project_dir,
        env={
            "BAUPLAN_TRIGGER_QUEUE__POLLING_INTERVAL": "0.5",
            "BAUPLAN_TRIGGER_BAUPLAN__MODE": "live",
        },
    )
    assert settings.queue.polling_interval == 0.5
    assert settings.bauplan.mode == "live"


def test_allowed_hosts_are_a_list_in_the_environment_too(tmp_path: Path, project_dir: Path) -> None:
    env = {"BAUPLAN_TRIGGER_SERVICE__ALLOWED_HOSTS": '["trigger.example.com", "[::1]"]'}
    settings = _build(tmp_path, project_dir, env=env)
    assert settings.service.allowed_hosts == ["trigger.example.com", "[::1]"]


def test_the_config_is_found_by_flag_then_variable_then_default(tmp_path: Path) -> None:
    assert (
        find_config(tmp_path / "a.toml", {"BAUPLAN_TRIGGER_CONFIG": "b.toml"})
        == tmp_path / "a.toml"
    )
    assert find_config(None, {"BAUPLAN_TRIGGER_CONFIG": "b.toml"}) == Path("b.toml")
    assert find_config(None, {}) == Path("bauplan-trigger.toml")


def test_a_missing_file_says_how_to_provide_one(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"file not found.*--config"):
        load_settings(tmp_path / "nope.toml", environ={})


def test_bad_toml_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("[service\nlisten = 1\n")
    with pytest.raises(ConfigError, match="is not valid TOML") as info:
        load_settings(path, environ={})
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("change", "key", "needle"),
    [
        (lambda c: c["triggers"][0].update(name="Orders!"), "triggers.Orders!.name", "slug"),
        (lambda c: c["triggers"][0].update(branch="{nope}"), "orders", "unknown field 'nope'"),
        (
            lambda c: c["triggers"][0].update(parameters={"x": "{run_date.__class__}"}),
            "orders",
            "attribute access",
        ),
        (
            lambda c: c["triggers"][0].update(colour="red"),
            "triggers.orders.colour",
            "not a known key",
        ),
        (lambda c: c["service"].update(listen="8080"), "service.listen", "HOST:PORT"),
        (
            lambda c: c["service"].update(allowed_hosts=["https://trigger.example.com"]),
            "service.allowed_hosts",
            "'https://trigger.example.com' must be a host name or address without scheme or port",
        ),
        (lambda c: c["bauplan"].update(mode="prod"), "bauplan.mode", "'live' or 'rehearse'"),
        (
            lambda c: c["queue"].update(polling_interval=0),
            "queue.polling_interval",
            "greater than 0",
        ),
        (lambda c: c["triggers"].append(dict(c["triggers"][0])), "triggers[1].name", "unique"),
        (lambda c: c["triggers"][0].update(notify=["ops"]), "notify", "no [notifiers.ops]"),
        (lambda c: c["triggers"][0].update(inputs=["event_id"]), "inputs", "clashes"),
        (lambda c: c["triggers"][0].pop("branch"), "triggers.orders.branch", "is required"),
    ],
)
def test_every_bad_value_names_the_key_and_the_fix(
    tmp_path: Path, project_dir: Path, change: Any, key: str, needle: str
) -> None:
    config = base_config(tmp_path, project_dir)
    change(config)
    with pytest.raises(ConfigError) as info:
        build_settings(config, environ={})
    message = str(info.value)
    assert key in message
    assert needle in message
    assert "\n" not in message


def _fields(model: Any) -> list[str]:
    return sorted(model.model_fields)


_SECTIONS = {
    "service": ServiceSettings,
    "bauplan": BauplanSettings,
    "queue": QueueSettings,
    "api": ApiSettings,
    "events": EventsSettings,
}
_TRIGGER_KEYS = _fields(TriggerConfig)
# What an environment can hold: no NUL, and bytes that are not UTF-8 as the lone
# surrogates Python decodes them to (surrogateescape).
_ENV_VALUES = st.text(st.characters(exclude_characters="\x00", exclude_categories=("Cs",))) | (
    st.binary(max_size=12).map(lambda b: os.fsdecode(b.replace(b"\x00", b"")))
)


@st.composite
def _configs(draw: st.DrawFn) -> tuple[list[tuple[str, str, Any]], dict[str, str]]:
    """Changes to a valid config (a key of a section, of the trigger, or an unknown key,
    set to any JSON value) and ``BAUPLAN_TRIGGER_...`` overrides of any known key."""
    section = st.sampled_from([*_SECTIONS, "", "triggers", "notifiers"])
    changes = []
    for where in draw(st.lists(section, min_size=1, max_size=3)):
        known = _fields(_SECTIONS[where]) if where in _SECTIONS else _TRIGGER_KEYS
        key = draw(st.sampled_from(known) | OUTSIDE_TEXT)
        changes.append((where, key, draw(JSON_VALUES)))
    names = [f"{s.upper()}__{k.upper()}" for s, m in _SECTIONS.items() for k in _fields(m)]
    env = draw(st.dictionaries(st.sampled_from(names), _ENV_VALUES, max_size=2))
    return changes, {f"BAUPLAN_TRIGGER_{k}": v for k, v in env.items()}


@examples(300)
@given(config=_configs())
@example(config=([("service", "x\n2026-11-23 INFO forged", 1)], {}))
def test_any_config_value_gives_settings_or_one_config_error_line(
    tmp_path: Path, project_dir: Path, config: tuple[list[tuple[str, str, Any]], dict[str, str]]
) -> None:
    changes, env = config
    data = base_config(tmp_path, project_dir)
    for where, key, value in changes:
        if where == "":
            data[key] = value
        elif where == "triggers":
            data["triggers"][0][key] = value
        elif where == "notifiers":
            data["notifiers"] = {key: value}
        else:
            data.setdefault(where, {})[key] = value
    try:
        build_settings(data, environ=env)
    except ConfigError as exc:
        message = str(exc)
        assert len(message.splitlines()) == 1 and problem(message) is None, message


def test_a_list_override_that_is_not_json_names_its_variable(
    tmp_path: Path, project_dir: Path
) -> None:
    env = {"BAUPLAN_TRIGGER_SERVICE__ALLOWED_HOSTS": "trigger.example.com"}
    with pytest.raises(ConfigError) as caught:
        _build(tmp_path, project_dir, env=env)
    assert str(caught.value).startswith(
        "config BAUPLAN_TRIGGER_SERVICE__ALLOWED_HOSTS = 'trigger.example.com': must be JSON"
    )


class _WatchedEnviron(dict[str, str]):
    """Stands in for ``os.environ`` and remembers every change made to it."""

    def __init__(self, values: dict[str, str]) -> None:
        super().__init__(values)
        self.changes: list[str] = []

    def __setitem__(self, key: str, value: str) -> None:
        self.changes.append(f"set {key}")
        super().__setitem__(key, value)

    def __delitem__(self, key: str) -> None:
        self.changes.append(f"del {key}")
        super().__delitem__(key)

    def clear(self) -> None:
        self.changes.append("clear")
        super().clear()

    def update(self, *args: Any, **kwargs: Any) -> None:
        self.changes.append("update")
        super().update(*args, **kwargs)

    def pop(self, key: str, *default: Any) -> Any:
        self.changes.append(f"pop {key}")
        return super().pop(key, *default)


def test_settings_from_a_mapping_leave_the_process_environment_alone(
    tmp_path: Path, project_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another thread reading the environment while settings are built (a DBOS worker,
    a logging handler) must not see it emptied and refilled with the mapping."""
    watched = _WatchedEnviron({**os.environ, "BAUPLAN_TRIGGER_QUEUE__POLLING_INTERVAL": "7"})
    monkeypatch.setattr(os, "environ", watched)
    before = dict(watched)
    settings = _build(tmp_path, project_dir, env={"BAUPLAN_TRIGGER_SERVICE__LISTEN": "[::1]:9"})
    assert watched.changes == []
    assert os.environ is watched
    assert dict(watched) == before
    assert settings.service.listen == "[::1]:9"
    assert settings.queue.polling_interval == 0.1  # only the mapping counts, not os.environ
