"""The operator's console over real HTTP: filters, search, paging, the triggers overview,
a readable 404, escaping, and the buttons behind the API's own guard. DBOS on SQLite:
the page reads what the API reads (both backends are covered there)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support import final_run
from tests.trigger.server import client_for
from trigger.core.event import manual_event
from trigger.core.eventlog import record_event
from trigger.ops.api import close_api
from trigger.service import create_app
from trigger.sources.manual import fire_event

pytestmark = pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
SCRIPT = {"X-Requested-By": "tests"}


def console_triggers(project_dir: Path, tmp_path: Path) -> list[dict[str, Any]]:
    common = {"project_dir": str(project_dir)}
    (tmp_path / "landing").mkdir(exist_ok=True)
    return [
        {"name": "good", **common, "branch": "good"},
        {"name": "bad", **common, "branch": "bad", "rehearse_outcome": "fail"},
        {"name": "slow", **common, "branch": "slow", "rehearse_seconds": 300},
        {"name": "nightly", **common, "branch": "nightly", "schedule": {"cron": "0 2 * * *"}},
        {
            "name": "landing",
            **common,
            "branch": "landing",
            "files": {"dir": str(tmp_path / "landing")},
        },
    ]


@pytest.fixture
def console(launched: Any, project_dir: Path, tmp_path: Path) -> Iterator[tuple[Any, Any, Any]]:
    settings, enqueuer = launched(triggers=console_triggers(project_dir, tmp_path))
    app = create_app(settings)
    with client_for(app) as client:
        yield settings, enqueuer, client
    close_api(app)
    app.state.bauplan_trigger.engine.dispose()


def _fire(enqueuer: Any, trigger: str, event_id: str) -> str:
    run_id: str = fire_event(enqueuer, manual_event(trigger, {}, event_id=event_id)).run_id
    final_run(enqueuer, run_id)
    return run_id


def _runs(html: str) -> list[str]:
    """The run ids in the runs table, top to bottom."""
    section = html.split('id="runs"', 1)[1].split("</section>", 1)[0]
    return re.findall(
        r'<tr class="run" data-status="[a-z]+">\s*<td data-label="run"><a[^>]*>([^<]+)</a>', section
    )


def test_the_list_filters_by_status_trigger_and_source_and_pages(console: Any) -> None:
    _, enqueuer, client = console
    good = [_fire(enqueuer, "good", f"g{n}") for n in range(3)]
    bad = [_fire(enqueuer, "bad", f"b{n}") for n in range(2)]

    everything = client.get("/")
    assert everything.status_code == 200, everything.text
    assert _runs(everything.text) == [*reversed(bad), *reversed(good)]
    failed = client.get("/", params={"status": "failed"}).text
    assert _runs(failed) == list(reversed(bad))
    assert '<option value="failed" selected>' in failed
    assert _runs(client.get("/?status=failed&trigger=good").text) == []
    assert "No runs match these filters" in client.get("/?status=failed&trigger=good").text
    assert len(_runs(client.get("/?source=manual").text)) == 5
    assert _runs(client.get("/?source=github").text) == []

    first = client.get("/", params={"trigger": "good", "limit": 2}).text
    assert _runs(first) == [good[2], good[1]]
    assert 'href="/?trigger=good&amp;offset=2&amp;limit=2"' in first and 'rel="prev"' not in first
    second = client.get("/?trigger=good&offset=2&limit=2").text
    assert _runs(second) == [good[0]]
    assert 'rel="next"' not in second
    assert 'rel="prev" href="/?trigger=good&amp;limit=2"' in second


def test_the_list_shows_durations_and_links_every_id(console: Any) -> None:
    _, enqueuer, client = console
    run_id = _fire(enqueuer, "bad", "linked")
    html = client.get("/").text
    row = html.split('<tr class="run" data-status="failed">', 1)[1].split("</tr>", 1)[0]
    assert f'href="/runs/{run_id}"' in row
    assert 'href="/?q=linked"' in row  # the event id
    assert 'href="/?q=rehearsal.bad"' in row  # the branch
    assert 'href="/?trigger=bad"' in row
    assert re.search(r'class="duration">\d+\.\ds<', row), row


def test_the_search_box_finds_runs_by_run_id_event_id_and_branch(console: Any) -> None:
    _, enqueuer, client = console
    one = _fire(enqueuer, "good", "needle-1")
    other = _fire(enqueuer, "bad", "hay-1")
    assert _runs(client.get("/", params={"q": "needle-1"}).text) == [one]
    assert _runs(client.get("/", params={"q": other}).text) == [other]
    assert _runs(client.get("/", params={"q": "REHEARSAL.BAD"}).text) == [other]
    found = client.get("/", params={"q": "needle-1"}).text
    assert "Events for needle-1" in found and 'href="/?q=needle-1"' in found
    assert _runs(client.get("/", params={"q": "nothing-like-it"}).text) == []


def test_the_search_box_finds_runs_by_sha_and_the_run_links_its_commit(
    launched: Any, project_dir: Path
) -> None:
    from tests.trigger.hookkit import github_trigger
    from trigger.core.event import Event
    from trigger.ingest import ingest

    settings, enqueuer = launched(triggers=[github_trigger(project_dir, name="pushes")])
    sha = "3f2a9c1d" * 5
    attributes = {"git_sha": sha, "git_short_sha": sha[:7], "git_branch": "main", "pusher": "ana"}
    push = Event(kind="github", id="delivery-1", attributes={**attributes, "repo": "acme/lake"})
    pushed = ingest(enqueuer, push, lambda _event, _trigger: None).runs[0].run_id
    final_run(enqueuer, pushed)
    app = create_app(settings)
    try:
        with client_for(app) as client:
            for text in (sha, sha[:7], "delivery-1"):
                assert _runs(client.get("/", params={"q": text}).text) == [pushed], text
            assert _runs(client.get("/?source=github").text) == [pushed]
            assert _runs(client.get("/?source=manual").text) == []
            page = client.get(f"/runs/{pushed}").text
            assert f'href="https://github.com/acme/lake/commit/{sha}"' in page
            assert f'href="/?q={sha}"' in page
    finally:
        close_api(app)
        app.state.bauplan_trigger.engine.dispose()


def test_a_value_that_matches_nothing_is_said_and_ignored(console: Any) -> None:
    _, enqueuer, client = console
    _fire(enqueuer, "good", "any")
    page = client.get("/", params={"status": "broken", "offset": "-3"})
    assert page.status_code == 200
    assert "status &#39;broken&#39; is not one of waiting, running, succeeded" in page.text
    assert "offset &#39;-3&#39; is not a whole number from 0 to" in page.text
    assert len(_runs(page.text)) == 1


def test_the_triggers_overview_shows_last_runs_schedules_and_watchers(console: Any) -> None:
    _, enqueuer, client = console
    run_id = _fire(enqueuer, "bad", "last")
    html = client.get("/").text
    section = html.split('id="triggers"', 1)[1].split("</section>", 1)[0]
    rows = {
        re.search(r'href="/\?trigger=([a-z]+)"', r).group(1): r for r in section.split("<tr>")[2:]
    }  # type: ignore[union-attr]
    assert set(rows) == {"good", "bad", "slow", "nightly", "landing"}
    assert "no runs yet" in rows["good"]
    assert 'class="badge failed"' in rows["bad"] and f'href="/runs/{run_id}"' in rows["bad"]
    assert "0 2 * * *" in rows["nightly"] and "data-until" in rows["nightly"]
    # The watcher runs in serve, not in this test's process: the page says so.
    assert "not here" in rows["landing"] and "landing" in rows["landing"]
    for name, row in rows.items():
        assert f'data-post="/triggers/{name}/fire"' in row


def test_an_unknown_run_is_a_readable_404(console: Any) -> None:
    _, _, client = console
    missing = client.get("/runs/run:good:nope")
    assert missing.status_code == 404
    assert missing.headers["content-type"].startswith("text/html")
    assert 'No run with id <span class="mono">run:good:nope</span>' in missing.text
    assert 'href="/?q=run%3Agood%3Anope"' in missing.text


def test_a_run_page_has_its_timeline_durations_and_the_buttons_its_state_allows(
    console: Any,
) -> None:
    _, enqueuer, client = console
    run_id = _fire(enqueuer, "bad", "story")
    html = client.get(f"/runs/{run_id}").text
    assert f'Run <span class="mono">{run_id}</span>' in html
    for what in ("enqueued", "started", "submitted", "finished"):
        assert f'<td data-label="what">{what}</td>' in html
    assert "told to fail" in html and "would run" in html
    assert re.search(r'<dt>duration</dt><dd><span class="duration">\d+\.\ds</span>', html)
    assert f'data-post="/runs/{run_id}/retry"' in html
    assert "/cancel" not in html and "/resume" not in html
    assert 'data-post="/triggers/bad/fire"' in html


def test_the_live_part_comes_alone_for_the_script(console: Any) -> None:
    _, enqueuer, client = console
    run_id = _fire(enqueuer, "good", "live")
    for path in ("/", f"/runs/{run_id}"):
        whole = client.get(path)
        assert "<html" in whole.text and 'src="/static/console.js"' in whole.text
        assert "http-equiv" not in whole.text  # no full reload any more
        assert whole.headers["cache-control"] == "no-store"
        assert "script-src" not in whole.headers["content-security-policy"]  # 'self' only
        part = client.get(path, headers={"X-Console-Fragment": "1"})
        assert part.status_code == 200 and "<html" not in part.text
        assert "data-live" in part.text and run_id in part.text
    script = client.get("/static/console.js")
    assert script.status_code == 200 and "X-Console-Fragment" in script.text
    assert script.headers["content-type"].startswith("text/javascript")
    assert client.get("/static/console.css").headers["content-type"].startswith("text/css")
    assert client.get("/static/other.js").status_code == 404


def test_hostile_values_are_shown_as_text(console: Any) -> None:
    settings, _, client = console
    attack = '<img src=x onerror="alert(1)">'
    record_event(settings, "github", "d-x", "rejected", f"bad {attack}", '"><script>1</script>')
    listed = client.get("/", params={"q": attack, "trigger": '"><b>'}).text
    page = client.get("/").text
    for html in (listed, page):
        assert "<img src=x" not in html and "<script>1" not in html and '"><b>' not in html
    assert "bad &lt;img src=x onerror=&#34;alert(1)&#34;&gt;" in page
    assert "&#34;&gt;&lt;script&gt;1&lt;/script&gt;" in page
    assert 'value="&lt;img src=x onerror=&#34;alert(1)&#34;&gt;"' in listed
    missing = client.get("/runs/<svg onload=alert(1)>").text
    assert "<svg" not in missing and "&lt;svg onload=alert(1)&gt;" in missing


def test_the_buttons_retry_cancel_resume_and_fire_answering_like_the_api(console: Any) -> None:
    _, enqueuer, client = console
    failed = _fire(enqueuer, "bad", "act")
    retried = client.post(f"/runs/{failed}/retry", json={})
    assert retried.status_code == 200, retried.text
    assert retried.json()["new_run_id"] == f"{failed}:retry-1"
    final_run(enqueuer, f"{failed}:retry-1")
    refused = client.post(f"/runs/{failed}/cancel", json={})
    assert refused.status_code == 409
    assert f"run {failed} already ended (failed)" in str(refused.json())
    not_cancelled = client.post(f"/runs/{failed}/resume", json={})
    assert not_cancelled.status_code == 409
    assert "only a cancelled or stuck run can be resumed" in str(not_cancelled.json())
    assert client.post("/runs/run:good:nope/retry", json={}).status_code == 404
    fired = client.post("/triggers/good/fire", json={})
    assert fired.status_code == 200, fired.text
    assert fired.json()["id"].startswith("run:good:")
    assert client.post("/triggers/nope/fire", json={}).status_code == 404
    story = client.get(f"/runs/{failed}:retry-1").text
    assert f'href="/runs/{failed}"' in story  # retry of, linked


def test_cancel_then_resume_from_the_page(console: Any) -> None:
    from tests.support import wait_until
    from workflows.records import show_run

    _, enqueuer, client = console
    run_id = fire_event(enqueuer, manual_event("slow", {}, event_id="held")).run_id
    wait_until(lambda: show_run(enqueuer.client, run_id)["job_id"], timeout=60, what="its job")
    assert f'data-post="/runs/{run_id}/cancel"' in client.get(f"/runs/{run_id}").text
    cancelled = client.post(f"/runs/{run_id}/cancel", json={})
    assert cancelled.status_code == 200, cancelled.text
    assert "workflow stopped" in cancelled.json()["detail"]
    page = client.get(f"/runs/{run_id}").text
    assert f'data-post="/runs/{run_id}/resume"' in page
    assert f'data-post="/runs/{run_id}/retry"' in page
    resumed = client.post(f"/runs/{run_id}/resume", json={})
    assert resumed.status_code == 200, resumed.text
    assert resumed.json()["detail"] == "back on the queue for branch rehearsal.slow"
    # What the resumed run does next (its cancelled job may end it at once) is the
    # control tests' to tell; a cancel now could meet it running or ended.


def test_the_buttons_take_the_apis_cross_site_checks(console: Any) -> None:
    _, _, client = console
    evil = {"Origin": "http://evil.example", "Sec-Fetch-Site": "cross-site"}
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    for path in ("/runs/x/retry", "/runs/x/cancel", "/runs/x/resume", "/triggers/good/fire"):
        assert client.post(path, headers={**form, **evil}, content=b"").status_code == 403
        assert client.post(path, headers=form, content=b"").status_code == 403
        assert client.post(path, json={}, headers=evil).status_code == 403
        plain = client.post(path, headers={"Content-Type": "text/plain"}, content=b"{}")
        assert plain.status_code == 415
        assert client.post(path, headers={"Host": "rebound.example", **SCRIPT}).status_code == 421
        assert client.post(path, headers=SCRIPT).status_code in (200, 404)


TOKEN = "console-token-for-tests"


def test_with_a_token_the_buttons_need_the_page_cookie_or_the_bearer(
    launched: Any, project_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BT_TEST_API_TOKEN", TOKEN)
    settings, _ = launched(
        triggers=console_triggers(project_dir, tmp_path),
        service={"listen": "0.0.0.0:8080"},
        api={"token_env": "BT_TEST_API_TOKEN"},
    )
    app = create_app(settings)
    try:
        with client_for(app) as client:
            assert client.post("/triggers/good/fire", json={}).status_code == 401
            assert client.get("/").status_code == 401
            wrong = {"Authorization": "Bearer nope"}
            assert client.post("/triggers/good/fire", json={}, headers=wrong).status_code == 401
            bearer = {"Authorization": f"Bearer {TOKEN}"}
            assert client.post("/triggers/good/fire", json={}, headers=bearer).status_code == 200
            login = client.get("/", params={"token": TOKEN})
            assert login.status_code == 303
            fired = client.post("/triggers/good/fire", json={})  # the cookie, now
            assert fired.status_code == 200, fired.text
            assert isinstance(client.cookies, httpx.Cookies) and client.get("/").status_code == 200
    finally:
        close_api(app)
        app.state.bauplan_trigger.engine.dispose()
