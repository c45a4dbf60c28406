"""``fire``: a run of one named trigger, started by hand (CLI or API)."""

from __future__ import annotations

from trigger.core.errors import TriggerError
from trigger.core.event import Event
from trigger.core.settings import TriggerConfig
from trigger.ingest import ingest
from workflows.intake import Enqueuer
from workflows.queue import Enqueued


def manual_filter(event: Event, trigger: TriggerConfig) -> str | None:
    if event.attributes.get("trigger") != trigger.name:
        return "fired for another trigger"
    return None


def fire_event(
    enqueuer: Enqueuer,
    event: Event,
    *,
    source_addr: str | None = None,
    timeout: float | None = None,
) -> Enqueued:
    """A manual fire: exactly one run of the named trigger, or a clear error. Given up
    after ``timeout`` seconds (``EnqueueUnavailableError``), it leaves nothing behind."""
    results = ingest(enqueuer, event, manual_filter, source_addr=source_addr, timeout=timeout).runs
    if not results:
        raise TriggerError(
            f"trigger {event.attributes.get('trigger')!r} did not produce a run for this fire"
        )
    return results[0]
