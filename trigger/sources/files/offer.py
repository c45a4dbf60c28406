"""Offering: settled file versions become ``Event``s, matched and ingested together.

A burst of ready versions is handed to the ingest writer at once, so one commit
enqueues and logs many files. The run id comes from the version (see
``trigger.core.fileversion``), so offering the same version again, after a rescan,
a restart or a crash, finds its run instead of starting another: a duplicate.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from trigger.core.batch import Ticket
from trigger.core.event import Event
from trigger.core.fileversion import FileVersion, file_event, sha256_of, shown
from trigger.core.logfields import ids
from trigger.core.settings import Settings, TriggerConfig
from trigger.core.settings.files import FilesSource, Matcher
from trigger.ingest import intake
from trigger.sources.files.tracker import Key
from workflows.intake import Enqueuer, Intake, Taken, unavailable

log = logging.getLogger(__name__)

_OUTCOMES = {"accepted": "enqueued", "duplicate": "duplicates", "ignored": "ignored"}


def files_filter(event: Event, trigger: TriggerConfig) -> str | None:
    """A file event belongs to the trigger whose watcher saw it (and matched its globs)."""
    if event.attributes.get("trigger") != trigger.name or trigger.files is None:
        return "the file was seen by another trigger's watcher"
    return None


def needs_sha(trig: TriggerConfig) -> bool:
    """Whether a version's event needs the file's SHA-256 (its identity, or a template)."""
    assert trig.files is not None
    return trig.files.identity == "content" or "file_sha256" in trig.template_fields()


def file_info(
    source: FilesSource, matcher: Matcher, root: Path, version: FileVersion, sha: str | None
) -> dict[str, Any]:
    """What the run's before/after steps need, untruncated (see workflows/steps/files.py)."""
    marker = matcher.marker_for(version.rel) if source.marker_is_companion else None
    return {
        "root": str(root),
        "rel": version.rel,
        "size": version.size,
        "mtime_ns": version.mtime_ns,
        "sha256": sha,
        "identity": source.identity,
        "after": source.after,
        "marker": marker,
    }


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
        enqueuer: Enqueuer,
        version_of: Callable[[str], Key | None],
    ) -> None:
        assert trig.files is not None
        self.settings = settings
        self.trig = trig
        self.source = trig.files
        self.root = root
        self.matcher = matcher
        self.enqueuer = enqueuer
        self._version = version_of
        self.need_sha = needs_sha(trig)
        self.last_error: str | None = None

    def all(self, ready: list[FileVersion]) -> list[tuple[FileVersion, str]]:
        """Offer a batch: every version's event goes to the writer before any is waited
        for, so a burst shares its commits."""
        pending: list[tuple[FileVersion, str | Ticket[Intake, Taken]]] = []
        for version in ready:
            try:
                pending.append((version, self._submit(version)))
            except OSError as exc:
                log.warning("file %s cannot be read: %s", shown(version.rel), exc.strerror)
                pending.append((version, "changed"))
        return [(v, t if isinstance(t, str) else self._outcome(v, t)) for v, t in pending]

    def _submit(self, version: FileVersion) -> str | Ticket[Intake, Taken]:
        path = self.root / version.rel
        sha = sha256_of(path) if self.need_sha else None
        # The version we hash must be the version that settled.
        if self._version(version.rel) != version.key:
            return "changed"
        event = file_event(self.trig.name, self.source, self.root, version, sha256=sha)
        info = file_info(self.source, self.matcher, self.root, version, sha)
        offered = intake(
            self.settings,
            event,
            files_filter,
            among=[self.trig],
            shape=lambda request, _trig: replace(request, file=info),
            # Rescans offer every file again; only a new run is a new story to tell.
            log_idle=False,
        )
        if not offered.requests:
            reason = offered.decisions[0].reason if offered.decisions else "no such trigger"
            log.info(
                "file %s ignored by trigger %s: %s",
                shown(version.rel),
                self.trig.name,
                reason,
                extra=ids(trigger=self.trig.name, outcome="ignored"),
            )
            return "ignored"
        return self.enqueuer.submit(offered)

    def _outcome(self, version: FileVersion, ticket: Ticket[Intake, Taken]) -> str:
        try:
            taken = ticket.result()
        except Exception as exc:
            self.last_error = str(unavailable(exc))
            log.warning("file %s not enqueued yet: %s", shown(version.rel), self.last_error)
            return "retry"
        [run] = taken.runs
        log.info(
            "file %s ready (%d bytes) for trigger %s: run %s%s",
            shown(version.rel),
            version.size,
            self.trig.name,
            run.run_id,
            " (already ran or queued)" if run.duplicate else "",
            extra=ids(run_id=run.run_id, trigger=self.trig.name, branch=run.branch),
        )
        return _OUTCOMES[taken.outcome]
