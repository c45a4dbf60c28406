"""Rehearsed worker crashes at step boundaries.

A real worker can die between any two checkpoints of a run: that is the moment
recovery has to get right. In rehearsal mode, ``bauplan-trigger rehearsal fault
step:NAME EXIT_AFTER`` arms such a death: the next time a workflow passes the
step ``NAME``, the worker exits the instant after DBOS checkpointed that step's
result (or its error). Every step of the run workflow and of the notifications
is run through ``step`` below, so any of them can be armed by its name; in live
mode the check costs nothing.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Any, TypeVar

from dbos import DBOS, StepOptions

from workflows import runtime
from workflows.bauplan.faults import EXIT_CODE, STEP_PREFIX

log = logging.getLogger(__name__)

T = TypeVar("T")


def reached(name: str) -> None:
    """The crash point ``name``: exit here when rehearsal mode has one armed for it."""
    ledger = runtime.current().ledger
    if ledger is None or ledger.take_fault(STEP_PREFIX + name) is None:
        return
    log.warning("rehearsal: exiting right after step %s, as `rehearsal fault` armed", name)
    for handler in logging.getLogger().handlers:
        handler.flush()
    os._exit(EXIT_CODE)


def step(options: StepOptions, fn: Callable[..., T], *args: Any) -> T:
    """``DBOS.run_step``, then the crash point named after the step."""
    try:
        return DBOS.run_step(options, fn, *args)
    finally:
        reached(str(options.get("name") or getattr(fn, "__name__", "step")))
