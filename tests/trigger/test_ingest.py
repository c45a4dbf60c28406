"""The path every webhook shares: its JSON parsing, over real HTTP on loopback."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.trigger.hookkit import standard_headers


def _numbers_trigger(project_dir: Path) -> dict[str, Any]:
    return {
        "name": "loader",
        "project_dir": str(project_dir),
        "branch": "load",
        "generic": {
            "secret_env": "GENERIC_WEBHOOK_SECRET",
            "fields": {"rows": "integer", "ratio": "number"},
            "optional": ["rows", "ratio"],
        },
    }


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_numbers_a_hook_cannot_hold_are_named_not_called_invalid_json(
    hooks: Any, project_dir: Path
) -> None:
    _, _, url = hooks(triggers=[_numbers_trigger(project_dir)])
    bodies = {
        b'{"rows": ' + b"7" * 5000 + b"}": (
            "a number in the body has 5000 digits, more than the 4300 this service reads; "
            "send such a value as a string"
        ),
        b'{"ratio": 1e999}': (
            "a number in the body (1e999) is beyond the range of a 64-bit float; "
            "send such a value as a string"
        ),
        b'{"ratio": -Infinity}': "the body is not valid JSON (-Infinity is not a JSON number)",
        b'{"ratio": NaN}': "the body is not valid JSON (NaN is not a JSON number)",
        b'{"rows": 1': "the body is not valid JSON",
    }
    for n, (body, message) in enumerate(bodies.items()):
        response = httpx.post(
            f"{url}/hooks/generic/loader",
            content=body,
            headers=standard_headers(body, msg_id=f"msg_{n}"),
            timeout=30,
        )
        assert (response.status_code, response.json()) == (400, {"error": message})
    longest = b'{"rows": ' + b"7" * 4300 + b', "ratio": 0.5}'
    taken = httpx.post(
        f"{url}/hooks/generic/loader",
        content=longest,
        headers=standard_headers(longest, msg_id="msg_longest"),
        timeout=30,
    )
    assert taken.status_code == 202, taken.text
    events = httpx.get(f"{url}/api/events", timeout=30)
    assert events.status_code == 200, events.text
    assert [e["outcome"] for e in events.json()["events"]] == ["accepted"] + ["rejected"] * 5
