"""Templates only ever substitute whitelisted plain fields."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.trigger.properties import OUTSIDE_TEXT, PROPERTY
from trigger.core.errors import TemplateError
from trigger.core.matching import sanitise_suffix
from trigger.core.templates import parse

ALLOWED = {"git_branch", "event_date"}


def test_fields_are_substituted_by_concatenation() -> None:
    template = parse("orders_{git_branch}_{event_date}", where="t", allowed=ALLOWED)
    assert template.fields == {"git_branch", "event_date"}
    assert template.render({"git_branch": "main", "event_date": "2026-11-23"}) == (
        "orders_main_2026-11-23"
    )


def test_literal_braces_survive() -> None:
    assert parse("a{{b}}", where="t", allowed=ALLOWED).render({}) == "a{b}"


@pytest.mark.parametrize(
    ("source", "needle"),
    [
        ("{git_branch.__class__}", "attribute access"),
        ("{git_branch[0]}", "attribute access"),
        ("{git_branch!r}", "conversion or format spec"),
        ("{git_branch:>10}", "conversion or format spec"),
        ("{}", "attribute access"),
        ("{0}", "attribute access"),
        ("{secret}", "unknown field 'secret'"),
        ("{git_branch", "malformed"),
    ],
)
def test_anything_but_a_plain_allowed_field_is_refused(source: str, needle: str) -> None:
    with pytest.raises(TemplateError, match=needle) as info:
        parse(source, where="triggers.orders.branch", allowed=ALLOWED)
    assert "triggers.orders.branch" in str(info.value)


def test_a_missing_value_names_the_field() -> None:
    template = parse("x_{git_branch}", where="t", allowed=ALLOWED)
    with pytest.raises(TemplateError, match="git_branch"):
        template.render({})


_SOURCES = st.lists(
    OUTSIDE_TEXT | st.sampled_from(["{", "}", "{{", "}}", "{git_branch}", "{event_date}", "{x}"]),
    max_size=6,
).map("".join)


@PROPERTY
@given(source=_SOURCES, values=st.dictionaries(st.sampled_from(sorted(ALLOWED)), OUTSIDE_TEXT))
def test_any_template_parses_or_is_one_clear_error_and_renders_only_its_values(
    source: str, values: dict[str, str]
) -> None:
    try:
        template = parse(source, where="triggers.t.branch", allowed=ALLOWED)
    except TemplateError as exc:
        assert str(exc).startswith("triggers.t.branch: template ") and "\n" not in str(exc)
        return
    assert template.fields <= ALLOWED
    try:
        rendered = template.render(values)
    except TemplateError as exc:
        assert "which this event does not provide" in str(exc) and "\n" not in str(exc)
        return
    literal = "".join(text for text, _ in template.parts)
    assert len(rendered) == len(literal) + sum(
        len(values[name]) for _, name in template.parts if name
    )
    try:
        suffix = sanitise_suffix(rendered, trigger="t")
    except TemplateError:
        return
    assert re.fullmatch(r"[A-Za-z0-9_]{1,200}", suffix)
