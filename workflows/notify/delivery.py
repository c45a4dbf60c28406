"""Durable delivery of one notice through one notifier: the body of the notice workflow.

The workflow (``outbox``) loops over attempts itself so that waiting between them
(backoff, or as long as a 429's ``Retry-After`` says) is a durable ``DBOS.sleep``,
not a thread blocked inside a step. An attempt that finished is checkpointed and
never sent again; one cut short by a crash is sent again on recovery with the same
``webhook-id``. Delivery never raises: the outcome goes into the *run's* workflow
attributes (``notification:<kind>:<name>:<status>``, written by the run's id), which
``runs show`` lists, and the run's own status stays what it was.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from dbos import DBOS

from trigger.core.errors import NotifierError
from trigger.core.event import readable_attributes
from trigger.core.logfields import ids
from trigger.core.matching import RunRequest
from trigger.core.settings import Settings
from trigger.core.settings.notify import (
    AnyNotifier,
    GithubStatusNotifier,
    SlackNotifier,
    WebhookNotifier,
    display_name,
)
from workflows import crashpoint, runtime
from workflows.notify import github_status, slack, webhook
from workflows.notify.http import Answer, Outbound, send
from workflows.notify.notice import RESULT_STATUS, Notice
from workflows.result import RunResult

log = logging.getLogger(__name__)

ATTRIBUTE_PREFIX = "notification:"


def started_notice(req: RunRequest, branch: str, job_id: str, started_at: float) -> Notice:
    return Notice(
        run_id=req.run_id,
        trigger=req.trigger,
        status="started",
        branch=branch,
        job_id=job_id,
        parameters=dict(req.parameters),
        event=readable_attributes(req.summary),
        started_at=started_at,
    )


def final_notice(req: RunRequest, result: RunResult) -> Notice:
    return Notice(
        run_id=req.run_id,
        trigger=req.trigger,
        status=RESULT_STATUS.get(result.status, result.status),
        branch=result.branch,
        job_id=result.job_id,
        parameters=dict(result.parameters),
        event=readable_attributes(req.summary),
        started_at=result.started_at,
        finished_at=result.finished_at,
        error=result.error,
        log_tail=list(result.log_tail),
        publish=result.publish,
    )


def build_outbound(
    name: str, notifier: AnyNotifier, notice: Notice, environ: Mapping[str, str] | None = None
) -> Outbound | None:
    """The request for one notifier, secrets read now; None when it does not apply."""
    display = display_name(name, notifier)
    if isinstance(notifier, SlackNotifier):
        return slack.build(notice, notifier, display, environ)
    if isinstance(notifier, WebhookNotifier):
        return webhook.build(notice, notifier, display, environ)
    if isinstance(notifier, GithubStatusNotifier):
        return github_status.build(notice, notifier, display, environ)
    raise NotifierError(f"notifier {display}: unknown kind")  # pragma: no cover


def send_once(
    name: str, notifier: AnyNotifier, notice: Notice, environ: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """One attempt, as plain data that is safe to checkpoint. Never raises."""
    try:
        out = build_outbound(name, notifier, notice, environ)
    except NotifierError as exc:
        return {**Answer(False, False, None, str(exc)).as_dict(), "skipped": False}
    except Exception as exc:  # a bug must not leak a secret through DBOS's error record
        log.warning("notifier %s could not build its request (%s)", name, type(exc).__name__)
        reason = f"could not build the request ({type(exc).__name__})"
        return {**Answer(False, False, None, reason).as_dict(), "skipped": False}
    if out is None:
        reason = "not applicable: the run was not started by a GitHub push"
        return {**Answer(False, False, None, reason).as_dict(), "skipped": True}
    return {**send(out, notifier.timeout).as_dict(), "skipped": False}


def attempt(name: str, notice: dict[str, Any]) -> dict[str, Any]:
    """The DBOS step: reads the notifier's config and secrets at send time."""
    notifier = runtime.current().settings.notifiers.get(name)
    if notifier is None:
        reason = f"notifier {name!r} is no longer configured"
        return {**Answer(False, False, None, reason).as_dict(), "skipped": True}
    return send_once(name, notifier, Notice.from_dict(notice))


def wanted(settings: Settings, names: list[str], status: str) -> list[str]:
    return [n for n in names if n in settings.notifiers and status in settings.notifiers[n].on]


def deliver(name: str, notice: Notice) -> dict[str, Any]:
    notifier = runtime.current().settings.notifiers.get(name)
    if notifier is None:
        # The config changed between the enqueue and now: there is nothing to send with.
        log.warning(
            "notification %s of run %s %s: not sent, the notifier is no longer configured",
            name,
            notice.run_id,
            notice.status,
            extra=ids(run_id=notice.run_id, trigger=notice.trigger),
        )
        return {"name": name, "on": notice.status, "status": "skipped"}
    display = display_name(name, notifier)
    key = f"{ATTRIBUTE_PREFIX}{display}:{notice.status}"
    payload = notice.as_dict()
    delay = notifier.retry_interval
    attempts = 0
    while True:
        attempts += 1
        answer = crashpoint.step(
            {"name": f"notify {display} {notice.status}"}, attempt, name, payload
        )
        if answer["skipped"] or answer["delivered"]:
            break
        if not answer["retry"] or attempts >= notifier.max_attempts:
            break
        wait = answer["retry_after"]
        wait = min(wait, notifier.retry_after_cap) if wait is not None else delay
        delay = min(delay * 2, notifier.retry_max_interval)
        _record(notice.run_id, key, _entry(display, notice.status, "retrying", attempts, answer))
        log.info(
            "notification %s of run %s %s: attempt %d %s; retrying in %.1fs",
            display,
            notice.run_id,
            notice.status,
            attempts,
            answer["reason"],
            wait,
            extra=ids(run_id=notice.run_id, trigger=notice.trigger, outcome="retrying"),
        )
        DBOS.sleep(wait)
    state = "skipped" if answer["skipped"] else "delivered" if answer["delivered"] else "failed"
    entry = _entry(display, notice.status, state, attempts, answer)
    _record(notice.run_id, key, entry)
    if state == "failed":
        log.warning(
            "run %s: %s",
            notice.run_id,
            entry["message"],
            extra=ids(run_id=notice.run_id, trigger=notice.trigger, outcome=state),
        )
    else:
        log.info(
            "notification %s of run %s %s: %s after %d attempt(s) (%s)",
            display,
            notice.run_id,
            notice.status,
            state,
            attempts,
            answer["reason"],
            extra=ids(run_id=notice.run_id, trigger=notice.trigger, outcome=state),
        )
    return entry


def _entry(
    display: str, status: str, state: str, attempts: int, answer: dict[str, Any]
) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "name": display,
        "on": status,
        "status": state,
        "attempts": attempts,
        "code": answer["code"],
        "reason": answer["reason"],
        "at": datetime.now(UTC).isoformat(),
    }
    if state == "failed":
        tries = f" after {attempts} attempts" if attempts > 1 else ""
        entry["message"] = f"notification {display} failed: {answer['reason']}{tries}"
    return entry


def _record(run_id: str, key: str, entry: dict[str, Any]) -> None:
    """Into the run's record, where ``runs show``, ``explain`` and the page read it."""
    DBOS.update_workflow_attributes(run_id, {key: entry}, merge=True)


def records(attributes: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """The ``notifications`` list of a run record, oldest first."""
    entries = [
        value
        for key, value in (attributes or {}).items()
        if key.startswith(ATTRIBUTE_PREFIX) and isinstance(value, dict)
    ]
    return sorted(entries, key=lambda e: str(e.get("at", "")))


def sample_notice(settings: Settings, name: str, status: str, event: dict[str, Any]) -> Notice:
    users = [t.name for t in settings.triggers if name in t.notify]
    now = time.time()
    return Notice(
        run_id=f"notify-test-{uuid.uuid4().hex[:12]}",
        trigger=users[0] if users else "notify-test",
        status=status,
        branch="notify_test",
        job_id="notify-test-job",
        parameters={"example": "value"},
        event=event,
        started_at=now - 1.0,
        finished_at=None if status == "started" else now,
        error="this is a test: nothing failed" if status in ("failed", "cancelled") else None,
        log_tail=["test log line 1", "test log line 2"] if status == "failed" else [],
        test=True,
    )


def send_test(
    settings: Settings,
    name: str,
    *,
    status: str = "succeeded",
    repo: str | None = None,
    sha: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> tuple[str, dict[str, Any]]:
    """``notify-test``: one clearly marked message, no retries, the receiver's answer."""
    if name not in settings.notifiers:
        known = ", ".join(sorted(settings.notifiers)) or "none are configured"
        raise NotifierError(f"no notifier named {name!r}; configured notifiers: {known}")
    notifier = settings.notifiers[name]
    if isinstance(notifier, GithubStatusNotifier) and not (
        repo and sha and github_status.is_commit(repo, sha)
    ):
        raise NotifierError(
            f"notify-test of {display_name(name, notifier)} needs --repo OWNER/NAME and "
            f"--sha with the full 40-character commit sha to mark (got {repo!r}, {sha!r})"
        )
    event: dict[str, Any] = {"kind": "manual", "id": "notify-test", "fired_by": "notify-test"}
    if repo or sha:
        event = {
            "kind": "github",
            "id": "notify-test",
            "repo": repo,
            "git_sha": sha,
            "git_short_sha": (sha or "")[:7],
            "pusher": "notify-test",
        }
    notice = sample_notice(settings, name, status, event)
    answer = send_once(name, notifier, notice, environ)
    return display_name(name, notifier), answer
