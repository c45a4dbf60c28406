"""Finding and reading the config file, applying the environment, and saying in one line
what is wrong when either is: the key, the value and the fix."""

from __future__ import annotations

import json
import os
import tomllib
import typing
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from pydantic_settings import SettingsError

from trigger.core.errors import ConfigError
from trigger.core.settings.model import ENV_PREFIX, Settings, check_settings, reading

CONFIG_ENV = "BAUPLAN_TRIGGER_CONFIG"
DEFAULT_CONFIG = Path("bauplan-trigger.toml")
SYSTEM_DB_ENV = "DBOS_SYSTEM_DATABASE_URL"


def find_config(explicit: Path | None, environ: dict[str, str] | None = None) -> Path:
    env = os.environ if environ is None else environ
    if explicit is not None:
        return explicit
    if env.get(CONFIG_ENV):
        return Path(env[CONFIG_ENV])
    return DEFAULT_CONFIG


def load_settings(explicit: Path | None = None, environ: dict[str, str] | None = None) -> Settings:
    """Read, validate and cross-check the configuration; raise ConfigError on any problem."""
    env = dict(os.environ if environ is None else environ)
    path = find_config(explicit, env)
    try:
        with path.open("rb") as handle:
            data = tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(
            "--config",
            str(path),
            "file not found; pass --config FILE, set BAUPLAN_TRIGGER_CONFIG, "
            "or copy one of the examples in config/ to ./bauplan-trigger.toml",
        ) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("--config", str(path), f"is not valid TOML ({exc})") from None
    except OSError as exc:
        raise ConfigError("--config", str(path), f"cannot be read ({exc.strerror})") from None
    return build_settings(data, config_path=path.resolve(), environ=env)


def build_settings(
    data: dict[str, Any],
    *,
    config_path: Path | None = None,
    environ: dict[str, str] | None = None,
) -> Settings:
    """Validate a parsed config mapping. Tests call this with a dict."""
    env = dict(os.environ if environ is None else environ)
    for key in ("config_path", "system_database_url"):
        if key in data:
            raise ConfigError(key, data[key], "is not a config key; remove it")
    data = {**data, "config_path": config_path, "system_database_url": env.get(SYSTEM_DB_ENV)}
    try:
        with reading(env):
            settings = Settings(**data)
    except ValidationError as exc:
        raise _config_error(exc, data) from None
    except SettingsError:
        raise _override_error(env) from None
    check_settings(settings)
    return settings


def _override_error(env: dict[str, str]) -> ConfigError:
    """pydantic-settings reads a list or table override as JSON and, when it is not,
    names only the section: name the variable and say what it must hold."""

    for name, value in sorted(env.items()):
        if not name.startswith(ENV_PREFIX):
            continue
        try:
            json.loads(value)
        except ValueError:
            if value[:1] in ("[", "{") or _is_structured(name):
                return ConfigError(
                    name,
                    value,
                    'must be JSON for a list or table key, like ["a", "b"] or {"k": 1}',
                )
    return ConfigError("environment", ENV_PREFIX + "...", "an override could not be read")


def _is_structured(variable: str) -> bool:
    """Whether ``BAUPLAN_TRIGGER_<SECTION>__<KEY>`` names a list, table or section."""
    section, _, key = variable.removeprefix(ENV_PREFIX).lower().partition("__")
    field = Settings.model_fields.get(section)
    if field is None:
        return False
    if not key:
        return True
    model = field.annotation
    inner = getattr(model, "model_fields", {}).get(key)
    if inner is None:
        return False
    kinds = [inner.annotation, *typing.get_args(inner.annotation)]
    return any(typing.get_origin(k) in (list, dict) or hasattr(k, "model_fields") for k in kinds)


def _config_error(exc: ValidationError, data: dict[str, Any]) -> ConfigError:
    first = exc.errors()[0]
    loc = first["loc"]
    key = ""
    for part in loc:
        key += f"[{part}]" if isinstance(part, int) else (f".{part}" if key else str(part))
    value: Any = first.get("input")
    # Name the trigger, not just its index, so the user finds it in the file.
    if len(loc) >= 2 and loc[0] == "triggers" and isinstance(loc[1], int):
        triggers = data.get("triggers") or []
        if loc[1] < len(triggers) and isinstance(triggers[loc[1]], dict):
            name = triggers[loc[1]].get("name")
            if name:
                key = f"triggers.{name}" + key.split("]", 1)[1]
    message = first["msg"].removeprefix("Value error, ")
    if (loc and loc[0] == "notifiers") or "must not hold credentials" in message:
        value = "(not shown)"  # a notifier value may be a secret pasted by mistake
    if first["type"] == "extra_forbidden":
        message = "is not a known key; check the spelling against the README's config reference"
    elif first["type"] == "missing":
        value = None
        message = "is required"
    return ConfigError(key or "config", value, message)
