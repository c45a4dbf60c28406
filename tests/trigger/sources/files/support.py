"""Helpers for the file-drop tests: a watcher running in a thread, what it queued, a
trigger config."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from pathlib import Path
from typing import Any

from trigger.core.matching import RunRequest
from trigger.sources.files.watcher import Watcher
from workflows.intake import Enqueuer
from workflows.queue import RUN_WORKFLOW


def files_trigger(project_dir: Path, landing: Path, **files: Any) -> dict[str, Any]:
    """A trigger on ``landing`` with one branch per file stem and templated parameters."""
    params = files.pop("parameters", None) or {
        "source_file": "{file_path}",
        "rel": "{file_rel}",
        "size": "{file_size}",
        "ext": "{file_ext}",
    }
    branch = files.pop("branch", "landing_{file_stem}")
    return {
        "name": "landing",
        "project_dir": str(project_dir),
        "branch": branch,
        "parameters": params,
        "files": {"dir": str(landing), "settle_seconds": 0.3, "poll_interval": 0.1, **files},
    }


class Queued:
    """What the watcher's offers put on the real queue (SQLite, no worker runs them),
    read back from DBOS: the requests in enqueue order, and the re-offers that found
    their run already there."""

    def __init__(self, enqueuer: Enqueuer, thread: WatcherThread) -> None:
        self.enqueuer = enqueuer
        self.thread = thread

    @property
    def requests(self) -> list[RunRequest]:
        rows = self.enqueuer.client.list_workflows(name=RUN_WORKFLOW, sort_desc=False)
        return [RunRequest.from_dict(row.input["args"][0]) for row in rows if row.input]

    @property
    def duplicates(self) -> int:
        return sum(w.counts["duplicates"] for w in self.thread.watchers)

    def rels(self) -> list[str]:
        return sorted(str(r.summary["file_rel"]) for r in self.requests)


class WatcherThread:
    """The ``serve`` files component's watchers on their own event loop in a thread."""

    def __init__(self, settings: Any, enqueuer: Enqueuer) -> None:
        self.watchers = [Watcher(settings, t, enqueuer) for t in settings.triggers if t.files]
        self.error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Future[Any] | None = None
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._main, daemon=True)

    @property
    def watcher(self) -> Watcher:
        return self.watchers[0]

    def start(self) -> WatcherThread:
        self._thread.start()
        self._started.wait(10)
        return self

    def _main(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._task = loop.create_task(self._run())
        self._started.set()
        try:
            loop.run_until_complete(self._task)
        except asyncio.CancelledError:
            pass
        except BaseException as exc:
            self.error = exc
        finally:
            loop.close()

    async def _run(self) -> None:
        await asyncio.gather(*(w.run() for w in self.watchers))

    def stop(self) -> None:
        if self._loop is not None and self._task is not None and not self._loop.is_closed():
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._task.cancel)
        self._thread.join(30)
