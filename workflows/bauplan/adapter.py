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

import yaml

from trigger.core.errors import BauplanFailure, PublishConflict, RunRefused

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
    def get_job_contexts(self, *args: Any, **kwargs: Any) -> list[Any]: ...
    def get_branch(self, *args: Any, **kwargs: Any) -> Any: ...
    def merge_branch(self, *args: Any, **kwargs: Any) -> Any: ...
    def get_commits(self, *args: Any, **kwargs: Any) -> Any: ...
    def delete_branch(self, *args: Any, **kwargs: Any) -> Any: ...


FINAL_STATES = ("success", "failed", "cancelled")
# Job contexts asked for in one call while reconciling a submission.
_CONTEXT_BATCH = 100


@dataclass(frozen=True)
class Project:
    """What a project folder's ``bauplan_project.yml`` says it is, as far as it says."""

    id: str | None
    name: str | None


@dataclass(frozen=True)
class JobFacts:
    """What Bauplan tells about a run job: when, on which ref, of which project.
    Never its parameters: neither ``Job`` nor ``JobContext`` carries them."""

    job_id: str
    created_at: datetime | None
    ref: str | None
    project: Project


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
        """The job id of a new run. ``RunRefused`` when Bauplan answered with an error
        (or the SDK refused before sending), so no job exists; any other failure leaves
        that open, and the caller must look before submitting again."""
        try:
            state = self._client.run(
                project_dir=project_dir, ref=ref, parameters=parameters or None, detach=True
            )
        except Exception as exc:
            failure = translate(exc, "run")
            if refused_for_sure(exc):
                raise RunRefused(str(failure), retryable=failure.retryable) from None
            raise failure from None
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

    def head(self, branch: str) -> str:
        """The hash ``branch`` points at now."""
        return str(_call("get_branch", lambda: self._client.get_branch(branch)).hash)

    def merge_with(self, into: str, properties: dict[str, str]) -> str | None:
        """The hash of a merge into ``into`` carrying ``properties``, if one was made."""
        found = _call(
            "get_commits",
            lambda: list(self._client.get_commits(into, filter_by_properties=properties, limit=1)),
        )
        return str(found[0].ref.hash) if found else None

    def merge(
        self, source_ref: str, into: str, message: str, body: str, properties: dict[str, str]
    ) -> str:
        """Merge ``source_ref`` (``branch@hash``) into ``into``; the new head's hash.
        ``PublishConflict`` when the target moved under us or the merge conflicts."""
        try:
            merged = self._client.merge_branch(
                source_ref,
                into,
                commit_message=message,
                commit_body=body,
                commit_properties=properties,
            )
        except Exception as exc:
            if type(exc).__name__ in ("MergeConflictError", "BranchHeadChangedError"):
                raise PublishConflict(
                    f"merging {source_ref} into {into} was refused: {type(exc).__name__}: "
                    f"{_clip(str(exc))}"
                ) from None
            raise translate(exc, "merge_branch") from None
        return str(merged.hash)

    def delete_branch(self, branch: str) -> None:
        _call("delete_branch", lambda: self._client.delete_branch(branch, if_exists=True))

    def run_jobs(self, since: datetime, until: datetime) -> list[JobFacts]:
        """Every run job of this API key's user created between ``since`` and ``until``,
        with its ref and project: how a re-executed submit finds the job its crashed
        first attempt may have started. The SDK's iterator is read to the end, page
        after page, however many jobs the window holds."""
        jobs = _call(
            "get_jobs",
            lambda: list(
                self._client.get_jobs(
                    filter_by_current_user=True,
                    filter_by_kinds=_run_kind(),
                    filter_by_created_after=since,
                    filter_by_created_before=until,
                )
            ),
        )
        created = {str(job.id): getattr(job, "created_at", None) for job in jobs}
        ids = list(created)
        facts: list[JobFacts] = []
        for start in range(0, len(ids), _CONTEXT_BATCH):
            contexts = _call(
                "get_job_contexts",
                partial(self._client.get_job_contexts, ids[start : start + _CONTEXT_BATCH]),
            )
            for context in contexts:
                job_id = str(context.id)
                facts.append(
                    JobFacts(
                        job_id=job_id,
                        created_at=created.get(job_id),
                        ref=getattr(context, "ref", None),
                        project=Project(
                            getattr(context, "project_id", None),
                            getattr(context, "project_name", None),
                        ),
                    )
                )
        return facts


def _run_kind() -> Any:
    from bauplan.schema import JobKind

    return JobKind.RUN


def project_identity(project_dir: Path) -> Project:
    """The ``project`` section of the folder's ``bauplan_project.yml``: its id and name,
    as Bauplan reports them back in a job's context. Unknown parts are None."""
    for name in ("bauplan_project.yml", "bauplan_project.yaml"):
        try:
            data = yaml.safe_load((project_dir / name).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, yaml.YAMLError):
            continue
        section = data.get("project") if isinstance(data, dict) else None
        if isinstance(section, dict):
            found = {k: section.get(k) for k in ("id", "name")}
            return Project(*(None if v is None else str(v) for v in found.values()))
        return Project(None, None)
    return Project(None, None)


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
    if name == "BauplanJobError" and _is_project_file_error(text):
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


def refused_for_sure(exc: BaseException) -> bool:
    """Whether a failed ``run`` call provably started no job: the SDK refused it before
    sending (no API key, a bad argument, an unreadable project file) or Bauplan
    answered with a client error (4xx, 429 included). A 5xx, a timeout or a lost
    connection proves nothing: the job may exist and only the answer was lost."""
    code = getattr(exc, "code", None)
    if isinstance(code, int):
        return 400 <= code < 500
    if type(exc).__name__ == "BauplanJobError":
        return _is_project_file_error(str(exc))
    return isinstance(exc, ValueError | TypeError)


def _is_project_file_error(text: str) -> bool:
    return "bauplan_project" in text or "project file" in text


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
