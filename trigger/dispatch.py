"""From a verified Event to enqueued runs, with the event log entry that tells the story.

Every ingress ends the same way: decide, enqueue each matching request, record the
event with each trigger's verdict and run id. ``fire`` (CLI and API) and schedule
ticks go through :func:`dispatch`; webhook and file sources may too.
"""

from __future__ import annotations

from trigger.errors import TriggerError
from trigger.event import Event
from trigger.eventlog import record_dispatch
from trigger.matching import decide
from trigger.settings import Settings
from workflows.queue import Enqueued, Enqueuer


def dispatch(
    settings: Settings,
    enqueuer: Enqueuer,
    event: Event,
    *,
    source_addr: str | None = None,
) -> list[Enqueued]:
    """Enqueue every run the event asks for and record the event; returns the enqueues."""
    decided = decide(event, settings)
    enqueued: dict[str, Enqueued] = {}
    for d in decided:
        if d.request is not None:
            enqueued[d.request.run_id] = enqueuer.enqueue(d.request)
    record_dispatch(settings, event, decided, enqueued, source_addr=source_addr)
    return list(enqueued.values())


def fire_event(
    settings: Settings, enqueuer: Enqueuer, event: Event, *, source_addr: str | None = None
) -> Enqueued:
    """A manual fire: exactly one run of the named trigger, or a clear error."""
    results = dispatch(settings, enqueuer, event, source_addr=source_addr)
    if not results:
        raise TriggerError(
            f"trigger {event.attributes.get('trigger')!r} did not produce a run for this fire"
        )
    return results[0]
