"""The file-drop source as a ``serve`` component, and its ``/healthz`` check."""

from __future__ import annotations

import asyncio
from typing import Any

from trigger.context import Component, ServiceContext
from trigger.sources.files.watcher import Watcher, watcher_status


async def files_component(ctx: ServiceContext) -> None:
    """One watcher per trigger with a ``[triggers.files]`` table; runs until cancelled."""
    watchers = [
        Watcher(ctx.settings, trig, ctx.enqueuer)
        for trig in ctx.settings.triggers
        if trig.files is not None
    ]
    if not watchers:
        await asyncio.Event().wait()
    await asyncio.gather(*(watcher.run() for watcher in watchers))


COMPONENT = Component("files", ("all", "ingress"), files_component)


def health() -> dict[str, Any]:
    """/healthz: each watcher's state and last scan; a lost folder makes it 503."""
    watchers = watcher_status()
    bad = [w for w in watchers if w.get("state") in ("missing", "error")]
    return {"ok": not bad, "watchers": watchers}
