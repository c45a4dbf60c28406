"""One DBOS queue per distinct set of per-branch limits.

DBOS limits belong to a queue, so a trigger that overrides the per-branch
settings runs on its own queue, named from those settings alone: every process
derives the same name from the same config, registers it at launch, and the
enqueuer picks it by trigger. Triggers whose effective limits equal the
``[queue]`` defaults share the main queue (and so share its limits).
"""

from __future__ import annotations

from dataclasses import dataclass

from trigger.core.settings import Settings, TriggerConfig
from trigger.core.settings.flow import BranchLimit, branch_flow


@dataclass(frozen=True)
class QueueSpec:
    name: str
    per_branch_concurrency: int
    per_branch_limit: BranchLimit | None


def _suffix(concurrency: int, limit: BranchLimit | None) -> str:
    text = f"c{concurrency}"
    if limit is not None:
        text += f"-r{limit.runs}p{limit.period_seconds:g}".replace(".", "_")
    return text


def spec_for(settings: Settings, base: str, trig: TriggerConfig | None) -> QueueSpec:
    default = branch_flow(settings.queue, None)
    concurrency, limit = branch_flow(settings.queue, trig)
    if (concurrency, limit) == default:
        return QueueSpec(base, *default)
    return QueueSpec(f"{base}.{_suffix(concurrency, limit)}", concurrency, limit)


def all_specs(settings: Settings, base: str) -> dict[str, QueueSpec]:
    """Every queue this config needs, the main one first."""
    specs = {base: spec_for(settings, base, None)}
    for trig in settings.triggers:
        spec = spec_for(settings, base, trig)
        specs.setdefault(spec.name, spec)
    return specs
