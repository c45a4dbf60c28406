"""When is a file finished? Size and mtime unchanged for ``settle_seconds``.

watchfiles tells us something changed, not that a writer is done (see
samuelcolvin/watchfiles#360), so readiness is decided here from what we saw
and when. Pure bookkeeping: the caller stats files and passes in a monotonic
clock, which keeps this testable without sleeping.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass

Key = tuple[int, int]  # (size, mtime_ns)


@dataclass
class _Pending:
    key: Key
    since: float
    deadline: float


class Tracker:
    """Pending file versions waiting to settle, and the versions already offered.

    ``offered`` remembers, per path, the version handed to the enqueuer so an
    unchanged file seen again by a rescan or a late event is not offered twice
    (a second offer would be harmless, the run id is the same, but costs a write).
    """

    def __init__(self, settle_seconds: float) -> None:
        self.settle = settle_seconds
        self._pending: dict[str, _Pending] = {}
        self._heap: list[tuple[float, str]] = []
        self.offered: dict[str, Key] = {}

    def __len__(self) -> int:
        return len(self._pending)

    def observe(self, rel: str, key: Key | None, now: float, age: float = 0.0) -> None:
        """A sighting of ``rel`` (None: it is gone). A changed version restarts its clock;
        ``age`` says how long before ``now`` it was last written (from its mtime), so the
        notification delay does not add to the settle window."""
        if key is None:
            self.forget(rel)
            return
        if self.offered.get(rel) == key:
            return
        pending = self._pending.get(rel)
        if pending is not None and pending.key == key:
            return
        since = now - max(0.0, age)
        self._schedule(rel, key, since=since, deadline=since + self.settle)

    def retry(self, rel: str, key: Key, at: float) -> None:
        """Offer again at ``at`` (the enqueue failed, e.g. the database was away)."""
        self.offered.pop(rel, None)
        self._schedule(rel, key, since=at - self.settle, deadline=at)

    def _schedule(self, rel: str, key: Key, since: float, deadline: float) -> None:
        self._pending[rel] = _Pending(key=key, since=since, deadline=deadline)
        heapq.heappush(self._heap, (deadline, rel))

    def due(self, now: float) -> list[tuple[str, Key]]:
        """Paths whose settle window has passed since their last change; the caller
        re-stats each and calls ``confirm``."""
        out: list[tuple[str, Key]] = []
        while self._heap and self._heap[0][0] <= now:
            deadline, rel = heapq.heappop(self._heap)
            pending = self._pending.get(rel)
            if pending is not None and pending.deadline == deadline:
                out.append((rel, pending.key))
        return out

    def confirm(self, rel: str, key: Key | None, now: float) -> bool:
        """True when the file is still there with the version that settled; it then
        counts as offered. A change restarts the clock; a vanished file is dropped."""
        pending = self._pending.get(rel)
        if key is None:
            self.forget(rel)
            return False
        if pending is None or pending.key != key:
            self._schedule(rel, key, since=now, deadline=now + self.settle)
            return False
        del self._pending[rel]
        self.offered[rel] = key
        return True

    def forget(self, rel: str) -> None:
        self._pending.pop(rel, None)
        self.offered.pop(rel, None)

    def is_pending(self, rel: str) -> bool:
        return rel in self._pending
