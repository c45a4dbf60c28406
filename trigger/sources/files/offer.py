"""Offering: a settled file version becomes an ``Event``, is matched and enqueued.

The run id comes from the version (see ``trigger.core.fileversion``), so offering the
same version again, after a rescan, a restart or a crash, finds its run instead of
starting another: the enqueue answers "duplicate".
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

from trigger.core.errors import EnqueueUnavailableError
from trigger.core.event import Event
from trigger.core.eventlog import record_dispatch
from trigger.core.fileversion import FileVersion, file_event, sha256_of, shown
from trigger.core.matching import RunRequest, decide
from trigger.core.settings import Settings, TriggerConfig
from trigger.core.settings.files import Matcher
from trigger.sources.files.tracker import Key

log = logging.getLogger(__name__)

# Concurrent enqueues in a burst on PostgreSQL (the DBOSClient pool holds 5). SQLite takes
# one writer at a time: threads there only add lock waits, so bursts stay sequential.
OFFER_THREADS = 4

Enqueue = Callable[[RunRequest], Any]


def files_filter(event: Event, trigger: TriggerConfig) -> str | None:
    """A file event belongs to the trigger whose watcher saw it (and matched its globs)."""
    if event.attributes.get("trigger") != trigger.name or trigger.files is None:
        return "the file was seen by another trigger's watcher"
    return None


def _used_fields(trig: TriggerConfig) -> set[str]:
    fields = set(trig.branch_template().fields)
    for template in trig.parameter_templates().values():
        fields |= getattr(template, "fields", frozenset())
    return fields


class Offers:
    """One trigger's offering of ready versions. Each outcome is "enqueued",
    "duplicates", "ignored", "retry" (the database refused; ``last_error`` says why)
    or "changed" (the file is not the version that settled)."""

    def __init__(
        self,
        settings: Settings,
        trig: TriggerConfig,
        root: Path,
        matcher: Matcher,
        enqueue: Enqueue,
        version_of: Callable[[str], Key | None],
    ) -> None:
        assert trig.files is not None
        self.settings = settings
        self.trig = trig
        self.source = trig.files
        self.root = root
        self.matcher = matcher
        self.enqueue = enqueue
        self._version = version_of
        self.need_sha = self.source.identity == "content" or "file_sha256" in _used_fields(trig)
        self.last_error: str | None = None

    def all(self, ready: list[FileVersion]) -> list[tuple[FileVersion, str]]:
        """Enqueue a batch; a burst uses a few connections at once (each enqueue is one
        committed insert, so order between files does not matter)."""
        if not self.settings.is_postgres or len(ready) < 2 * OFFER_THREADS:
            return [self._safely(version) for version in ready]
        with ThreadPoolExecutor(OFFER_THREADS, thread_name_prefix="files-offer") as pool:
            return list(pool.map(self._safely, ready))

    def _safely(self, version: FileVersion) -> tuple[FileVersion, str]:
        try:
            return version, self._one(version)
        except EnqueueUnavailableError as exc:
            self.last_error = str(exc)
            log.warning("file %s not enqueued yet: %s", shown(version.rel), exc)
            return version, "retry"
        except OSError as exc:
            log.warning("file %s cannot be read: %s", shown(version.rel), exc.strerror)
            return version, "changed"

    def _one(self, version: FileVersion) -> str:
        path = self.root / version.rel
        sha = sha256_of(path) if self.need_sha else None
        # The version we hash must be the version that settled.
        if self._version(version.rel) != version.key:
            return "changed"
        event = file_event(self.trig.name, self.source, self.root, version, sha256=sha)
        decisions = decide(event, self.settings, files_filter, [self.trig])
        if not decisions or decisions[0].request is None:
            reason = decisions[0].reason if decisions else "no such trigger"
            log.info(
                "file %s ignored by trigger %s: %s", shown(version.rel), self.trig.name, reason
            )
            return "ignored"
        request = replace(decisions[0].request, file=self._file_info(version, sha))
        enqueued = self.enqueue(request)
        if not getattr(enqueued, "duplicate", False):
            # Rescans offer every file again; only a new run is a new story to tell.
            self._record(event, decisions, request.run_id, enqueued)
        log.info(
            "file %s ready (%d bytes) for trigger %s: run %s%s",
            shown(version.rel),
            version.size,
            self.trig.name,
            request.run_id,
            " (already ran or queued)" if getattr(enqueued, "duplicate", False) else "",
        )
        return "duplicates" if getattr(enqueued, "duplicate", False) else "enqueued"

    def _record(self, event: Any, decisions: list[Any], run_id: str, enqueued: Any) -> None:
        try:
            record_dispatch(self.settings, event, decisions, {run_id: enqueued})
        except Exception as exc:  # the event log must never block a file's run
            log.warning("event log write failed for run %s: %s", run_id, type(exc).__name__)

    def _file_info(self, version: FileVersion, sha: str | None) -> dict[str, Any]:
        """What the run's before/after steps need, untruncated (see workflows/steps/files.py)."""
        marker = None
        if self.source.marker_is_companion:
            marker = self.matcher.marker_for(version.rel)
        return {
            "root": str(self.root),
            "rel": version.rel,
            "size": version.size,
            "mtime_ns": version.mtime_ns,
            "sha256": sha,
            "identity": self.source.identity,
            "after": self.source.after,
            "marker": marker,
        }
