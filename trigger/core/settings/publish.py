"""``[triggers.publish]``: merge a successful run's branch into a target (write, audit,
publish). Off unless a trigger has this section: nothing else ever writes to ``main``."""

from __future__ import annotations

import re

from pydantic import Field, field_validator

from trigger.core.settings.sections import Section

# A Bauplan branch: ``main``, or ``user.name``; letters, digits, ``_``, ``-`` and dots.
_BRANCH = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,199}\Z")


class PublishSettings(Section):
    into: str = Field(description="the branch a successful run's branch is merged into")
    delete_branch_after: bool = Field(
        default=False, description="delete the run's branch once it is published"
    )

    @field_validator("into")
    @classmethod
    def _into(cls, value: str) -> str:
        if not _BRANCH.match(value) or ".." in value:
            raise ValueError("must be a Bauplan branch name such as main or alice.staging")
        return value
