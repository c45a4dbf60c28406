"""The ``Event``: what happened outside, normalised and immutable.

Sources build events; matching reads them. An event's ``id`` is its identity in
the sender's terms (a delivery id, a file version, a schedule tick), which is
what makes redeliveries harmless: run ids are derived from it.
"""

from __future__ import annotations

import getpass
import json
import re
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from trigger.core import text

EventKind = Literal["manual", "github", "gitlab", "generic", "cloudevents", "files", "schedule"]
AttributeValue = str | int | float | bool | None

_EVENT_ID_CHARS = r"[A-Za-z0-9][A-Za-z0-9._:@/+=-]{0,199}"
_EVENT_ID = re.compile(_EVENT_ID_CHARS + r"\Z")
# The same rule for the OpenAPI document (a fire's ``event_id``).
EVENT_ID_PATTERN = f"^{_EVENT_ID_CHARS}$"

# Attributes are scalars (an event stays flat, and every source's values pass one rule);
# these few hold a list, written as a JSON array of strings.
LIST_ATTRIBUTES = ("changed_paths",)


class Event(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: EventKind
    id: str
    received_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    attributes: dict[str, AttributeValue] = Field(default_factory=dict)

    @field_validator("id")
    @classmethod
    def _id(cls, value: str) -> str:
        if not _EVENT_ID.match(value):
            raise ValueError(
                "event ids are 1-200 characters of letters, digits and ._:@/+=- "
                "and start with a letter or digit"
            )
        return value

    @field_validator("attributes")
    @classmethod
    def _attributes(cls, value: dict[str, AttributeValue]) -> dict[str, AttributeValue]:
        """The one rule for strings from outside (``trigger.core.text``), so no source can build
        an event around it: sources check first, to name the field in their own terms."""
        for key, item in value.items():
            why = text.problem(key)
            if why is not None:
                raise ValueError(f"attribute name {text.quoted(key)} {why}")
            if isinstance(item, str):
                why = text.problem(item)
                if why is not None:
                    raise ValueError(f"attribute {key} = {text.quoted(item)} {why}")
        return value

    def fields(self) -> dict[str, AttributeValue]:
        """Template values: the common fields, then the source's attributes."""
        # isoformat, not strftime: the same text at a third of the cost, per event.
        stamp = self.received_at.astimezone(UTC).replace(tzinfo=None)
        values: dict[str, AttributeValue] = {
            "event_id": self.id,
            "event_kind": self.kind,
            "event_date": stamp.date().isoformat(),
            "event_time": stamp.isoformat(timespec="seconds") + "Z",
        }
        values.update(self.attributes)
        return values


def manual_event(
    trigger: str,
    inputs: dict[str, str],
    *,
    event_id: str | None = None,
    fired_by: str | None = None,
) -> Event:
    """The event behind ``fire``. Without ``--event-id`` every fire is a new event."""
    who = fired_by or whoami()
    attributes: dict[str, AttributeValue] = {"trigger": trigger, "fired_by": who, **inputs}
    return Event(kind="manual", id=event_id or f"fire-{uuid.uuid4().hex}", attributes=attributes)


def whoami() -> str:
    """Who runs this process, for the log: the login name, else ``unknown``."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def list_attribute(attributes: Mapping[str, Any], key: str) -> list[str] | None:
    """A list attribute (``LIST_ATTRIBUTES``) as the list it stands for; None when it is
    absent or not a JSON array (a summary cut short by an older version)."""
    raw = attributes.get(key)
    if isinstance(raw, list):
        return [item for item in raw if isinstance(item, str)]
    if not isinstance(raw, str):
        return None
    try:
        value = json.loads(raw)
    except ValueError:
        return None
    return [item for item in value if isinstance(item, str)] if isinstance(value, list) else None


def readable_attributes(attributes: Mapping[str, Any]) -> dict[str, Any]:
    """Attributes as people and JSON readers get them (``runs show``, ``explain``, the
    API): a list attribute is a real list, not JSON inside JSON."""
    out = dict(attributes)
    for key in LIST_ATTRIBUTES:
        value = list_attribute(attributes, key)
        if value is not None:
            out[key] = value
    return out


def fitted_list(items: list[str], limit: int) -> str:
    """A list attribute's JSON in at most ``limit`` characters: whole items from the
    front, never a cut one (that would not parse)."""
    kept = list(items)
    encoded = json.dumps(kept)
    while kept and len(encoded) > limit:
        kept.pop()
        encoded = json.dumps(kept)
    return encoded
