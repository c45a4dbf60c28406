"""``fire --wait``: each phase on a terminal, and a timeout that says the run goes on."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from tests.support import base_config, cli_env, run_cli, wait_until, write_config
from trigger.core.event import manual_event
from trigger.core.settings import load_settings
from trigger.ops.control import cancel
from trigger.sources.manual import fire_event
from workflows.intake import Enqueuer
from workflows.records import show_run


class _Terminal:
    """The CLI with its stderr on a pseudo-terminal, read line by line as it comes."""

    def __init__(self, *args: str) -> None:
        controller, terminal = os.openpty()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "trigger.cli", *args],
            stdout=subprocess.PIPE,
            stderr=terminal,
            env=cli_env(),
        )
        os.close(terminal)
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, args=(controller,), daemon=True)
        self._reader.start()

    def _read(self, controller: int) -> None:
        pending = b""
        while True:
            try:
                chunk = os.read(controller, 4096)
            except OSError:  # the child closed the terminal
                break
            if not chunk:
                break
            pending += chunk
            *done, pending = pending.split(b"\n")
            self.lines += [line.decode().strip() for line in done if line.strip()]
        os.close(controller)

    def finish(self, timeout: float = 120) -> tuple[int, str]:
        out, _ = self.proc.communicate(timeout=timeout)
        self._reader.join(timeout=10)
        return self.proc.returncode, out.decode()


@pytest.mark.slow
def test_fire_wait_on_a_terminal_prints_each_phase(
    tmp_path: Path, project_dir: Path, serve_process: Any
) -> None:
    common = {"project_dir": str(project_dir), "branch": "shared"}
    data = base_config(
        tmp_path,
        project_dir,
        triggers=[
            {"name": "slow", **common, "rehearse_outcome": "hang"},
            # Longer than the slowest poll (1 s), so its running phase is seen.
            {"name": "quick", **common, "rehearse_seconds": 3},
        ],
    )
    config = write_config(tmp_path / "bauplan-trigger.toml", data)
    serve_process(config)
    settings = load_settings(config)
    enqueuer = Enqueuer(settings)
    try:
        fire_event(enqueuer, manual_event("slow", {}, event_id="s1"), source_addr="t")
        wait_until(lambda: show_run(enqueuer.client, "run:slow:s1")["job_id"], what="the slow job")
        terminal = _Terminal("fire", "quick", "--config", str(config), "--event-id", "q1", "--wait")
        wait_until(lambda: terminal.lines, what="the first phase")
        cancel(settings, enqueuer.client, "run:slow:s1")  # the branch is free from here on
        code, out = terminal.finish()
    finally:
        enqueuer.close()
    phases = terminal.lines
    assert code == 0, (out, phases)
    assert out.splitlines()[0] == "run:quick:q1"
    assert phases[0] == "waiting: branch rehearsal.shared is busy with run run:slow:s1", phases
    assert re.fullmatch(r"submitted job rehearsal-\w+ on branch rehearsal\.shared", phases[-2])
    assert re.fullmatch(r"finished: succeeded in \d+\.\ds", phases[-1]), phases
    assert len(phases) == len(set(phases)), "a phase is printed once, when it changes"


def test_fire_wait_gives_up_at_its_timeout_and_says_the_run_goes_on(
    tmp_path: Path, project_dir: Path
) -> None:
    config = write_config(tmp_path / "bauplan-trigger.toml", base_config(tmp_path, project_dir))
    fire = ("fire", "orders", "--config", str(config), "--param", "run_date=d")
    waited = run_cli(*fire, "--event-id", "t1", "--wait", "--timeout", "1")
    assert waited.returncode == 3, waited
    assert waited.stdout.strip() == "run:orders:t1"
    created, warning, error = waited.stderr.splitlines()
    assert created.startswith("note: set up the system database at ")
    assert warning.startswith("warning: no worker has ever run on this system database; ")
    assert error == (
        "error: run run:orders:t1 is still waiting after 1s (--timeout); it goes on: "
        "follow it with `bauplan-trigger runs show run:orders:t1`"
    )
