"""The one place that talks to Bauplan.

``Bauplan`` wraps a client (the real ``bauplan.Client`` or the rehearsal
stand-in, which has the same methods and keyword arguments) and translates SDK
errors into ``BauplanFailure`` with a retry decision, so workflow steps can let
DBOS retry the transient ones and fail fast on the rest.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any, Protocol, TypeVar

from trigger.errors import BauplanFailure

log = logging.getLogger(__name__)

T = TypeVar("T")


class BauplanClient(Protocol):
    """The subset of ``bauplan.Client`` we use; the rehearsal client implements it too."""

    def run(self, *args: Any, **kwargs: Any) -> Any: ...
    def get_job(self, *args: Any, **kwargs: Any) -> Any: ...
    def get_job_logs(self, *args: Any, **kwargs: Any) -> Any: ...
    def cancel_job(self, *args: Any, **kwargs: Any) -> Any: ...
    def info(self, *args: Any, **kwargs: Any) -> Any: ...
    def has_branch(self, *args: Any, **kwargs: Any) -> Any: ...
    def create_branch(self, *args: Any, **kwargs: Any) -> Any: ...
    def get_jobs(self, *args: Any, **kwargs: Any) -> Iterator[Any]: ...
    def get_job_context(self, *args: Any, **kwargs: Any) -> Any: ...


FINAL_STATES = ("success", "failed", "cancelled")


@dataclass(frozen=True)
class JobStatus:
    state: str  # "running" | "success" | "failed" | "cancelled"
    raw: str
    error: str | None = None

    @property
    def final(self) -> bool:
        return self.state in FINAL_STATES


# SDK status strings are upper case ("COMPLETE", "FAIL"); some versions say
# "SUCCESS"/"FAILED". Compare case-insensitively, mapping every spelling we know.
_STATE_WORDS = {
    "complete": "success",
    "completed": "success",
    "success": "success",
    "succeeded": "success",
    "fail": "failed",
    "failed": "failed",
    "failure": "failed",
    "error": "failed",
    "abort": "cancelled",
    "aborted": "cancelled",
    "cancelled": "cancelled",
    "canceled": "cancelled",
}


def normalise_state(raw: object) -> str:
    text = str(raw).strip().lower().rsplit(".", 1)[-1]
    return _STATE_WORDS.get(text, "running")


class Bauplan:
    def __init__(self, client: BauplanClient) -> None:
        self._client = client

    def username(self) -> str:
        info = _call("info", lambda: self._client.info())
        name = str(info.user.username)
        if not name:
            raise BauplanFailure(
                "Bauplan returned an empty username for this API key", retryable=False
            )
        return name

    def ensure_branch(self, branch: str, from_ref: str) -> bool:
        """Create ``branch`` from ``from_ref`` when missing; True when we created it."""
        if _call("has_branch", lambda: self._client.has_branch(branch)):
            return False
        _call(
            "create_branch",
            lambda: self._client.create_branch(branch, from_ref=from_ref, if_not_exists=True),
        )
        return True

    def submit(self, project_dir: str, ref: str, parameters: dict[str, Any]) -> str:
        state = _call(
            "run",
            lambda: self._client.run(
                project_dir=project_dir, ref=ref, parameters=parameters or None, detach=True
            ),
        )
        job_id = getattr(state, "job_id", None)
        if not job_id:
            error = getattr(state, "error", None) or "no job id returned"
            raise BauplanFailure(f"Bauplan did not accept the run: {error}", retryable=False)
        return str(job_id)

    def status(self, job_id: str) -> JobStatus:
        job = _call("get_job", lambda: self._client.get_job(job_id))
        raw = str(job.status)
        return JobStatus(
            state=normalise_state(raw), raw=raw, error=getattr(job, "error_message", None)
        )

    def log_tail(self, job_id: str, lines: int) -> list[str]:
        if lines <= 0:
            return []
        events = _call("get_job_logs", lambda: self._client.get_job_logs(job=job_id))
        out = [f"[{_word(e.level)}] {e.message}" for e in list(events)[-lines:]]
        return out

    def cancel(self, job_id: str) -> None:
        _call("cancel_job", lambda: self._client.cancel_job(job_id))

    def jobs_on_ref_since(self, ref: str, since: datetime) -> list[str]:
        """Run jobs on ``ref`` created at or after ``since``: how a re-executed submit
        step finds the job its crashed first attempt may already have started."""
        found: list[str] = []
        jobs = _call(
            "get_jobs",
            lambda: list(self._client.get_jobs(filter_by_created_after=since, limit=50)),
        )
        for job in jobs:
            if "run" not in str(getattr(job, "kind", "run")).lower():
                continue
            context = _call("get_job_context", partial(self._client.get_job_context, job.id))
            if getattr(context, "ref", None) == ref:
                found.append(str(job.id))
        return found


def _word(level: object) -> str:
    return str(level).rsplit(".", 1)[-1].upper()


def _call(what: str, fn: Callable[[], T]) -> T:
    try:
        return fn()
    except BauplanFailure:
        raise
    except Exception as exc:
        raise translate(exc, what) from None


_TRANSIENT_HTTP = {
    "TooManyRequestsError",
    "ServiceUnavailableError",
    "GatewayTimeoutError",
    "BadGatewayError",
    "InternalError",
}


def translate(exc: BaseException, what: str) -> BauplanFailure:
    """Map an SDK (or transport) error to a message and a retry decision."""
    name = type(exc).__name__
    text = str(exc)
    if isinstance(exc, ValueError) and "api key" in text.lower():
        return BauplanFailure(
            "no Bauplan API key found: set BAUPLAN_API_KEY, BAUPLAN_PROFILE or "
            '~/.bauplan/config.yml (or use [bauplan] mode = "rehearse" to try without one)',
            retryable=False,
        )
    if name == "BauplanJobError" and ("bauplan_project" in text or "project file" in text):
        return BauplanFailure(
            f"the project folder has no readable bauplan_project.yml ({_clip(text)}); "
            "check the trigger's project_dir",
            retryable=False,
        )
    if name in _TRANSIENT_HTTP:
        return BauplanFailure(
            f"Bauplan {what} failed, will retry: {name}: {_clip(text)}", retryable=True
        )
    if name == "BauplanError" and (
        "unavailable" in text.lower() or "connect" in text.lower() or "timed out" in text.lower()
    ):
        return BauplanFailure(
            f"Bauplan is unreachable ({_clip(text)}); check BAUPLAN_API_ENDPOINT and the network",
            retryable=True,
        )
    if isinstance(exc, TimeoutError | ConnectionError):
        return BauplanFailure(
            f"Bauplan {what} timed out or lost its connection: {_clip(text)}", retryable=True
        )
    if name == "UnauthorizedError":
        return BauplanFailure(
            "Bauplan refused the API key (401); check BAUPLAN_API_KEY or the profile",
            retryable=False,
        )
    return BauplanFailure(f"Bauplan {what} failed: {name}: {_clip(text)}", retryable=False)


def _clip(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def is_retryable(exc: BaseException) -> bool:
    """DBOS ``should_retry``: only translated failures that say so."""
    return isinstance(exc, BauplanFailure) and exc.retryable


def has_project_file(project_dir: Path) -> bool:
    return any((project_dir / n).is_file() for n in ("bauplan_project.yml", "bauplan_project.yaml"))


def live_client() -> BauplanClient:
    """The real SDK client. Credentials follow the SDK's own order; we add nothing."""
    import bauplan

    try:
        client: BauplanClient = bauplan.Client()
    except Exception as exc:
        raise translate(exc, "client set-up") from None
    return client
