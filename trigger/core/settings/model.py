"""``Settings``: the sections together, read from a mapping, and the checks across them.

The environment overrides the file (``BAUPLAN_TRIGGER_<SECTION>__<KEY>``). Which
environment is the caller's to say: ``build_settings`` hands its mapping to the
one settings source that reads variables, so building settings never reads or
changes ``os.environ`` behind the caller's back.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path

from pydantic import Field
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)
from pydantic_settings.sources.utils import parse_env_vars

from trigger.core.errors import ConfigError, TemplateError
from trigger.core.settings.flow import check_flow
from trigger.core.settings.notify import NotifierConfig
from trigger.core.settings.sections import (
    SLUG,
    ApiSettings,
    BauplanSettings,
    EventsSettings,
    QueueSettings,
    ServiceSettings,
)
from trigger.core.settings.trigger import TriggerConfig

ENV_PREFIX = "BAUPLAN_TRIGGER_"

# The variables the Settings being built in this context read; None: os.environ, as
# pydantic-settings does for a bare ``Settings()``. A context variable, not a global:
# two threads building settings from two mappings never see each other's.
_environ: ContextVar[Mapping[str, str] | None] = ContextVar("settings_environ", default=None)


class _MappingEnvSource(EnvSettingsSource):
    """pydantic-settings' own environment source, fed a mapping instead of os.environ
    (``_load_env_vars`` is the hook its dotenv source overrides too; pydantic-settings 2.16)."""

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str]) -> None:
        self._environ = environ
        super().__init__(settings_cls)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return parse_env_vars(
            self._environ, self.case_sensitive, self.env_ignore_empty, self.env_parse_none_str
        )


@contextmanager
def reading(environ: Mapping[str, str]) -> Iterator[None]:
    """Settings built inside read their overrides from ``environ``, and only from it."""
    token = _environ.set(environ)
    try:
        yield
    finally:
        _environ.reset(token)


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
        environ = _environ.get()
        if environ is not None:
            env_settings = _MappingEnvSource(settings_cls, environ)
        return (env_settings, init_settings)

    def trigger(self, name: str) -> TriggerConfig:
        from trigger.core.errors import UnknownTriggerError

        found = self.find_trigger(name)
        if found is None:
            raise UnknownTriggerError(name, [t.name for t in self.triggers])
        return found

    def find_trigger(self, name: str | None) -> TriggerConfig | None:
        """The trigger of that name, or None (a run whose trigger left the config)."""
        return next((t for t in self.triggers if t.name == name), None)

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
        if not SLUG.match(name):
            raise ConfigError(f"notifiers.{name}", name, "notifier names are slugs")
