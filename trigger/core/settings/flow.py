"""Flow-control settings: per-branch limits and what a burst of events becomes.

The limits themselves are enforced on the durable side (``workflows/branch_flow.py``
names the partition keys and rate windows, ``workflows/job.py`` gates and caps);
this module only describes them and checks that a trigger's combination makes
sense, so a bad config fails at start-up with the key to fix.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field

from trigger.core.errors import ConfigError

if TYPE_CHECKING:
    from trigger.core.settings import QueueSettings, TriggerConfig

# queue: every event runs; latest: the newest waiting event replaces older waiting
# ones; cancel: like latest, and the running job of that trigger on that branch is
# cancelled too.
BurstPolicy = Literal["queue", "latest", "cancel"]


class BranchLimit(BaseModel):
    """At most ``runs`` run starts per branch in any ``period_seconds`` window."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    runs: int = Field(ge=1)
    period_seconds: float = Field(gt=0)


def check_flow(trig: TriggerConfig) -> None:
    where = f"triggers.{trig.name}"
    if trig.max_wait_seconds is not None:
        if trig.debounce_seconds is None:
            raise ConfigError(
                f"{where}.max_wait_seconds",
                trig.max_wait_seconds,
                "only applies with debounce_seconds; set debounce_seconds or remove it",
            )
        if trig.max_wait_seconds < trig.debounce_seconds:
            raise ConfigError(
                f"{where}.max_wait_seconds",
                trig.max_wait_seconds,
                f"must be at least debounce_seconds ({trig.debounce_seconds:g})",
            )


def coalesces(trig: TriggerConfig) -> bool:
    """Whether a new event of this trigger may replace older waiting ones."""
    return trig.on_burst != "queue" or trig.debounce_seconds is not None


def branch_flow(queue: QueueSettings, trig: TriggerConfig | None) -> tuple[int, BranchLimit | None]:
    """The per-branch concurrency and rate limit that apply to a trigger's runs."""
    if trig is None:
        return queue.per_branch_concurrency, queue.per_branch_limit
    concurrency = trig.per_branch_concurrency or queue.per_branch_concurrency
    limit = trig.per_branch_limit or queue.per_branch_limit
    return concurrency, limit
