"""Helpers for the webhook tests: signed requests, documented payload shapes, a live
server on loopback and real git repositories."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import hashlib
import hmac
import json
import socket
import subprocess
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import FastAPI

from tests.support import wait_until

PAYLOADS = Path(__file__).parent / "payloads"
GITHUB_SECRET = "It's a Secret to Everybody"
OTHER_SECRET = "another-repos-secret"
GITLAB_TOKEN = "gitlab-token-1234"
WHSEC = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def payload(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((PAYLOADS / name).read_text())
    return copy.deepcopy(data)


def github_push(**changes: Any) -> dict[str, Any]:
    data = payload("github_push.json")
    data.update(changes)
    return data


def gitlab_push(**changes: Any) -> dict[str, Any]:
    data = payload("gitlab_push.json")
    data.update(changes)
    return data


def commit(sha: str, *paths: str, message: str = "change") -> dict[str, Any]:
    return {
        "id": sha,
        "message": message,
        "timestamp": "2026-11-23T10:00:00Z",
        "added": [],
        "removed": [],
        "modified": list(paths),
    }


def body_of(data: dict[str, Any] | bytes) -> bytes:
    return data if isinstance(data, bytes) else json.dumps(data).encode()


def github_headers(
    body: bytes, *, secret: str | None = GITHUB_SECRET, delivery: str = "d-1", event: str = "push"
) -> dict[str, str]:
    headers = {
        "Content-Type": "application/json",
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": delivery,
        "User-Agent": "GitHub-Hookshot/044aadd",
    }
    if secret is not None:
        digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
        headers["X-Hub-Signature-256"] = f"sha256={digest}"
    return headers


def gitlab_headers(
    *, token: str | None = GITLAB_TOKEN, uuid: str = "u-1", event: str = "Push Hook"
) -> dict[str, str]:
    headers = {
        "Content-Type": "application/json",
        "X-Gitlab-Event": event,
        "X-Gitlab-Event-UUID": uuid,
    }
    if token is not None:
        headers["X-Gitlab-Token"] = token
    return headers


def standard_headers(
    body: bytes, *, secret: str = WHSEC, msg_id: str = "msg_1", when: datetime | None = None
) -> dict[str, str]:
    from standardwebhooks import Webhook

    stamp = when or datetime.now(UTC)
    signature = Webhook(secret).sign(msg_id, stamp, body.decode())
    return {
        "Content-Type": "application/json",
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(stamp.timestamp())),
        "webhook-signature": signature,
    }


def github_trigger(project_dir: Path, name: str = "orders", **rules: Any) -> dict[str, Any]:
    section = {"repo": "acme/lakehouse", "secret_env": "GITHUB_WEBHOOK_SECRET", **rules}
    return {
        "name": name,
        "project_dir": str(project_dir),
        "branch": "orders_{git_branch}",
        "parameters": {"sha": "{git_sha}", "pusher": "{pusher}"},
        "github": section,
    }


CE_TOKEN = "ce-token-5678"


def cloudevents_trigger(project_dir: Path, **section: Any) -> dict[str, Any]:
    """A CloudEvents trigger signed with Standard Webhooks (``auth="bearer"`` for a
    token), taking ``com.acme.table.*`` events with a ``table`` and ``rows`` (its
    templates use both, and the subject: an event without one is ignored)."""
    return {
        "name": "loaded",
        "project_dir": str(project_dir),
        "branch": "ce_{data_table}",
        "parameters": {
            "table": "{data_table}",
            "rows": "{data_rows}",
            "type": "{ce_type}",
            "source": "{ce_source}",
            "subject": "{ce_subject}",
        },
        "cloudevents": {
            "secret_env": "GENERIC_WEBHOOK_SECRET",
            "types": ["com.acme.table.*"],
            "fields": {"table": "string", "rows": "integer"},
            "optional": ["rows"],
            **section,
        },
    }


def generic_trigger(project_dir: Path, **generic: Any) -> dict[str, Any]:
    section = {
        "secret_env": "GENERIC_WEBHOOK_SECRET",
        "fields": {"table": "string", "rows": "integer", "full": "boolean"},
        "optional": ["full"],
        **generic,
    }
    return {
        "name": "loader",
        "project_dir": str(project_dir),
        "branch": "load_{body_table}",
        "parameters": {"table": "{body_table}", "rows": "{body_rows}"},
        "generic": section,
    }


class _ThreadServer(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class LiveServer:
    """The real ASGI app served by uvicorn on an ephemeral loopback port."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, log_config=None, access_log=False, lifespan="off")
        self.server = _ThreadServer(config)
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        asyncio.run(self.server.serve(sockets=[self.sock]))

    def __enter__(self) -> LiveServer:
        self.thread.start()
        wait_until(lambda: self.server.started, timeout=20, what="uvicorn to start")
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=20)
        self.sock.close()
        self.app.state.bauplan_trigger.engine.dispose()


def git(cwd: Path, *args: str) -> str:
    result = subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout.strip()


def make_repo(path: Path, subdir: str = "pipelines/orders") -> list[str]:
    """A repository with two commits of a Bauplan project; returns their shas, oldest first."""
    project = path / subdir
    project.mkdir(parents=True)
    git(path, "init", "-q", "-b", "main")
    (project / "bauplan_project.yml").write_text("project:\n  id: t\n  name: orders\n")
    (project / "models.py").write_text("VERSION = 1\n")
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", "first")
    first = git(path, "rev-parse", "HEAD")
    (project / "models.py").write_text("VERSION = 2\n")
    git(path, "commit", "-q", "-am", "second")
    return [first, git(path, "rev-parse", "HEAD")]


@contextlib.contextmanager
def ingress_server(settings: Any) -> Iterator[LiveServer]:
    """The app as an ingress serves it (an enqueuer, no worker) on ``settings``' database:
    what a delivery decides is logged by the same writer that would enqueue its runs."""
    from trigger.context import ServiceContext
    from trigger.service import create_app
    from workflows.app import prepare_database
    from workflows.intake import Enqueuer

    prepare_database(settings)
    enqueuer = Enqueuer(settings)
    context = ServiceContext(settings=settings, role="ingress", enqueuer=enqueuer)
    try:
        with LiveServer(create_app(settings, context)) as server:
            yield server
    finally:
        enqueuer.close()
