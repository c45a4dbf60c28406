"""One watch loop per ``[triggers.files]`` trigger: notice, settle, offer, rescan.

watchfiles (inotify, or polling for network filesystems) says which paths
changed; the ``Tracker`` decides when a version is finished; a ready version is
offered (``offer.Offers``): it becomes an ``Event``, is matched and handed to the
enqueue callable. Nothing here is durable and nothing needs to be: the run id
comes from the file version, so a version seen again after a crash, a restart or
a rescan finds its run. The periodic rescan is what repairs a missed notification
(inotify overflow on bursts) and catches files dropped while the service was down.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import watchfiles

from trigger.core.eventlog import record_heartbeat
from trigger.core.fileversion import (
    FileVersion,
    Skipped,
    inspect_file,
    rel_of,
    shown,
)
from trigger.core.settings import Settings, TriggerConfig
from trigger.core.settings.files import Matcher
from trigger.sources.files.folder import check_dir, undecodable, watch_dir
from trigger.sources.files.offer import Offers
from trigger.sources.files.tracker import Key, Tracker
from workflows.intake import Enqueuer

log = logging.getLogger(__name__)

TICK = 0.02  # how often settled files are looked at; bounds the extra latency
# At most this much of a file's mtime age counts toward its settle window: it takes
# out the notification delay, and a skewed network-filesystem clock cannot do more.
MAX_AGE_CREDIT = 0.5
ROOT_CHECK = 1.0  # how often we check that the watched dir still exists
RETRY = 2.0  # a missing dir, a failed watch, an enqueue the database refused
_INLINE_STATS = 64  # more stats than this at once go to a thread
# Every watcher of this process, by trigger name, for /healthz.
_WATCHERS: dict[str, Watcher] = {}


def watcher_status() -> list[dict[str, Any]]:
    """Each watcher's state (starting, watching, missing, error, stopped), last scan, counts."""
    return [w.status() for w in _WATCHERS.values()]


class Watcher:
    def __init__(self, settings: Settings, trig: TriggerConfig, enqueuer: Enqueuer) -> None:
        assert trig.files is not None
        self.settings = settings
        self.trig = trig
        self.source = trig.files
        self.root = watch_dir(settings, trig)
        self.real_root = os.path.realpath(self.root)
        self.matcher = Matcher(self.source)
        settle = 0.0 if self.source.ready_marker else self.source.settle_seconds
        self.tracker = Tracker(settle)
        self.waiting: dict[str, set[str]] = {}  # marker rel -> files waiting for it
        self.offers = Offers(settings, trig, self.root, self.matcher, enqueuer, self._version)
        self.state = "starting"
        self.last_scan_at: datetime | None = None
        self.last_error: str | None = None
        self.counts = {"enqueued": 0, "duplicates": 0, "ignored": 0, "skipped": 0}
        self._warned: set[str] = set()

    def status(self) -> dict[str, Any]:
        return {
            "trigger": self.trig.name,
            "dir": str(self.root),
            "state": self.state,
            "last_scan_at": self.last_scan_at.isoformat() if self.last_scan_at else None,
            "pending": len(self.tracker),
            "waiting_for_marker": sum(len(v) for v in self.waiting.values()),
            "last_error": self.last_error,
            **self.counts,
        }

    # -- the loop ---------------------------------------------------------------------

    async def run(self) -> None:
        check_dir(self.trig.name, self.root)
        _WATCHERS[self.trig.name] = self
        log.info(
            "watching %s for trigger %s patterns=%s settle=%ss marker=%s after=%s",
            self.root,
            self.trig.name,
            ",".join(self.source.patterns),
            self.source.settle_seconds,
            self.source.ready_marker or "-",
            self.source.after,
        )
        try:
            while True:
                await self._watch_once()
                if not self.root.is_dir():
                    self.state = "missing"
                    self.last_error = "the watched dir disappeared"
                    log.warning(
                        "watched dir %s of trigger %s disappeared; retrying every %.0fs",
                        self.root,
                        self.trig.name,
                        RETRY,
                    )
                    while not self.root.is_dir():
                        await asyncio.sleep(RETRY)
                    log.info("watched dir %s of trigger %s is back", self.root, self.trig.name)
                    self.tracker = Tracker(self.tracker.settle)
                    self.waiting.clear()
                else:
                    await asyncio.sleep(RETRY)
        finally:
            self.state = "stopped"

    async def _watch_once(self) -> None:
        """Watch until the dir disappears or the watch fails; the caller decides what next."""
        self.real_root = os.path.realpath(self.root)
        stop = asyncio.Event()
        tasks = [
            asyncio.create_task(self._events(stop), name=f"files:{self.trig.name}:events"),
            asyncio.create_task(self._ticks(), name=f"files:{self.trig.name}:ticks"),
            asyncio.create_task(self._rescans(), name=f"files:{self.trig.name}:rescans"),
        ]
        self.state = "watching"
        self.last_error = None
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.set()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        for task in done:
            exc = task.exception()
            if exc is not None and self.root.is_dir():
                self.state = "error"
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.error(
                    "watching %s for trigger %s failed (%s); restarting in %.0fs",
                    self.root,
                    self.trig.name,
                    self.last_error,
                    RETRY,
                )

    async def _events(self, stop: asyncio.Event) -> None:
        rescan = False
        while True:
            try:
                await self._notifications(stop, rescan)
                return
            except Exception as exc:
                if not undecodable(exc):
                    raise
            # watchfiles gives up on a name that is not UTF-8, and drops the other changes
            # it held: watch again at once, and list the folder (which skips that name).
            log.debug("a name in %s is not UTF-8; watching again and rescanning", self.root)
            rescan = True

    async def _notifications(self, stop: asyncio.Event, rescan: bool) -> None:
        """With ``rescan``, the folder is also listed once, by a task that starts when this
        one first waits: inside awatch, after its watch is in place, so nothing written
        while the last watch died is missed."""
        listing = asyncio.create_task(self._list_once()) if rescan else None
        try:
            async for changes in watchfiles.awatch(
                str(self.root),
                watch_filter=None,
                debounce=200,
                step=50,
                stop_event=stop,
                recursive=self.source.recursive,
                force_polling=self.source.force_polling or None,
                poll_delay_ms=int(self.source.poll_interval * 1000),
                ignore_permission_denied=True,
            ):
                rels: set[str] = set()
                for _, path in changes:
                    rel = rel_of(self.root, path)
                    if rel is not None:
                        rels.add(rel)
                await self._look_at(await asyncio.to_thread(self._expand, sorted(rels)))
        finally:
            if listing is not None:
                listing.cancel()
                [outcome] = await asyncio.gather(listing, return_exceptions=True)
                if isinstance(outcome, Exception):  # the periodic rescan lists it again
                    log.warning("listing %s failed: %s", self.root, type(outcome).__name__)

    async def _list_once(self) -> None:
        await self._look_at(await asyncio.to_thread(self._list), scan=True)

    async def _rescans(self) -> None:
        every = self.source.rescan_seconds
        while True:
            rels = await asyncio.to_thread(self._list)
            self.last_scan_at = datetime.now(UTC)
            await asyncio.to_thread(self._heartbeat)
            await self._look_at(rels, scan=True)
            log.debug("scanned %s: %d candidates", self.root, len(rels))
            if every <= 0:
                await asyncio.Event().wait()
            await asyncio.sleep(every)

    def _heartbeat(self) -> None:
        try:
            record_heartbeat(self.settings, f"files:{self.trig.name}")
        except Exception as exc:
            log.warning("watcher heartbeat not recorded: %s", type(exc).__name__)

    async def _ticks(self) -> None:
        checked = time.monotonic()
        while True:
            now = time.monotonic()
            due = self.tracker.due(now)
            if due:
                versions = await self._stat_all([rel for rel, _ in due])
                now = time.monotonic()
                ready = [
                    FileVersion(rel, *versions[rel])
                    for rel, _ in due
                    if self.tracker.confirm(rel, versions.get(rel), now)
                ]
                if ready:
                    await self._offer(ready)
            if now - checked >= ROOT_CHECK:
                checked = now
                if not self.root.is_dir():
                    return
            await asyncio.sleep(TICK)

    # -- sightings ----------------------------------------------------------------------

    def _list(self) -> list[str]:
        """Every wanted file and marker under the dir (one level unless recursive)."""
        return list(self._walk(self.root, ""))

    def _walk(self, folder: Path, prefix: str) -> Iterator[str]:
        try:
            entries = list(os.scandir(folder))
        except FileNotFoundError:
            return
        for entry in entries:
            rel = prefix + entry.name
            try:
                is_dir = entry.is_dir(follow_symlinks=False)
            except OSError:
                continue
            if is_dir:
                if self.matcher.enters(rel):
                    yield from self._walk(Path(entry.path), rel + "/")
            elif self.matcher.wanted(rel) or self.matcher.is_marker(rel):
                yield rel

    def _expand(self, rels: list[str]) -> list[str]:
        """New folders are listed: files written into a folder before its inotify watch
        was added are never reported (the usual mkdir-then-write race)."""
        out: list[str] = []
        for rel in rels:
            path = self.root / rel
            if path.is_dir() and not path.is_symlink():
                if self.matcher.enters(rel):
                    out.extend(self._walk(path, rel + "/"))
            else:
                out.append(rel)
        return out

    async def _look_at(self, rels: list[str], scan: bool = False) -> None:
        markers = [rel for rel in rels if self.matcher.is_marker(rel)]
        wanted = [rel for rel in rels if self.matcher.wanted(rel)]
        versions = await self._stat_all(wanted)
        now = time.monotonic()
        wall = time.time_ns()
        credit = min(MAX_AGE_CREDIT, self.tracker.settle / 2)
        for rel in wanted:
            key = versions.get(rel)
            if self.source.ready_marker is None:
                if (
                    key is not None
                    and not self.tracker.is_pending(rel)
                    and self.tracker.offered.get(rel) != key
                ):
                    log.info(
                        "file %s seen for trigger %s; offering once it has settled for %ss",
                        shown(rel),
                        self.trig.name,
                        self.source.settle_seconds,
                    )
                age = 0.0 if key is None else min(credit, (wall - key[1]) / 1e9)
                self.tracker.observe(rel, key, now, age)
            else:
                self._wait_or_observe(rel, key, now)
        for marker in markers:
            if os.path.lexists(self.root / marker):
                for rel in sorted(self.waiting.pop(marker, set())):
                    self.tracker.observe(rel, self._version(rel), now)

    def _wait_or_observe(self, rel: str, key: Key | None, now: float) -> None:
        marker = self.matcher.marker_for(rel)
        assert marker is not None
        if key is None:
            self.tracker.observe(rel, None, now)
            self.waiting.get(marker, set()).discard(rel)
        elif os.path.lexists(self.root / marker):
            self.tracker.observe(rel, key, now)
        elif self.tracker.offered.get(rel) != key:
            if rel not in self.waiting.get(marker, set()):
                log.info("file %s waiting for marker %s", shown(rel), shown(marker))
            self.waiting.setdefault(marker, set()).add(rel)

    async def _stat_all(self, rels: list[str]) -> dict[str, Key]:
        if len(rels) > _INLINE_STATS:
            return await asyncio.to_thread(self._stat_many, rels)
        return self._stat_many(rels)

    def _stat_many(self, rels: list[str]) -> dict[str, Key]:
        out: dict[str, Key] = {}
        for rel in rels:
            version = self._version(rel)
            if version is not None:
                out[rel] = version
        return out

    def _version(self, rel: str) -> Key | None:
        try:
            return inspect_file(self.root, self.real_root, rel).key
        except (FileNotFoundError, NotADirectoryError):
            return None
        except Skipped as why:
            if rel not in self._warned:
                self._warned.add(rel)
                self.counts["skipped"] += 1
                log.warning("skipping %s in %s: %s", shown(rel), self.root, why)
            return None
        except OSError as exc:
            log.warning("cannot stat %s in %s: %s", shown(rel), self.root, exc.strerror)
            return None

    # -- offering -----------------------------------------------------------------------

    async def _offer(self, ready: list[FileVersion]) -> None:
        outcomes = await asyncio.to_thread(self.offers.all, ready)
        now = time.monotonic()
        for version, outcome in outcomes:
            if outcome in ("enqueued", "duplicates", "ignored"):
                self.counts[outcome] += 1
            elif outcome == "retry":
                self.last_error = self.offers.last_error
                self.tracker.retry(version.rel, version.key, now + RETRY)
            elif outcome == "changed":
                self.tracker.observe(version.rel, self._version(version.rel), now)
