"""What the hook and API property suites share: one ingress per module, strategies for
hostile values, and the check that what an ingress took reads back everywhere.

The ingress has a system database and an enqueuer but no DBOS executor (like ``serve
--role ingress``): accepted runs stay queued, so an example costs a request or two,
not a run, and DBOS is never launched.
"""

from __future__ import annotations

import contextlib
import json
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from hypothesis import event
from hypothesis import strategies as st

from tests.support import fresh_database, make_settings
from tests.trigger.hookkit import (
    LiveServer,
    cloudevents_trigger,
    generic_trigger,
    github_trigger,
)
from tests.trigger.properties import OUTSIDE_TEXT

# The answers a hook documents (trigger/ingest.py RESPONSES, plus generic's 404).
HOOK_STATUSES = {200, 202, 400, 401, 404, 413, 415}
API_STATUSES = {200, 404, 422}

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | OUTSIDE_TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(OUTSIDE_TEXT, inner, max_size=3),
    max_leaves=8,
)


@dataclass
class Ingress:
    settings: Any
    http: httpx.Client


def hook_triggers(project_dir: Path) -> list[dict[str, Any]]:
    """One trigger per webhook source, each using its source's fields in templates."""
    gitlab = {**github_trigger(project_dir, name="gl")}
    gitlab["gitlab"] = {"repo": "acme/data/lakehouse", "secret_env": "GITLAB_WEBHOOK_TOKEN"}
    del gitlab["github"]
    generic = generic_trigger(
        project_dir,
        fields={"table": "string", "rows": "number", "full": "boolean"},
        optional=["rows", "full"],
    )
    return [github_trigger(project_dir), gitlab, generic, cloudevents_trigger(project_dir)]


@contextlib.contextmanager
def database(kind: str) -> Iterator[str | None]:
    """``None`` for SQLite, else a fresh PostgreSQL database, under the policy of the
    ``backend`` fixture (tests/conftest.py): skipped when unreachable, failed in CI."""
    if kind == "sqlite":
        yield None
        return
    with fresh_database() as url:
        yield url


@contextlib.contextmanager
def running_ingress(tmp_path: Path, backend: str | None) -> Iterator[Ingress]:
    from trigger.context import ServiceContext
    from trigger.service import create_app
    from workflows.app import prepare_database
    from workflows.intake import Enqueuer

    project = tmp_path / "pipelines" / "orders"
    project.mkdir(parents=True)
    (project / "bauplan_project.yml").write_text("project:\n  id: test\n  name: orders\n")
    settings = make_settings(tmp_path, backend, project, triggers=hook_triggers(project))
    prepare_database(settings)
    enqueuer = Enqueuer(settings)
    context = ServiceContext(settings=settings, role="ingress", enqueuer=enqueuer)
    server = LiveServer(create_app(settings, context))
    # As serve does (trigger/http/app.py): without it each answer waits 40 ms for an ACK.
    server.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        with server, httpx.Client(base_url=server.url, timeout=60) as http:
            yield Ingress(settings, http)
    finally:
        enqueuer.close()


def reads_back(ingress: Ingress, answer: httpx.Response) -> None:
    """Whatever the answer, the event log still pages; after a 2xx, the event and each of
    its runs read back through the API."""
    event(f"answer {answer.status_code}")  # --hypothesis-show-statistics: what the fuzz reached
    recent = ingress.http.get("/api/events", params={"limit": 3})
    assert recent.status_code == 200, recent.text
    if answer.status_code >= 300:
        return
    body = answer.json()
    if "event" in body:
        story = ingress.http.get(f"/api/events/{body['event']}")
        assert story.status_code == 200, story.text
        assert story.json()["events"], story.text
    for run_id in body.get("runs") or []:
        run = ingress.http.get(f"/api/runs/{run_id}")
        assert run.status_code == 200, run.text


def json_bytes(data: Any, ascii_only: bool) -> bytes:
    """A body as a sender may write it: escapes (``\\ud800``) or raw UTF-8, where a lone
    surrogate becomes the bytes a careless encoder writes for it."""
    return json.dumps(data, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")


def header_values() -> st.SearchStrategy[bytes]:
    """Any bytes a header value may carry on the wire (no CR, LF, NUL or other C0)."""
    chars = st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f")
    return st.text(chars, max_size=30).map(lambda s: s.encode("latin-1").strip())


def posts_and_reads_back(
    ingress: Ingress, path: str, delivery: tuple[bytes, dict[str, Any]]
) -> None:
    """One fuzzed delivery: the answer is one the hooks document, and what it took reads
    back through the API."""
    body, headers = delivery
    answer = ingress.http.post(path, content=body, headers=headers)
    assert answer.status_code in HOOK_STATUSES, answer.text
    reads_back(ingress, answer)
