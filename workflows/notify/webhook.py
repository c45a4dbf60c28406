"""Signed webhooks: a versioned JSON document, signed per Standard Webhooks.

The document's shape is a contract (``SCHEMA_VERSION``, documented in the
README). ``webhook-id`` is derived from the run id and the status, so a
re-delivery after a crash carries the same id and receivers can drop it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from standardwebhooks.webhooks import Webhook

from trigger.core import secrets
from trigger.core.errors import NotifierError
from trigger.core.settings.notify import WebhookNotifier
from workflows.notify.http import Outbound, check_url, read_env
from workflows.notify.notice import Notice, iso

SCHEMA_VERSION = 1


def message_id(run_id: str, status: str) -> str:
    """Stable per run and status: the receiver's deduplication key."""
    digest = hashlib.sha256(f"{run_id}\n{status}".encode()).hexdigest()[:32]
    return f"msg_{digest}"


def document(notice: Notice) -> dict[str, Any]:
    changed_at = notice.finished_at if notice.final else notice.started_at
    return {
        "type": f"run.{notice.status}",
        "schema_version": SCHEMA_VERSION,
        "timestamp": iso(changed_at if changed_at is not None else notice.started_at),
        "data": {
            "run_id": notice.run_id,
            "trigger": notice.trigger,
            "status": notice.status,
            "branch": notice.branch or None,
            "job_id": notice.job_id,
            "parameters": notice.parameters,
            "started_at": iso(notice.started_at),
            "finished_at": iso(notice.finished_at),
            "duration_seconds": notice.duration,
            "error": notice.error,
            "log_tail": list(notice.log_tail) if notice.status != "succeeded" else [],
            "event": notice.event,
            "run_url": notice.run_url,
            "publish": notice.publish,
            "test": notice.test,
        },
    }


def signers(display: str, variable: str, value: str) -> list[Webhook]:
    """One signer per secret: during a key rotation the variable holds several, and the
    body is signed with each (space-separated signatures, as Standard Webhooks says), so
    a receiver that knows either one verifies it."""
    return [signer(display, variable, key) for key in secrets.rotation(value)]


def signer(display: str, variable: str, secret: str) -> Webhook:
    problem = secrets.whsec_problem(secret)
    if problem is not None:
        raise NotifierError(
            f"notifier {display}: the value of {variable} {problem} (not shown): it must be a "
            "Standard Webhooks secret, whsec_ and a base64 key; generate one with: python -c "
            "\"import base64,os;print('whsec_'+base64.b64encode(os.urandom(32)).decode())\""
        )
    try:
        return Webhook(secret)
    except Exception as exc:  # binascii.Error, EmptyWebhookSecretError, ...
        raise NotifierError(
            f"notifier {display}: the value of {variable} is not a valid whsec_ base64 secret "
            f"(not shown; {type(exc).__name__})"
        ) from None


def build(
    notice: Notice, cfg: WebhookNotifier, display: str, environ: Mapping[str, str] | None = None
) -> Outbound:
    url = check_url(display, cfg.url_env, read_env(display, "url_env", cfg.url_env, environ))
    secret = read_env(display, "secret_env", cfg.secret_env, environ)
    hooks = signers(display, cfg.secret_env, secret)
    body = json.dumps(document(notice), sort_keys=True, separators=(",", ":"))
    msg_id = message_id(notice.run_id, notice.status)
    now = datetime.now(UTC)
    headers = {
        **cfg.headers,
        "Content-Type": "application/json",
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": " ".join(hook.sign(msg_id, now, body) for hook in hooks),
    }
    return Outbound(
        url=url,
        headers=headers,
        body=body.encode(),
        secrets=(url, secret, *secrets.rotation(secret)),
    )
