"""The Event model: no source can build an event around the rule for strings from outside."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from trigger.core.event import Event, manual_event


@pytest.mark.parametrize(
    "value", ["oct\x00cat", "a\nb", "x\x1b[2J", "x\x85", "x\u2028", "oct\ud800"]
)
def test_an_attribute_with_a_control_character_or_a_lone_surrogate_is_refused(value: str) -> None:
    with pytest.raises(ValidationError, match="attribute pusher = "):
        Event(kind="github", id="gh-1", attributes={"pusher": value})
    with pytest.raises(ValidationError, match="attribute name "):
        Event(kind="generic", id="wh-1", attributes={f"body_{value}": "x"})


def test_plain_text_of_any_script_numbers_and_none_are_attributes() -> None:
    event = manual_event("orders", {"run_date": "2026-11-23", "who": "Zoë 李"}, fired_by="ana")
    assert event.attributes["who"] == "Zoë 李"
    Event(kind="files", id="file-1", attributes={"file_size": 3, "ok": True, "tag": None})
