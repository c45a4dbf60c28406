"""Templates only ever substitute whitelisted plain fields."""

from __future__ import annotations

import pytest

from trigger.errors import TemplateError
from trigger.templates import parse

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
