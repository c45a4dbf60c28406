"""``[service] public_url``: where the page lives, and so where notification links point."""

from __future__ import annotations

import pytest

from trigger.core.errors import ConfigError
from trigger.core.settings import build_settings


def _service(**service: str) -> object:
    return build_settings({"service": service}, environ={}).service


def test_without_public_url_there_is_no_run_url() -> None:
    assert _service().run_url("run:orders:gh-1") is None  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("public_url", "page"),
    [
        ("https://trigger.example.com", "https://trigger.example.com/runs/run:orders:gh-1%2F2"),
        ("https://example.com/bt/", "https://example.com/bt/runs/run:orders:gh-1%2F2"),
        ("http://127.0.0.1:8080", "http://127.0.0.1:8080/runs/run:orders:gh-1%2F2"),
    ],
)
def test_the_run_page_is_under_public_url(public_url: str, page: str) -> None:
    assert _service(public_url=public_url).run_url("run:orders:gh-1/2") == page  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("public_url", "said"),
    [
        ("trigger.example.com", "must be an http:// or https:// URL with a host"),
        ("ftp://trigger.example.com", "must be an http:// or https:// URL with a host"),
        ("https://trigger.example.com/a b", "has a space"),
        ("https://trigger.example.com/|<!channel>", "one of <>|"),
        ("https://trigger.example.com/?x=1", "must not have a query or fragment"),
        ("https://trigger.example.com:99999", "is not a URL"),
    ],
)
def test_a_public_url_that_cannot_be_a_link_is_refused_at_load(public_url: str, said: str) -> None:
    with pytest.raises(ConfigError, match="public_url") as caught:
        _service(public_url=public_url)
    assert said in str(caught.value)


def test_credentials_in_public_url_are_refused_without_being_echoed() -> None:
    with pytest.raises(ConfigError) as caught:
        _service(public_url="https://admin:hunter22@trigger.example.com")
    assert "must not hold credentials" in str(caught.value)
    assert "hunter22" not in str(caught.value)
