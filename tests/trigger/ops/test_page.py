"""The status page, rendered by headless Chromium against a real server on loopback."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.support import wait_until
from tests.trigger.server import running
from trigger.core.event import manual_event
from trigger.core.eventlog import record_event
from trigger.ops.api import close_api
from trigger.service import create_app
from trigger.sources.manual import fire_event
from workflows.records import show_run


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    if os.environ.get("CI"):
        pytest.fail("chromium is not installed and CI is set: apt-get install -y chromium")
    pytest.skip("chromium is not installed (apt-get install -y chromium)")


def _browse(url: str, tmp_path: Path, *mode: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            chromium(),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={tmp_path / 'chromium-profile'}",
            "--window-size=1280,900",
            *mode,
            url,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_page_shows_runs_and_events_and_a_run_story(launched: Any, tmp_path: Path) -> None:
    settings, enqueuer = launched(bauplan={"rehearse_outcome": "fail"})
    fired = fire_event(
        enqueuer, manual_event("orders", {"run_date": "2026-11-23"}, event_id="page-1")
    )
    record_event(settings, "github", "d-bad", "rejected", "bad signature", "198.51.100.7")
    wait_until(
        lambda: show_run(enqueuer.client, fired.run_id)["status"] == "failed",
        timeout=60,
        what="the run to fail",
    )
    app = create_app(settings)
    try:
        with running(app) as base:
            dom = _browse(f"{base}/", tmp_path, "--dump-dom")
            assert dom.returncode == 0, dom.stderr[-2000:]
            html = dom.stdout
            assert "Recent runs" in html and "Recent events" in html
            assert fired.run_id in html and "rehearsal.orders_2026_11_23" in html
            assert 'class="badge failed"' in html
            assert "d-bad" in html and "bad signature" in html and "198.51.100.7" in html
            assert 'http-equiv="refresh"' in html

            shot = tmp_path / "index.png"
            taken = _browse(f"{base}/", tmp_path, f"--screenshot={shot}")
            assert taken.returncode == 0, taken.stderr[-2000:]
            assert shot.stat().st_size > 5000

            page = _browse(f"{base}/runs/{fired.run_id}", tmp_path, "--dump-dom").stdout
            assert f'Run <span class="mono">{fired.run_id}</span>' in page
            assert "submitted" in page and "told to fail" in page
            assert "run_date" in page and "2026-11-23" in page  # parameters
            assert "Log tail" in page and "would run" in page
            run_shot = tmp_path / "run.png"
            _browse(f"{base}/runs/{fired.run_id}", tmp_path, f"--screenshot={run_shot}")
            assert run_shot.stat().st_size > 5000
            missing = _browse(f"{base}/runs/run:orders:nope", tmp_path, "--dump-dom").stdout
            assert "no run with id" in missing or "nothing is known" in missing
    finally:
        close_api(app)
        app.state.bauplan_trigger.engine.dispose()
