"""``POST /hooks/gitlab``: GitLab push and tag push webhooks.

GitLab sends the secret itself in ``X-Gitlab-Token``; it is compared in
constant time with each GitLab trigger's secret before the body is parsed, and
as for GitHub only the triggers whose secret matches may start runs.
"""

from __future__ import annotations

import logging

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from trigger.core.gitref import SHA, ZERO_SHA
from trigger.core.settings import TriggerConfig
from trigger.http.app import header_parameters, state
from trigger.ingest import Delivery, Rejected, ignore
from trigger.sources.webhooks.filters import git_section
from trigger.sources.webhooks.hook import (
    JSON_OBJECT,
    RESPONSES,
    deliver_push,
    event_id,
    make_event,
    parse_object,
    read_body,
    require_json,
    respond,
    token_verifies,
    verified,
)
from trigger.sources.webhooks.push import (
    COMMIT_CAP,
    Push,
    commit_list,
    identifier,
    obj,
    text,
    web_url,
)

log = logging.getLogger(__name__)

_REFUSED = "the X-Gitlab-Token header is missing or does not match"

router = APIRouter(tags=["hooks"])

_HANDLED = ("Push Hook", "Tag Push Hook")


@router.post(
    "/hooks/gitlab",
    summary="GitLab push webhook",
    description="Check X-Gitlab-Token, turn a Push Hook (or Tag Push Hook, for triggers "
    "with tags) into runs of the matching triggers, answer after they are durably enqueued.",
    responses=RESPONSES,
    openapi_extra={
        "requestBody": JSON_OBJECT,
        "parameters": header_parameters(
            "x-gitlab-event", "x-gitlab-token", "x-gitlab-event-uuid", "idempotency-key"
        ),
    },
)
async def gitlab_hook(request: Request) -> JSONResponse:
    delivery = Delivery("gitlab", request=request)
    return await respond(delivery, _handle(request, delivery))


async def _handle(request: Request, delivery: Delivery) -> JSONResponse:
    headers = request.headers
    delivery.id = event_id(
        "gl", headers.get("idempotency-key") or headers.get("x-gitlab-event-uuid")
    )
    kind, token = headers.get("x-gitlab-event"), headers.get("x-gitlab-token")
    settings = state(request).settings
    require_json(request)
    body = await read_body(request, settings.service.max_body_bytes)
    candidates = [t for t in settings.triggers if t.gitlab is not None]
    if not candidates:
        raise Rejected(404, "no trigger has a [triggers.gitlab] section")
    allowed = verified(candidates, _secret_env, lambda secret: token_verifies(secret, token))
    if not allowed:
        raise Rejected(401, _REFUSED)
    payload = parse_object(body)
    if kind not in _HANDLED:
        why = f"X-Gitlab-Event {str(kind)[:40]!r} is not handled; only pushes start runs"
        return await ignore(request, delivery, make_event("gitlab", delivery.id, {}), why)
    return await deliver_push(
        request,
        delivery,
        "gitlab",
        _push(payload),
        candidates,
        allowed,
        _REFUSED,
    )


def _secret_env(trig: TriggerConfig) -> str:
    return git_section(trig, "gitlab").secret_env


def _push(payload: dict[str, object]) -> Push:
    data = dict(payload)
    project = obj(data, "project", where="payload")
    commits = commit_list(data)
    total = data.get("total_commits_count")
    total = total if isinstance(total, int) and not isinstance(total, bool) else len(commits)
    before = text(data, "before", where="payload")
    after = text(data, "after", where="payload")
    complete = not (
        total > len(commits)
        or len(commits) > COMMIT_CAP
        or before == ZERO_SHA
        or (not commits and after != ZERO_SHA)
    )
    checkout = data.get("checkout_sha")
    field = "user_username" if data.get("user_username") else "user_name"
    pusher = data.get(field)
    head = commits[-1] if commits else None
    for commit in commits:
        if commit.get("id") == after:
            head = commit
    return Push(
        repo=text(project, "path_with_namespace", where="project"),
        ref=text(data, "ref", where="payload"),
        before=before,
        after=after,
        pusher=identifier(pusher, where=field) if isinstance(pusher, str) else "",
        commits=commits,
        head=head,
        commits_complete=complete,
        peeled=checkout if isinstance(checkout, str) and SHA.match(checkout) else None,
        web_url=web_url(project, "web_url"),
        commit_path="-/commit",
    )
