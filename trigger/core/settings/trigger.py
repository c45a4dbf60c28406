"""``[[triggers]]``: one trigger, its sources and its templates.

A trigger names what it listens to (a section per source), what it runs (a
Bauplan project on a branch rendered from the event) and how its runs queue.
"""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import BaseModel, Field, field_validator

from trigger.core.settings.files import FilesSource
from trigger.core.settings.flow import BranchLimit, BurstPolicy
from trigger.core.settings.hooks import (
    CloudEventsSource,
    GenericSource,
    GitHubSource,
    GitLabSource,
)
from trigger.core.settings.publish import PublishSettings
from trigger.core.settings.schedule import ScheduleSource
from trigger.core.settings.sections import SLUG, Outcome, Section
from trigger.core.templates import COMMON_FIELDS, SOURCE_FIELDS, Template, parse

_INPUT = re.compile(r"[a-z][a-z0-9_]*\Z")


class TriggerConfig(Section):
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
    cloudevents: CloudEventsSource | None = None
    per_branch_concurrency: int | None = Field(default=None, ge=1)
    per_branch_limit: BranchLimit | None = None
    on_burst: BurstPolicy = "queue"
    debounce_seconds: float | None = Field(default=None, gt=0)
    max_wait_seconds: float | None = Field(default=None, gt=0)
    timeout_seconds: float | None = Field(
        default=None, gt=0, description="cancel the job and fail the run after this long"
    )
    max_queue_seconds: float | None = Field(
        default=None, gt=0, description="a run that waited this long without starting expires"
    )
    schedule: ScheduleSource | None = None
    publish: PublishSettings | None = None
    files: FilesSource | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not SLUG.match(value):
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
        for declared in (self.generic, self.cloudevents):
            if declared is not None:
                fields |= declared.template_fields()
        return frozenset(fields)

    def template_fields(self) -> frozenset[str]:
        """The event fields its branch and parameter templates read."""
        fields = set(self.branch_template().fields)
        for template in self.parameter_templates().values():
            if isinstance(template, Template):
                fields |= template.fields
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
