"""The real SDK's own errors, where no network is needed, mapped to messages and retries."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from trigger.core.errors import BauplanFailure
from workflows.bauplan.adapter import Bauplan, live_client, normalise_state


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_no_api_key_is_permanent_and_says_where_keys_come_from() -> None:
    with pytest.raises(BauplanFailure) as info:
        live_client()
    assert info.value.retryable is False
    assert "BAUPLAN_API_KEY" in str(info.value) and "rehearse" in str(info.value)


def test_an_unreachable_endpoint_is_transient(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BAUPLAN_API_KEY", "k" * 24)
    monkeypatch.setenv("BAUPLAN_API_ENDPOINT", f"http://127.0.0.1:{_closed_port()}")
    with pytest.raises(BauplanFailure) as info:
        Bauplan(live_client()).username()
    assert info.value.retryable is True
    assert "unreachable" in str(info.value) and "BAUPLAN_API_ENDPOINT" in str(info.value)
    assert "k" * 24 not in str(info.value)


def test_a_project_without_bauplan_project_yml_is_permanent(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("BAUPLAN_API_KEY", "k" * 24)
    monkeypatch.setenv("BAUPLAN_API_ENDPOINT", f"http://127.0.0.1:{_closed_port()}")
    (tmp_path / "empty").mkdir()
    with pytest.raises(BauplanFailure) as info:
        Bauplan(live_client()).submit(str(tmp_path / "empty"), "alice.x", {})
    assert info.value.retryable is False
    assert "bauplan_project.yml" in str(info.value) and "project_dir" in str(info.value)


@pytest.mark.parametrize(
    ("raw", "state"),
    [
        ("COMPLETE", "success"),
        ("SUCCESS", "success"),
        ("Complete", "success"),
        ("JobState.FAIL", "failed"),
        ("FAILED", "failed"),
        ("Abort", "cancelled"),
        ("RUNNING", "running"),
        ("NOT_STARTED", "running"),
    ],
)
def test_job_states_compare_case_insensitively(raw: str, state: str) -> None:
    assert normalise_state(raw) == state


def test_the_reconcile_listing_uses_arguments_the_real_sdk_accepts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from datetime import UTC, datetime, timedelta

    monkeypatch.setenv("BAUPLAN_API_KEY", "k" * 24)
    monkeypatch.setenv("BAUPLAN_API_ENDPOINT", f"http://127.0.0.1:{_closed_port()}")
    now = datetime.now(UTC)
    # The SDK checks kinds, time zones and limits before it connects: getting as far
    # as the closed port means it took every argument.
    with pytest.raises(BauplanFailure) as info:
        Bauplan(live_client()).run_jobs(now - timedelta(seconds=5), now)
    assert info.value.retryable is True and "unreachable" in str(info.value)


def test_a_submission_the_sdk_refuses_before_sending_is_known_to_have_no_job(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from trigger.core.errors import RunRefused

    monkeypatch.setenv("BAUPLAN_API_KEY", "k" * 24)
    monkeypatch.setenv("BAUPLAN_API_ENDPOINT", f"http://127.0.0.1:{_closed_port()}")
    (tmp_path / "empty").mkdir()
    with pytest.raises(RunRefused):
        Bauplan(live_client()).submit(str(tmp_path / "empty"), "alice.x", {})


def test_only_answers_that_prove_no_job_count_as_refusals() -> None:
    from workflows.bauplan.adapter import refused_for_sure
    from workflows.bauplan.faults import sdk_error

    for name in ("TooManyRequestsError", "BadRequestError", "UnauthorizedError"):
        assert refused_for_sure(sdk_error(name, "no")), name
    for name in ("ServiceUnavailableError", "GatewayTimeoutError", "InternalError"):
        assert not refused_for_sure(sdk_error(name, "lost")), name
    assert not refused_for_sure(sdk_error("BauplanError", "request timed out"))
    assert refused_for_sure(ValueError("No API key found"))
