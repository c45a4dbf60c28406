"""The console in headless Chromium against a real ``serve`` in rehearsal mode: run now,
a rehearsed Bauplan fault, the list filtered to failed, the failed run retried from its
page, live updates without a reload, and a phone-sized layout.

Set ``CONSOLE_SCREENSHOTS_DIR=docs`` to refresh the README's screenshots from this run.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.chromium import Browser, browse
from tests.support import base_config, run_cli, wait_until, write_config

pytestmark = pytest.mark.slow


def _config(tmp_path: Path, project_dir: Path) -> tuple[Path, str]:
    common = {"project_dir": str(project_dir)}
    triggers = [
        {"name": "flaky", **common, "branch": "flaky", "description": "loads the landing zone"},
        {"name": "quick", **common, "branch": "quick"},
        {"name": "slow", **common, "branch": "slow", "rehearse_seconds": 600},
        {"name": "nightly", **common, "branch": "nightly", "schedule": {"cron": "0 2 * * *"}},
    ]
    config = base_config(tmp_path, project_dir, triggers=triggers)
    path = write_config(tmp_path / "bauplan-trigger.toml", config)
    return path, "http://" + config["service"]["listen"]


def _keep(shot: Path) -> None:
    folder = os.environ.get("CONSOLE_SCREENSHOTS_DIR")
    if folder:
        shutil.copyfile(shot, Path(folder) / shot.name)


def _rows(browser: Browser) -> list[list[str]]:
    """(run id, status) of each row in the runs table."""
    rows: list[list[str]] = browser.js(
        "Array.from(document.querySelectorAll('#runs tr.run')).map(r => "
        "[r.querySelector('td a').textContent, r.querySelector('.badge').textContent])"
    )
    return rows


def test_filter_to_failed_open_the_run_and_retry_it(
    serve_process: Any, tmp_path: Path, project_dir: Path
) -> None:
    config, base = _config(tmp_path, project_dir)
    serve_process(config)
    with httpx.Client(base_url=base, headers={"X-Requested-By": "tests"}, timeout=30) as api:
        ok = api.post("/api/triggers/quick/fire", json={"event_id": "warm-up"}).json()["id"]
        wait_until(
            lambda: api.get(f"/api/runs/{ok}").json()["status"] == "succeeded",
            timeout=60,
            what="the quick run to succeed",
        )
        api.post("/api/triggers/slow/fire", json={"event_id": "long-one"})
    armed = run_cli(
        "rehearsal", "fault", "run", "BauplanError", "--message", "quota exceeded",
        "--config", str(config),
    )  # fmt: skip
    assert armed.returncode == 0, armed.stderr

    browser = Browser(tmp_path)
    try:
        browser.goto(base + "/")
        browser.js("window.sameDocument = true")
        # Run now: the next Bauplan submission meets the rehearsed fault and fails.
        browser.click('form[data-post="/triggers/flaky/fire"] button')
        fired = browser.wait_for(
            "document.querySelector('#notice a.new-run')?.textContent", what="the fired run"
        )
        assert fired.startswith("run:flaky:")
        browser.wait_for(
            f"Array.from(document.querySelectorAll('#runs tr.run[data-status=failed] a'))"
            f".some(a => a.textContent === {json.dumps(fired)})",
            what="the fired run to show as failed, without a reload",
        )
        assert browser.js("window.sameDocument") is True
        browser.wait_for(
            f"document.querySelector('#triggers').innerText.includes({json.dumps(fired)})",
            what="the overview to show flaky's last run",
        )
        browser.wait_for(
            "/^running \\d+s$/.test(document.querySelector('#runs .elapsed')?.textContent)",
            what="the slow run's elapsed time to tick",
        )
        shot = tmp_path / "console-list.png"
        browser.screenshot(shot)
        _keep(shot)

        browser.js(
            "const s = document.querySelector('select[name=status]');"
            "s.value = 'failed'; s.dispatchEvent(new Event('change', {bubbles: true}))"
        )
        browser.wait_for(
            "location.search === '?status=failed' && document.readyState == 'complete'"
        )
        assert _rows(browser) == [[fired, "failed"]]

        browser.click(f'#runs a[href="/runs/{fired}"]')
        browser.wait_for(f"location.pathname === {json.dumps('/runs/' + fired)}")
        assert "quota exceeded" in browser.text("#facts")
        assert "finished" in browser.text("#timeline")
        browser.js("document.querySelector('#timeline table').dataset.kept = 'yes'")
        browser.click("button[data-action=retry]")
        retried = browser.wait_for(
            "document.querySelector('#notice a.new-run')?.textContent", what="the retry's run"
        )
        assert retried == f"{fired}:retry-1"
        assert "retry enqueued as" in browser.text("#notice")
        browser.wait_for(
            f"document.querySelector('#facts').innerText.includes({json.dumps(retried)})",
            what="'retried as' on the run's page",
        )
        # Only what changed was swapped in: the ended run's timeline is the same node.
        assert browser.js("document.querySelector('#timeline table').dataset.kept") == "yes"
        shot = tmp_path / "console-run.png"
        browser.screenshot(shot)
        _keep(shot)

        browser.click("#notice a.new-run")
        browser.wait_for(f"location.pathname === {json.dumps('/runs/' + retried)}")
        browser.wait_for(
            "document.querySelector('#facts .badge')?.textContent === 'succeeded'",
            what="the retry to succeed (the fault hit one call only)",
        )
        browser.goto(base + "/")
        assert [retried, "succeeded"] in _rows(browser)

        browser.resize(390, 844)
        for n, path in enumerate(("/", f"/runs/{fired}", "/runs/run:flaky:nope")):
            browser.goto(base + path)
            wide = browser.js("document.documentElement.scrollWidth")
            assert wide <= 390, f"{path} scrolls sideways on a phone: {wide}px wide"
            browser.screenshot(tmp_path / f"phone-{n}.png")
    finally:
        browser.close()


def test_an_unknown_run_reads_as_a_page_in_the_browser(
    serve_process: Any, tmp_path: Path, project_dir: Path
) -> None:
    config, base = _config(tmp_path, project_dir)
    serve_process(config)
    dom = browse(f"{base}/runs/run:quick:nope", tmp_path, "--dump-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert 'No run with id <span class="mono">run:quick:nope</span>' in dom.stdout
