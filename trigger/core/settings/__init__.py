"""The one settings object: a TOML file plus ``BAUPLAN_TRIGGER_...`` overrides.

Built once by the CLI (or a test) and passed down; nothing else reads the
environment for configuration. Secrets are never values here, only the names
of the environment variables that hold them.
"""

from __future__ import annotations

import os
import re
import tomllib
import typing
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
)

from trigger.core.errors import ConfigError, TemplateError
from trigger.core.settings.files import FilesSource
from trigger.core.settings.flow import BranchLimit, BurstPolicy, check_flow
from trigger.core.settings.hooks import GenericSource, GitHubSource, GitLabSource
from trigger.core.settings.notify import NotifierConfig
from trigger.core.settings.schedule import ScheduleSource
from trigger.core.templates import COMMON_FIELDS, SOURCE_FIELDS, Template, parse

CONFIG_ENV = "BAUPLAN_TRIGGER_CONFIG"
DEFAULT_CONFIG = Path("bauplan-trigger.toml")
SYSTEM_DB_ENV = "DBOS_SYSTEM_DATABASE_URL"

_SLUG = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}\Z")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_INPUT = re.compile(r"[a-z][a-z0-9_]*\Z")
_LISTEN = re.compile(r"(?P<host>\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+):(?P<port>\d{1,5})\Z")
_HOST_NAME = re.compile(r"(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*\.?)\Z")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ServiceSettings(_Section):
    state_dir: Path = Path(".bauplan-trigger")
    listen: str = "127.0.0.1:8080"
    name: str = Field(default="main", description="this process's name in its executor id")
    application_version: str = Field(
        default="1",
        description="pinned DBOS application version: change it only with an empty queue",
    )
    max_body_bytes: int = Field(default=5 * 1024 * 1024, gt=0)
    body_timeout: float = Field(
        default=10.0,
        gt=0,
        le=3600,
        description="seconds a request's headers and body may take to arrive before 408",
    )
    max_connections: int = Field(
        default=512,
        ge=1,
        le=1_000_000,
        description="open HTTP connections at most; a new one beyond it gets 503",
    )
    enqueue_timeout: float = Field(
        default=5.0, gt=0, description="seconds a webhook waits for its enqueue before 503"
    )
    reuse_port: bool = Field(
        default=False,
        description="let several serve processes listen on the same address (SO_REUSEPORT); "
        "the kernel spreads connections across them",
    )
    allowed_hosts: list[str] = Field(
        default_factory=list,
        description="more names (Host header) the API, page and metrics answer to; '*' for any",
    )

    @field_validator("allowed_hosts")
    @classmethod
    def _allowed_hosts(cls, value: list[str]) -> list[str]:
        for name in value:
            if name != "*" and not _HOST_NAME.match(name):
                raise ValueError(
                    f"{name[:80]!r} must be a host name or address without scheme or port, "
                    "like trigger.example.com, or '*' for any name"
                )
        return value

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str) -> str:
        match = _LISTEN.match(value)
        if not match or not 0 < int(match["port"]) < 65536:
            raise ValueError("must be HOST:PORT, for example 127.0.0.1:8080")
        return value

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _SLUG.match(value):
            raise ValueError("must be a short slug: lower-case letters, digits, '-' or '_'")
        return value

    @property
    def host(self) -> str:
        return self.listen.rsplit(":", 1)[0].strip("[]")

    @property
    def port(self) -> int:
        return int(self.listen.rsplit(":", 1)[1])


Outcome = Literal["success", "fail", "hang"]


class BauplanSettings(_Section):
    mode: Literal["live", "rehearse"] = "live"
    username: str | None = Field(
        default=None,
        description="expected Bauplan user; when unset it is resolved with client.info()",
    )
    rehearse_seconds: float = Field(default=2.0, ge=0)
    rehearse_outcome: Outcome = "success"
    poll_interval: float = Field(default=2.0, gt=0, description="first get_job poll delay")
    poll_max_interval: float = Field(default=30.0, gt=0, description="poll backoff cap")
    retry_attempts: int = Field(default=6, ge=1, description="tries of a transient SDK error")
    retry_interval: float = Field(default=2.0, gt=0)
    log_tail_lines: int = Field(default=40, ge=0)

    @field_validator("username")
    @classmethod
    def _username(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[A-Za-z0-9_-]+", value):
            raise ValueError("must be a Bauplan username (letters, digits, '_' or '-')")
        return value


class QueueSettings(_Section):
    polling_interval: float = Field(default=0.1, gt=0, le=10)
    per_branch_concurrency: int = Field(default=1, ge=1)
    worker_concurrency: int | None = Field(default=None, ge=1)
    global_concurrency: int | None = Field(default=None, ge=1)
    per_branch_limit: BranchLimit | None = None
    takeover_after_seconds: float | None = Field(
        default=None, gt=0, description="workers take over executors silent this long"
    )


class ApiSettings(_Section):
    token_env: str | None = Field(
        default=None, description="environment variable holding the API bearer token"
    )

    @field_validator("token_env")
    @classmethod
    def _token_env(cls, value: str | None) -> str | None:
        if value is not None and not _ENV_NAME.match(value):
            raise ValueError("must name an environment variable, like BAUPLAN_TRIGGER_API_TOKEN")
        return value


class EventsSettings(_Section):
    retention_days: float = Field(default=30.0, gt=0, description="event log retention")


class TriggerConfig(_Section):
    name: str
    project_dir: Path
    branch: str
    parameters: dict[str, str | int | float | bool] = Field(default_factory=dict)
    base_ref: str = "main"
    inputs: list[str] = Field(default_factory=list)
    notify: list[str] = Field(default_factory=list)
    priority: int = Field(default=100, ge=1, le=2**31 - 1)
    description: str = ""
    rehearse_seconds: float | None = Field(default=None, ge=0)
    rehearse_outcome: Outcome | None = None
    github: GitHubSource | None = None
    gitlab: GitLabSource | None = None
    generic: GenericSource | None = None
    per_branch_concurrency: int | None = Field(default=None, ge=1)
    per_branch_limit: BranchLimit | None = None
    on_burst: BurstPolicy = "queue"
    debounce_seconds: float | None = Field(default=None, gt=0)
    max_wait_seconds: float | None = Field(default=None, gt=0)
    schedule: ScheduleSource | None = None
    files: FilesSource | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _SLUG.match(value):
            raise ValueError(
                "must be a slug: lower-case letters, digits, '-' or '_', at most 63 characters"
            )
        return value

    @field_validator("inputs")
    @classmethod
    def _inputs(cls, value: list[str]) -> list[str]:
        for item in value:
            if not _INPUT.match(item):
                raise ValueError(f"input {item!r} must be a lower-case name like run_date")
            if item in COMMON_FIELDS or any(item in f for f in SOURCE_FIELDS.values()):
                raise ValueError(f"input {item!r} clashes with an event field of that name")
        return value

    @field_validator("parameters")
    @classmethod
    def _parameters(
        cls, value: dict[str, str | int | float | bool]
    ) -> dict[str, str | int | float | bool]:
        for key in value:
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
                raise ValueError(f"parameter name {key!r} must be an identifier")
        return value

    def sources(self) -> list[str]:
        """The source kinds this trigger listens to; ``manual`` always applies."""
        return ["manual"] + [k for k in SOURCE_FIELDS if k != "manual" and _has(self, k)]

    def allowed_fields(self) -> frozenset[str]:
        fields = set(COMMON_FIELDS) | set(self.inputs)
        for kind in self.sources():
            fields |= SOURCE_FIELDS[kind]
        if self.generic is not None:
            fields |= self.generic.template_fields()
        return frozenset(fields)

    def branch_template(self) -> Template:
        return parse(
            self.branch, where=f"triggers.{self.name}.branch", allowed=self.allowed_fields()
        )

    def parameter_templates(self) -> dict[str, Template | str | int | float | bool]:
        out: dict[str, Template | str | int | float | bool] = {}
        for key, value in self.parameters.items():
            if isinstance(value, str):
                out[key] = parse(
                    value,
                    where=f"triggers.{self.name}.parameters.{key}",
                    allowed=self.allowed_fields(),
                )
            else:
                out[key] = value
        return out


def _has(model: BaseModel, attribute: str) -> bool:
    return getattr(model, attribute, None) is not None


ENV_PREFIX = "BAUPLAN_TRIGGER_"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
    )

    service: ServiceSettings = ServiceSettings()
    bauplan: BauplanSettings = BauplanSettings()
    queue: QueueSettings = QueueSettings()
    api: ApiSettings = ApiSettings()
    events: EventsSettings = EventsSettings()
    triggers: list[TriggerConfig] = Field(default_factory=list)
    notifiers: dict[str, NotifierConfig] = Field(default_factory=dict)
    # Where the file was found; relative paths in it are relative to its folder.
    config_path: Path | None = None
    system_database_url: str | None = None

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Environment overrides the file; the file arrives as init kwargs.
        return (env_settings, init_settings)

    def trigger(self, name: str) -> TriggerConfig:
        from trigger.core.errors import UnknownTriggerError

        for item in self.triggers:
            if item.name == name:
                return item
        raise UnknownTriggerError(name, [t.name for t in self.triggers])

    @property
    def base_dir(self) -> Path:
        return self.config_path.parent if self.config_path else Path.cwd()

    @property
    def state_path(self) -> Path:
        return _resolve(self.base_dir, self.service.state_dir)

    def project_path(self, trigger: TriggerConfig) -> Path:
        return _resolve(self.base_dir, trigger.project_dir)

    def database_url(self) -> str:
        """PostgreSQL when ``DBOS_SYSTEM_DATABASE_URL`` is set, else SQLite in state_dir."""
        if self.system_database_url:
            return self.system_database_url
        return f"sqlite:///{self.state_path / 'dbos.sqlite'}"

    @property
    def is_postgres(self) -> bool:
        return self.database_url().startswith(("postgresql", "postgres"))


def _resolve(base: Path, path: Path) -> Path:
    path = path.expanduser()
    return path if path.is_absolute() else (base / path).resolve()


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
        settings = _with_environ(env, lambda: Settings(**data))
    except ValidationError as exc:
        raise _config_error(exc, data) from None
    except SettingsError:
        raise _override_error(env) from None
    check_settings(settings)
    return settings


def _override_error(env: dict[str, str]) -> ConfigError:
    """pydantic-settings reads a list or table override as JSON and, when it is not,
    names only the section: name the variable and say what it must hold."""
    import json

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


def _with_environ(env: dict[str, str], build: Any) -> Settings:
    saved = os.environ.copy()
    try:
        os.environ.clear()
        os.environ.update(env)
        result: Settings = build()
        return result
    finally:
        os.environ.clear()
        os.environ.update(saved)


def check_settings(settings: Settings) -> None:
    """Cross-field checks that pydantic validators cannot see alone."""
    seen: set[str] = set()
    for index, trig in enumerate(settings.triggers):
        where = f"triggers[{index}]"
        if trig.name in seen:
            raise ConfigError(
                f"{where}.name", trig.name, "is used by two triggers; names are unique"
            )
        seen.add(trig.name)
        try:
            trig.branch_template()
            trig.parameter_templates()
        except TemplateError as exc:
            raise ConfigError(f"{where} ({trig.name})", trig.branch, str(exc)) from None
        for name in trig.notify:
            if name not in settings.notifiers:
                known = ", ".join(sorted(settings.notifiers)) or "none"
                raise ConfigError(
                    f"triggers.{trig.name}.notify",
                    name,
                    f"names no [notifiers.{name}] section (defined: {known})",
                )
        git = trig.github or trig.gitlab
        if (
            git
            and git.source
            and (trig.project_dir.is_absolute() or ".." in trig.project_dir.parts)
        ):
            raise ConfigError(
                f"triggers.{trig.name}.project_dir",
                str(trig.project_dir),
                "must be a folder inside the repository (relative, no '..') when source is set",
            )
        if not re.fullmatch(r"[A-Za-z0-9_.-]+(@[0-9a-f]{7,64})?", trig.base_ref):
            raise ConfigError(
                f"triggers.{trig.name}.base_ref", trig.base_ref, "must be a branch name or ref@sha"
            )
        check_flow(trig)
    for name in settings.notifiers:
        if not _SLUG.match(name):
            raise ConfigError(f"notifiers.{name}", name, "notifier names are slugs")


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
    if loc and loc[0] == "notifiers":
        value = "(not shown)"  # a notifier value may be a secret pasted by mistake
    if first["type"] == "extra_forbidden":
        message = "is not a known key; check the spelling against the README's config reference"
    elif first["type"] == "missing":
        value = None
        message = "is required"
    return ConfigError(key or "config", value, message)
