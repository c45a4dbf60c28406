"""The app keeps to its own OpenAPI document under generated input.

schemathesis reads ``/openapi.json`` from the app served on loopback, with DBOS
launched and an API token configured, and sends every operation (the API and the
hooks) inputs that fit the document and inputs that do not, with every check it has
on: no answer may be a server error, carry a status or content type the document
does not declare, break the schema it declares, accept what the document rules out,
refuse what it allows, or answer without the bearer token the document requires.
Hook bodies are signed with the test secrets, so that the fuzz reaches the parsing
behind the signature checks.

SQLite only: the fuzz is about the HTTP contract, which is the same code on both
databases; the inputs that once differed between them (paging bounds, huge
numbers) have their own tests on both.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import hypothesis
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from standardwebhooks import Webhook

from tests.support import final_run
from tests.trigger.hookkit import (
    GITHUB_SECRET,
    GITLAB_TOKEN,
    WHSEC,
    github_trigger,
)
from trigger.core.event import manual_event
from trigger.sources.manual import fire_event

# A budget, not a target: with these the whole fuzz takes about a minute on 2 cores.
EXAMPLES = 25
TOKEN = "fuzz-token-0123456789"
# Every check schemathesis has (max_response_time is timing, which belongs in bench/).
# Two answers to input the document allows are right all the same: a hook's body is
# its sender's payload (GitHub's, GitLab's, a generic trigger's declared fields), which
# the document names but does not restate, so a generated object lacks what a push
# carries (400); and the parameters a fire takes are each trigger's ``inputs`` in the
# config, which one document for every trigger cannot list (422), as which triggers have
# a schedule to backfill and what range holds their ticks (422).
ACCEPTED = ["2xx", "401", "403", "404", "409"]  # what a valid request may meet here
CONFIG: dict[str, Any] = {
    "checks": {"enabled": True},
    "operations": [
        {
            "include-tag": "hooks",
            "checks": {"positive_data_acceptance": {"expected-statuses": [*ACCEPTED, "400"]}},
        },
        {
            "include-path": "/api/triggers/{name}/fire",
            "checks": {"positive_data_acceptance": {"expected-statuses": [*ACCEPTED, "422"]}},
        },
        {
            "include-path": "/api/triggers/{name}/backfill",
            "checks": {"positive_data_acceptance": {"expected-statuses": [*ACCEPTED, "422"]}},
        },
    ],
}


def _triggers(project_dir: Path) -> list[dict[str, Any]]:
    gitlab = {**github_trigger(project_dir, name="gl")}
    gitlab["gitlab"] = {**gitlab.pop("github"), "secret_env": "GITLAB_WEBHOOK_TOKEN"}
    return [
        {"name": "orders", "project_dir": str(project_dir), "branch": "orders"},
        github_trigger(project_dir, name="gh"),
        gitlab,
        {
            "name": "loader",
            "project_dir": str(project_dir),
            "branch": "load_{body_table}",
            "generic": {
                "secret_env": "GENERIC_WEBHOOK_SECRET",
                "fields": {"table": "string", "rows": "integer"},
                "optional": ["rows"],
            },
        },
        {
            "name": "loaded",
            "project_dir": str(project_dir),
            "branch": "ce_{ce_type}",
            "cloudevents": {"secret_env": "GENERIC_WEBHOOK_SECRET"},
        },
    ]


class _Signed(requests.auth.AuthBase):
    """Signs each hook body as its sender would, once the body is serialised."""

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        body = request.body or b""
        raw = body.encode() if isinstance(body, str) else body
        path = request.path_url
        if path.startswith("/hooks/github"):
            digest = hmac.new(GITHUB_SECRET.encode(), raw, hashlib.sha256).hexdigest()
            request.headers["X-Hub-Signature-256"] = f"sha256={digest}"
        elif path.startswith("/hooks/gitlab"):
            request.headers["X-Gitlab-Token"] = GITLAB_TOKEN
        elif path.startswith(("/hooks/generic/", "/hooks/cloudevents/")):
            try:
                text = raw.decode()
            except UnicodeDecodeError:
                return request  # unsignable: it stays a 401
            msg_id = "msg_" + hashlib.sha256(raw).hexdigest()[:16]
            now = datetime.now(UTC)
            request.headers["webhook-id"] = msg_id
            request.headers["webhook-timestamp"] = str(int(now.timestamp()))
            request.headers["webhook-signature"] = Webhook(WHSEC).sign(msg_id, now, text)
        return request


def _cases(operation: Any, mode: GenerationMode, known: dict[str, list[str]]) -> Any:
    """Generated cases, plus cases whose path names things that exist (a trigger, a run)."""
    generated = operation.as_strategy(generation_mode=mode)
    names = [p.name for p in operation.path_parameters] if mode == GenerationMode.POSITIVE else []
    fixed = [
        operation.as_strategy(generation_mode=mode, path_parameters={name: value})
        for name in names
        for value in known.get(name, [])
    ]
    return st.one_of(generated, *fixed)


# schemathesis's strategies call the random module, which Hypothesis warns about.
@pytest.mark.filterwarnings(
    "ignore:Do not use the `random` module inside strategies"
    ":hypothesis.errors.HypothesisDeprecationWarning"
)
@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_every_operation_keeps_to_the_openapi_document(
    hooks: Any, project_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BT_TEST_API_TOKEN", TOKEN)
    _settings, enqueuer, url = hooks(
        triggers=_triggers(project_dir), api={"token_env": "BT_TEST_API_TOKEN"}
    )
    seed = fire_event(enqueuer, manual_event("orders", {}, event_id="seed"))
    final_run(enqueuer, seed.run_id)
    known = {
        "name": ["orders", "loader"],
        "trigger": ["loader"],
        "run_id": [seed.run_id],
        "ident": [seed.run_id, "seed"],
    }
    config = schemathesis.Config.from_dict(
        {**CONFIG, "auth": {"openapi": {"bearer": {"bearer": TOKEN}}}}
    )
    schema = schemathesis.openapi.from_url(f"{url}/openapi.json", config=config)
    session = requests.Session()
    signer = _Signed()
    fuzzed: set[str] = set()
    unbreakable: list[str] = []
    for result in schema.get_all_operations():
        operation = result.ok()
        modes = [GenerationMode.POSITIVE]
        if operation.path_parameters or operation.query or operation.body:
            modes.append(GenerationMode.NEGATIVE)
        for mode in modes:

            @hypothesis.settings(
                max_examples=EXAMPLES,
                deadline=None,
                derandomize=True,
                database=None,
                phases=[Phase.explicit, Phase.generate, Phase.shrink],
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
            )
            @given(case=_cases(operation, mode, known))
            def keeps_to_the_document(case: Any) -> None:
                case.call_and_validate(base_url=url, session=session, auth=signer, timeout=30)

            try:
                keeps_to_the_document()
            except Unsatisfiable:
                if mode == GenerationMode.POSITIVE:
                    raise
                unbreakable.append(operation.label)  # the document allows any input
            fuzzed.add(operation.label)
    session.close()
    assert fuzzed >= {
        "POST /hooks/github",
        "POST /hooks/gitlab",
        "POST /hooks/generic/{trigger}",
        "POST /hooks/cloudevents/{trigger}",
        "GET /api/runs",
        "GET /api/runs/{run_id}",
        "POST /api/runs/{run_id}/retry",
        "POST /api/runs/{run_id}/cancel",
        "POST /api/runs/{run_id}/resume",
        "GET /api/events",
        "GET /api/events/{ident}",
        "POST /api/triggers/{name}/fire",
        "GET /metrics",
    }
    # The document rules something out everywhere (a body's shape, a bound, the token)
    # but where a binary-mode CloudEvent's data may be any JSON value.
    assert unbreakable == ["POST /hooks/cloudevents/{trigger}"]
