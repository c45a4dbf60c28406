"""GitHub push webhooks over real HTTP on loopback, with real HMAC signatures."""

from __future__ import annotations

import logging
import socket
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from tests.support import final_run as _final
from tests.support import make_settings
from tests.trigger.fuzzkit import (
    JSON_VALUES,
    Ingress,
    header_values,
    json_bytes,
    posts_and_reads_back,
)
from tests.trigger.hookkit import (
    OTHER_SECRET,
    LiveServer,
    body_of,
    commit,
    git,
    github_headers,
    github_push,
    github_trigger,
    ingress_server,
    make_repo,
    payload,
)
from tests.trigger.properties import OUTSIDE_TEXT, examples
from trigger.service import create_app
from workflows.bauplan.rehearsal import Ledger
from workflows.records import list_runs
from workflows.runtime import ledger_path

SHA_A = "0d1a26e67d8f5eaf1f6ba5c57fc3c7d91ac0fd1c"
ZERO = "0" * 40


def _post(url: str, data: dict[str, Any] | bytes, **header_args: Any) -> httpx.Response:
    body = body_of(data)
    headers = github_headers(body, **header_args)
    return httpx.post(f"{url}/hooks/github", content=body, headers=headers, timeout=30)


@pytest.fixture
def offline(tmp_path: Path, project_dir: Path) -> Any:
    """An ingress on SQLite with no worker, for answers that never start a run."""

    def start(*triggers: dict[str, Any], **overrides: Any) -> Any:
        settings = make_settings(
            tmp_path,
            None,
            project_dir,
            triggers=list(triggers) or [github_trigger(project_dir)],
            **overrides,
        )
        settings.state_path.mkdir(parents=True, exist_ok=True)
        return ingress_server(settings)

    return start


def test_a_signed_push_is_enqueued_and_runs_with_the_push_fields(hooks: Any, project_dir: Path):
    _settings, enqueuer, url = hooks(triggers=[github_trigger(project_dir)])
    response = _post(url, github_push(), delivery="72d3162e-cc78-11e3-81ab-4c9367dc0958")
    assert response.status_code == 202, response.text
    [run_id] = response.json()["runs"]
    assert response.json()["duplicate"] is False
    run = _final(enqueuer, run_id)
    assert run["status"] == "succeeded"
    assert run["branch"] == "rehearsal.orders_main"
    assert run["parameters"] == {"sha": SHA_A, "pusher": "octocat"}
    event = run["event"]
    assert event["repo"] == "acme/lakehouse" and event["git_branch"] == "main"
    assert event["git_before"] == "6113728f27ae82c7b1a177c8d03f9e96e0adf246"
    assert event["head_message"] == "Update the orders pipeline"
    assert event["paths_complete"] is True
    assert "pipelines/orders/models.py" in str(event["changed_paths"])
    assert event["commit_url"] == f"https://github.com/acme/lakehouse/commit/{SHA_A}"


def test_a_delivery_is_one_log_line_naming_its_outcome_and_runs(
    hooks: Any, project_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _settings, _enqueuer, url = hooks(triggers=[github_trigger(project_dir)])
    caplog.set_level(logging.INFO)
    response = _post(url, github_push(), delivery="one-line-please")
    [run_id] = response.json()["runs"]
    about = [
        r.getMessage()
        for r in caplog.records
        if r.levelno >= logging.INFO
        and r.name.startswith(("trigger.", "workflows.queue"))
        and ("one-line-please" in r.getMessage() or run_id in r.getMessage())
    ]
    assert len(about) == 1, about
    assert about[0].startswith("delivery ") and "outcome=accepted" in about[0]
    assert f"runs={run_id}" in about[0] and "repo=acme/lakehouse" in about[0]


def test_the_same_delivery_fifty_times_gives_one_run(hooks: Any, project_dir: Path) -> None:
    settings, enqueuer, url = hooks(triggers=[github_trigger(project_dir)])
    with ThreadPoolExecutor(8) as pool:
        responses = list(pool.map(lambda _: _post(url, github_push(), delivery="same"), range(50)))
    codes = sorted(r.status_code for r in responses)
    assert codes.count(202) == 1 and codes.count(200) == 49, codes
    run_ids = {tuple(r.json()["runs"]) for r in responses}
    assert len(run_ids) == 1
    assert all(r.json()["duplicate"] for r in responses if r.status_code == 200)
    _final(enqueuer, run_ids.pop()[0])
    assert len(list_runs(enqueuer.client)) == 1
    assert len(Ledger(ledger_path(settings)).jobs()) == 1


def test_bad_and_missing_signatures_are_401_without_detail(offline: Any) -> None:
    with offline() as server:
        wrong = _post(server.url, github_push(), secret="not the secret")
        missing = _post(server.url, github_push(), secret=None)
        body = body_of(github_push())
        headers = github_headers(body)
        tampered = httpx.post(
            f"{server.url}/hooks/github", content=body + b" ", headers=headers, timeout=30
        )
    for response in (wrong, missing, tampered):
        assert response.status_code == 401
        assert "Secret" not in response.text and "sha256=" not in response.text


def test_a_secret_of_another_repos_trigger_does_not_start_this_repos_runs(
    offline: Any, project_dir: Path
) -> None:
    billing = github_trigger(
        project_dir, name="billing", repo="acme/billing", secret_env="OTHER_WEBHOOK_SECRET"
    )
    with offline(github_trigger(project_dir), billing) as server:
        response = _post(server.url, github_push(), secret=OTHER_SECRET)
    assert response.status_code == 401


def test_triggers_sharing_a_secret_all_run(hooks: Any, project_dir: Path) -> None:
    second = github_trigger(project_dir, name="orders-audit")
    _settings, _enqueuer, url = hooks(triggers=[github_trigger(project_dir), second])
    response = _post(url, github_push(), delivery="shared")
    assert response.status_code == 202
    assert sorted(response.json()["runs"]) == ["run:orders-audit:gh-shared", "run:orders:gh-shared"]


def test_ping_is_200_and_other_events_are_ignored_once_then_duplicates(offline: Any) -> None:
    with offline() as server:
        ping = _post(server.url, payload("github_ping.json"), event="ping", delivery="p1")
        issues = _post(server.url, {"action": "opened"}, event="issues", delivery="i1")
        again = _post(server.url, {"action": "opened"}, event="issues", delivery="i1")
    assert ping.status_code == 200 and ping.json()["hook_id"] == 30
    assert issues.status_code == 202
    assert "'issues'" in issues.json()["ignored"]
    # A redelivery is a duplicate whatever the first delivery decided.
    assert again.status_code == 200, again.text
    assert again.json() == {"runs": [], "event": "gh-i1", "duplicate": True}


def test_branch_deletion_and_tag_push_start_nothing_and_say_why(offline: Any) -> None:
    deletion = github_push(deleted=True, after=ZERO, commits=[], head_commit=None)
    tag = github_push(ref="refs/tags/v1.2.0", base_ref="refs/heads/main", commits=[])
    with offline() as server:
        deleted = _post(server.url, deletion, delivery="del")
        tagged = _post(server.url, tag, delivery="tag")
    assert deleted.status_code == 202
    assert "delet" in deleted.json()["ignored"]
    assert tagged.status_code == 202
    assert "tag push" in tagged.json()["ignored"]


def test_a_trigger_with_tags_runs_on_a_matching_tag(hooks: Any, project_dir: Path) -> None:
    trig = github_trigger(project_dir, tags=["v*"])
    trig["branch"] = "release_{git_tag}"
    _settings, enqueuer, url = hooks(triggers=[trig])
    matching = _post(url, github_push(ref="refs/tags/v1.2.0", base_ref="refs/heads/main"))
    other = _post(url, github_push(ref="refs/tags/nightly"), delivery="d-2")
    assert matching.status_code == 202, matching.text
    assert other.status_code == 202 and other.json()["ignored"] == "filtered by tags rule"
    run = _final(enqueuer, matching.json()["runs"][0])
    assert run["branch"] == "rehearsal.release_v1_2_0"


def test_branch_and_path_rules_filter_in_and_out(offline: Any, project_dir: Path) -> None:
    trig = github_trigger(project_dir, branches=["release/*"], paths=["pipelines/orders/**"])
    docs_only = [commit(SHA_A, "docs/readme.md")]
    with offline(trig) as server:
        main = _post(server.url, github_push(), delivery="1")
        docs = _post(server.url, github_push(ref="refs/heads/release/1", commits=docs_only))
    assert main.json()["ignored"] == "filtered by branches rule"
    assert docs.json()["ignored"] == "filtered by paths rule"


def test_a_truncated_push_matches_path_rules_and_says_so(hooks: Any, project_dir: Path) -> None:
    trig = github_trigger(project_dir, paths=["pipelines/orders/**"])
    _settings, enqueuer, url = hooks(triggers=[trig])
    twenty = [commit(SHA_A, f"docs/{n}.md") for n in range(20)]
    response = _post(url, github_push(commits=twenty), delivery="big")
    assert response.status_code == 202, response.text
    assert response.json()["paths_complete"] is False
    run = _final(enqueuer, response.json()["runs"][0])
    assert run["event"]["paths_complete"] is False


def test_hostile_refs_and_shas_are_400_and_start_nothing(offline: Any) -> None:
    hostile = [
        {"ref": "refs/heads/--upload-pack=touch /tmp/x"},
        {"ref": "refs/heads/-x"},
        {"ref": "refs/heads/a..b"},
        {"ref": "refs/heads/x@{1}"},
        {"ref": "refs/heads/has space"},
        {"ref": "refs/heads/bell\x07"},
        {"after": "HEAD"},
        {"after": "--all"},
        {"before": "0d1a26e6"},
    ]
    with offline() as server:
        responses = [_post(server.url, github_push(**change)) for change in hostile]
    assert [r.status_code for r in responses] == [400] * len(hostile), [r.text for r in responses]
    assert "refused" in responses[0].json()["error"]


def test_strings_follow_one_rule_and_a_refusal_names_the_field(offline: Any) -> None:
    import json

    head = {**github_push()["head_commit"], "message": "Fix \ud800 orders"}
    repository = {**github_push()["repository"], "description": "\udcff"}
    raw = body_of(github_push()).replace(b"octocat", b"oct\xed\xa0\x80cat", 1)
    with offline() as server:
        nul = _post(server.url, github_push(pusher={"name": "oct\x00cat"}), delivery="s-1")
        csi = _post(server.url, github_push(pusher={"name": "oct\x9b2Jcat"}), delivery="s-2")
        lone = _post(server.url, github_push(pusher={"name": "oct\ud800cat"}), delivery="s-3")
        message = _post(server.url, github_push(head_commit=head), delivery="s-4")
        unused = _post(server.url, github_push(repository=repository), delivery="s-5")
        encoded = _post(server.url, raw, delivery="s-6")
    answers = [r.json()["error"] for r in (nul, csi, lone, message, unused, encoded)]
    assert [r.status_code for r in (nul, csi, lone, message, unused, encoded)] == [400] * 6
    assert answers[0].startswith("pusher.name 'oct\\x00cat' has a control character (U+0000)")
    assert answers[1].startswith("pusher.name 'oct\\x9b2Jcat' has a control character (U+009B)")
    assert answers[2] == (
        "the body's field pusher.name is not valid Unicode: it holds a lone surrogate "
        "(U+D800) at position 3; send valid Unicode text"
    )
    assert "field head_commit.message is not valid Unicode" in answers[3]
    assert "field repository.description is not valid Unicode" in answers[4]
    assert answers[5].startswith("the body is not valid UTF-8 (byte 0xed at position")
    assert json.dumps(answers).isascii()


def test_malformed_bodies_are_400_and_wrong_content_types_415(offline: Any) -> None:
    with offline() as server:
        broken = _post(server.url, b"{not json")
        array = _post(server.url, b"[1, 2]")
        no_repo = _post(server.url, {"ref": "refs/heads/main"})
        body = body_of(github_push())
        headers = {**github_headers(body), "Content-Type": "text/plain"}
        text = httpx.post(f"{server.url}/hooks/github", content=body, headers=headers)
    assert (broken.status_code, array.status_code, no_repo.status_code) == (400, 400, 400)
    assert text.status_code == 415 and "application/json" in text.json()["error"]


def test_form_encoded_deliveries_are_understood(offline: Any) -> None:
    import json

    form = urlencode({"payload": json.dumps(payload("github_ping.json"))}).encode()
    headers = {
        **github_headers(form, event="ping"),
        "Content-Type": "application/x-www-form-urlencoded",
    }
    with offline() as server:
        response = httpx.post(f"{server.url}/hooks/github", content=form, headers=headers)
    assert response.status_code == 200 and response.json()["hook_id"] == 30


def _raw_request(port: int, head: bytes, body: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=30) as conn:
        conn.sendall(head + body)
        chunks = []
        while chunk := conn.recv(65536):
            chunks.append(chunk)
            if b"\r\n\r\n" in b"".join(chunks):
                break
        return b"".join(chunks)


def test_an_oversized_body_is_refused_while_streaming(offline: Any) -> None:
    limit = 64 * 1024
    with offline(service={"max_body_bytes": limit}) as server:
        declared = _raw_request(
            server.port,
            b"POST /hooks/github HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"X-GitHub-Delivery: big\r\nContent-Length: 104857600\r\n\r\n",
            b"",
        )
        # Chunked: no length up front; the server stops at the limit, long before the
        # 100 MiB a sender could still be pushing.
        chunk = b"x" * 16384
        piece = f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n"
        streamed = _raw_request(
            server.port,
            b"POST /hooks/github HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"X-GitHub-Delivery: big2\r\nTransfer-Encoding: chunked\r\n\r\n",
            piece * 6,
        )
    assert declared.startswith(b"HTTP/1.1 413")
    assert streamed.startswith(b"HTTP/1.1 413")


def test_a_system_database_gone_at_enqueue_time_is_503(
    tmp_path: Path, project_dir: Path, postgres_url: str
) -> None:
    import psycopg

    from tests.support import PG_ADMIN_URL
    from trigger.context import ServiceContext
    from workflows.intake import Enqueuer

    url = postgres_url
    name = url.rsplit("/", 1)[1]
    settings = make_settings(
        tmp_path,
        url,
        project_dir,
        triggers=[github_trigger(project_dir)],
        service={"enqueue_timeout": 1.0},
    )
    enqueuer = Enqueuer(settings)
    context = ServiceContext(settings=settings, role="ingress", enqueuer=enqueuer)
    try:
        with LiveServer(create_app(settings, context)) as server:
            with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
            response = _post(server.url, github_push())
    finally:
        enqueuer.close()
    assert response.status_code == 503, response.text
    assert "retry" in response.json()["error"]


def test_the_pushed_commit_is_what_runs(hooks: Any, tmp_path: Path) -> None:
    upstream = tmp_path / "upstream"
    first, second = make_repo(upstream)
    trig = github_trigger(Path("pipelines/orders"), source=str(upstream))
    settings, enqueuer, url = hooks(triggers=[trig])
    # The older commit, while the repository's HEAD is already the newer one.
    response = _post(url, github_push(after=first, commits=[]), delivery="old")
    assert response.status_code == 202, response.text
    run = _final(enqueuer, response.json()["runs"][0])
    assert run["status"] == "succeeded", run["error"]
    [job] = Ledger(ledger_path(settings)).jobs()
    assert job["code_version"] == first
    assert job["project_dir"].endswith("pipelines/orders")
    assert not Path(job["project_dir"]).exists()  # the workspace is gone once the run ended
    git(upstream, "rev-parse", "HEAD")  # upstream untouched
    assert git(upstream, "rev-parse", "HEAD") == second


def test_odd_payload_shapes_never_give_a_500(offline: Any) -> None:
    odd: list[dict[str, Any]] = [
        github_push(commits=[{"added": [1, None, {"x": 1}]}]),
        github_push(commits="many"),
        github_push(commits=[{"added": "a.py"}]),
        github_push(repository={"full_name": 7}),
        github_push(repository=[]),
        github_push(pusher=["x"], head_commit="nope"),
        github_push(head_commit={"message": 5, "timestamp": []}),
        github_push(ref=None),
        github_push(after=None),
        {"zen": "x"},
    ]
    with offline() as server:
        codes = [
            _post(server.url, body, delivery=f"odd-{n}").status_code for n, body in enumerate(odd)
        ]
    # Shapes that are still a valid push are enqueued (202); the others are the sender's 400.
    assert set(codes) <= {202, 400} and 400 in codes, codes


def test_every_hook_is_in_the_openapi_document(offline: Any) -> None:
    with offline() as server:
        paths = httpx.get(f"{server.url}/openapi.json").json()["paths"]
    for path in ("/hooks/github", "/hooks/gitlab", "/hooks/generic/{trigger}"):
        assert "post" in paths[path]
        assert {"202", "401", "413", "415", "503"} <= set(paths[path]["post"]["responses"])
    # Read from request.headers, not declared as parameters, yet still documented.
    for path, names in (
        ("/hooks/github", {"x-github-event", "x-github-delivery", "x-hub-signature-256"}),
        ("/hooks/gitlab", {"x-gitlab-event", "x-gitlab-token", "idempotency-key"}),
    ):
        documented = {p["name"] for p in paths[path]["post"]["parameters"] if p["in"] == "header"}
        assert names <= documented, (path, documented)


@st.composite
def _deliveries(draw: st.DrawFn) -> tuple[bytes, dict[str, Any]]:
    """A GitHub delivery, signed with the right secret so it reaches parsing: raw bytes,
    or a push whose strings are hostile, with hostile headers."""
    data = github_push()
    data["ref"] = draw(st.sampled_from(["refs/heads/main", "refs/tags/v1"]) | OUTSIDE_TEXT)
    data["pusher"] = {"name": draw(OUTSIDE_TEXT | st.none() | st.integers())}
    data["head_commit"]["message"] = draw(OUTSIDE_TEXT)
    data["commits"][0]["modified"] = draw(st.lists(OUTSIDE_TEXT, max_size=3))
    data["repository"]["full_name"] = draw(st.just("acme/lakehouse") | OUTSIDE_TEXT)
    data.update(draw(st.dictionaries(OUTSIDE_TEXT, JSON_VALUES, max_size=2)))
    raw = st.binary(max_size=200)
    body = draw(raw | st.builds(json_bytes, st.just(data), st.booleans()))
    headers: dict[str, Any] = github_headers(body, delivery=f"fuzz-{uuid.uuid4().hex}")
    headers["X-GitHub-Event"] = draw(st.sampled_from([b"push", b"ping"]) | header_values())
    headers["X-GitHub-Delivery"] = headers["X-GitHub-Delivery"].encode() + draw(header_values())
    return body, headers


def _signed(data: dict[str, Any]) -> tuple[bytes, dict[str, Any]]:
    body = body_of(data)
    return body, github_headers(body, delivery="example-1")


@examples(150)
@given(delivery=_deliveries())
@example(delivery=_signed(github_push(pusher={"name": "oct\ud800cat"})))
def test_any_signed_body_gets_a_documented_answer_and_what_is_taken_reads_back(
    ingress: Ingress, delivery: tuple[bytes, dict[str, Any]]
) -> None:
    posts_and_reads_back(ingress, "/hooks/github", delivery)
