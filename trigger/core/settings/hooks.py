"""The ``[triggers.github]``, ``[triggers.gitlab]``, ``[triggers.generic]`` and
``[triggers.cloudevents]`` sections.

Kept apart from the HTTP handlers so that ``settings`` can import them without
pulling in FastAPI or matching (which imports ``settings``).
"""

from __future__ import annotations

import re
from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from trigger.core import secrets

_REPO = re.compile(r"[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)+\Z")
_BODY_KEY = re.compile(r"[a-z][a-z0-9_]{0,40}\Z")

BodyType = Literal["string", "integer", "number", "boolean"]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _env_name(value: str) -> str:
    if not secrets.is_env_name(value):
        raise ValueError("must name an environment variable, like GITHUB_WEBHOOK_SECRET")
    return value


def _globs(value: list[str]) -> list[str]:
    for item in value:
        if not item or any(ord(ch) < 32 for ch in item):
            raise ValueError(f"glob {item!r} is empty or has control characters")
    return value


class GitSource(_Section):
    """What GitHub and GitLab triggers share: which pushes they care about."""

    repo: str = Field(description="owner/name (GitLab: group/subgroup/project)")
    secret_env: str = Field(description="environment variable holding the webhook secret")
    branches: list[str] = Field(
        default_factory=list, description="branch globs; empty means every branch"
    )
    exclude_branches: list[str] = Field(default_factory=list)
    tags: list[str] = Field(
        default_factory=list, description="tag globs; empty means tag pushes start nothing"
    )
    paths: list[str] = Field(
        default_factory=list, description="gitignore-style path globs; empty means any change"
    )
    exclude_paths: list[str] = Field(default_factory=list)
    source: str | None = Field(
        default=None,
        description="git clone URL or local path: run project_dir of the pushed commit",
    )

    @field_validator("repo")
    @classmethod
    def _repo(cls, value: str) -> str:
        if not _REPO.match(value):
            raise ValueError("must look like owner/name")
        return value

    @field_validator("secret_env")
    @classmethod
    def _secret_env(cls, value: str) -> str:
        return _env_name(value)

    @field_validator("branches", "exclude_branches", "tags", "paths", "exclude_paths")
    @classmethod
    def _glob_lists(cls, value: list[str]) -> list[str]:
        return _globs(value)

    @field_validator("source")
    @classmethod
    def _source(cls, value: str | None) -> str | None:
        if value is not None and (
            not value or value.startswith("-") or any(ord(ch) < 32 for ch in value)
        ):
            raise ValueError("must be a clone URL or a local path (not starting with '-')")
        return value


class GitHubSource(GitSource):
    pass


class GitLabSource(GitSource):
    pass


class _Declared(_Section):
    """A JSON object whose keys are declared with their JSON types; each value becomes a
    template field ``<prefix><key>``."""

    fields: dict[str, BodyType] = Field(
        default_factory=dict, description="allowed keys and their JSON types"
    )
    optional: list[str] = Field(default_factory=list, description="keys that may be left out")

    @field_validator("fields")
    @classmethod
    def _fields(cls, value: dict[str, BodyType]) -> dict[str, BodyType]:
        for key in value:
            if not _BODY_KEY.match(key):
                raise ValueError(f"key {key!r} must be a lower-case name like run_date")
        return value

    @model_validator(mode="after")
    def _optional_known(self) -> _Declared:
        unknown = [key for key in self.optional if key not in self.fields]
        if unknown:
            raise ValueError(f"optional names keys not in fields: {', '.join(unknown)}")
        return self

    prefix: ClassVar[str]

    def template_fields(self) -> frozenset[str]:
        return frozenset(f"{self.prefix}{key}" for key in self.fields)


class GenericSource(_Declared):
    """A Standard Webhooks sender; the JSON body's keys become ``body_<key>`` fields."""

    secret_env: str = Field(description="environment variable holding the whsec_ secret")

    @field_validator("secret_env")
    @classmethod
    def _secret_env(cls, value: str) -> str:
        return _env_name(value)

    prefix: ClassVar[str] = "body_"


class CloudEventsSource(_Declared):
    """CloudEvents over HTTP (binary or structured mode); ``source`` + ``id`` is the
    event's identity, ``data``'s declared keys become ``data_<key>`` fields."""

    auth: Literal["signature", "bearer"] = Field(
        default="signature",
        description="signature: Standard Webhooks headers with a whsec_ secret; "
        "bearer: an Authorization: Bearer token",
    )
    secret_env: str = Field(description="environment variable holding the secret or token")
    types: list[str] = Field(
        default_factory=list, description="globs of the event types taken; empty: any"
    )
    sources: list[str] = Field(
        default_factory=list, description="globs of the event sources taken; empty: any"
    )

    @field_validator("secret_env")
    @classmethod
    def _secret_env(cls, value: str) -> str:
        return _env_name(value)

    @field_validator("types", "sources")
    @classmethod
    def _glob_lists(cls, value: list[str]) -> list[str]:
        return _globs(value)

    prefix: ClassVar[str] = "data_"


BODY_PREFIX = GenericSource.prefix


def secret_envs(trigger: object) -> list[str]:
    """The environment variables a trigger's webhook sections read their secrets from."""
    names = []
    for kind in ("github", "gitlab", "generic", "cloudevents"):
        section = getattr(trigger, kind, None)
        if section is not None:
            names.append(section.secret_env)
    return names
