"""The one rule for strings from outside: what is refused, stripped, escaped, repaired."""

from __future__ import annotations

import json
import unicodedata

from hypothesis import given
from hypothesis import strategies as st

from tests.trigger.properties import OUTSIDE_TEXT, PROPERTY, examples
from trigger.core import text

CONTROLS = ["\x00", "\n", "\r", "\x1b", "\x7f", "\x85", "\x9b", "\u2028", "\u2029", "\u202e"]


def test_identifiers_with_a_control_character_or_a_lone_surrogate_are_refused() -> None:
    for char in CONTROLS:
        assert text.problem(f"oct{char}cat") == (
            f"has a control character (U+{ord(char):04X}) at position 3"
        )
    assert text.problem("oct\ud800cat") == (
        "is not valid Unicode: it holds a lone surrogate (U+D800) at position 3"
    )
    assert text.problem("Zoë Łukasz 李 🚀 refs/heads/main") is None


def test_free_text_loses_its_control_characters_and_keeps_the_rest() -> None:
    assert text.stripped("Fix\x1b[31m orders\x7f\u202e é") == "Fix[31m orders é"


def test_a_line_of_text_shows_controls_and_surrogates_as_escapes() -> None:
    forged = "x\n2026-11-23T10:00:00 INFO trigger.ingest: delivery FORGED"
    assert text.escaped(forged) == "x\\n2026-11-23T10:00:00 INFO trigger.ingest: delivery FORGED"
    assert text.escaped("\x1b[2J\r\t\x00\x85\u2028\ud800é") == (
        "\\x1b[2J\\r\\t\\x00\\x85\\u2028\\ud800é"
    )


def test_stored_data_is_made_readable_and_a_json_path_names_the_bad_string() -> None:
    stored = {"pusher": "oct\ud800cat", "n": 1, "list": ["ok", "\udcff"], "\ud83d": None}
    assert text.readable(stored) == {
        "pusher": "oct\\ud800cat",
        "n": 1,
        "list": ["ok", "\\udcff"],
        "\\ud83d": None,
    }
    assert text.first_invalid({"pusher": {"name": "a\ud800"}})[0] == "pusher.name"  # type: ignore[index]
    assert text.first_invalid({"commits": [{}, {"id": "\udfff"}]})[0] == "commits[1].id"  # type: ignore[index]
    assert text.first_invalid({"a\ud800": 1})[0] == "a\\ud800 (a key)"  # type: ignore[index]
    assert text.first_invalid({"emoji": "🚀", "deep": [[[["x"]]]]}) is None


@PROPERTY
@given(OUTSIDE_TEXT)
def test_an_escaped_string_is_one_encodable_line_and_only_unsafe_ones_change(value: str) -> None:
    shown = text.escaped(value)
    assert len(shown.splitlines()) <= 1
    shown.encode("utf-8")
    assert not any(unicodedata.category(ch) == "Cc" for ch in shown)
    assert (shown == value) == (text.problem(value) is None)


@examples(60)
@given(
    st.recursive(
        OUTSIDE_TEXT,
        lambda inner: (
            st.lists(inner, max_size=4) | st.dictionaries(OUTSIDE_TEXT, inner, max_size=4)
        ),
        max_leaves=12,
    )
)
def test_readable_data_always_encodes_and_first_invalid_finds_what_would_not(data: object) -> None:
    json.dumps(text.readable(data), ensure_ascii=False).encode("utf-8")
    try:
        json.dumps(data, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        assert text.first_invalid(data) is not None
    else:
        assert text.first_invalid(data) is None


@PROPERTY
@given(OUTSIDE_TEXT)
def test_what_is_stripped_passes_as_an_identifier_unless_it_is_not_unicode(value: str) -> None:
    clean = text.stripped(value)
    assert text.problem(clean) == text.invalid(clean)
