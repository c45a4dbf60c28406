"""Following one run to its end, for ``fire --wait``: each change of phase, and a deadline.

The run's record comes from ``records.show_run`` with the settings, so "waiting, and
why" is the same sentence ``runs show`` prints (the one waiting-reason implementation,
which also says when no worker is alive to start the run).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from trigger.core.errors import RunStillGoingError
from trigger.core.runstatus import FINAL_STATUSES

if TYPE_CHECKING:  # the CLI imports this module for --help; keep that quick
    from dbos import DBOSClient

    from trigger.core.settings import Settings

# ``fire --wait`` gives up after this long unless told otherwise; the run goes on.
DEFAULT_TIMEOUT = 3600.0


def phase(run: dict[str, Any]) -> str:
    """One line for where the run is now; a new line means a new phase."""
    status = run["status"]
    if status == "waiting":
        return f"waiting: {run.get('waiting_reason') or 'queued'}"
    if status == "running":
        if run.get("job_id"):
            return f"submitted job {run['job_id']} on branch {run['branch']}"
        return f"running: preparing branch {run['branch']}"
    duration = f" in {run['duration']:.1f}s" if run.get("duration") is not None else ""
    return f"finished: {status}{duration}"


def follow(
    client: DBOSClient,
    run_id: str,
    settings: Settings,
    timeout: float | None,
    on_phase: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """The run's record once it has ended; ``on_phase`` hears each new phase line.
    Raises ``RunStillGoingError`` when ``timeout`` seconds pass first (None or 0: never)."""
    from workflows.records import show_run

    deadline = time.monotonic() + timeout if timeout else None
    shown = None
    delay = 0.1
    while True:
        current: dict[str, Any] = show_run(client, run_id, settings)
        line = phase(current)
        if on_phase is not None and line != shown:
            on_phase(line)
            shown = line
        if current["status"] in FINAL_STATUSES:
            return current
        if deadline is not None and time.monotonic() > deadline:
            raise RunStillGoingError(run_id, current["status"], timeout or 0)
        time.sleep(delay)
        delay = min(delay * 1.5, 1.0)
