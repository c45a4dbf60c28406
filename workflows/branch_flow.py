"""Where a run's per-branch limits live: its partition key and its rate window.

The run queue is one plainly partitioned DBOS queue (one run per partition key at
a time, no limiter, no global cap), the only shape DBOS dequeues in one batched
transaction however many branches wait. Everything else a trigger may set is
carried by the names derived here, from the settings alone, so every process
agrees on them:

- **Per-branch concurrency** *c*: the branch gets *c* partition keys
  (``branch#0`` … ``branch#c-1``); the enqueue puts a run on the least busy one
  (``workflows.intake``). With *c* = 1 the key is the branch itself.
- **Overrides**: a trigger whose per-branch settings differ from ``[queue]``'s
  gets its own namespace (``branch~c2-r1p60``), so its runs neither wait for nor
  hold back the runs of triggers with other limits on the same branch, as when
  each combination had its own queue.
- **Per-branch rate limit**: a window per namespace and branch
  (``workflows.ratelimit``), gated inside the run before it submits.
"""

from __future__ import annotations

from dataclasses import dataclass

from trigger.core.settings import Settings, TriggerConfig
from trigger.core.settings.flow import BranchLimit, branch_flow

_NAMESPACE, _SLOT = "~", "#"


@dataclass(frozen=True)
class FlowSpec:
    """The per-branch limits one group of triggers shares."""

    namespace: str  # "" for the ``[queue]`` defaults
    per_branch_concurrency: int
    per_branch_limit: BranchLimit | None

    def window(self, branch: str) -> str:
        """The rate window and the stem of the partition keys for ``branch``."""
        return f"{branch}{_NAMESPACE}{self.namespace}" if self.namespace else branch

    def partition_keys(self, branch: str) -> list[str]:
        stem = self.window(branch)
        if self.per_branch_concurrency == 1:
            return [stem]
        return [f"{stem}{_SLOT}{slot}" for slot in range(self.per_branch_concurrency)]


def branch_of(partition_key: str) -> str:
    """The Bauplan branch a partition key belongs to (branch names have neither mark)."""
    return partition_key.split(_NAMESPACE, 1)[0].split(_SLOT, 1)[0]


def _namespace(concurrency: int, limit: BranchLimit | None) -> str:
    text = f"c{concurrency}"
    if limit is not None:
        text += f"-r{limit.runs}p{limit.period_seconds:g}".replace(".", "_")
    return text


def spec_for(settings: Settings, trig: TriggerConfig | None) -> FlowSpec:
    default = branch_flow(settings.queue, None)
    concurrency, limit = branch_flow(settings.queue, trig)
    if (concurrency, limit) == default:
        return FlowSpec("", *default)
    return FlowSpec(_namespace(concurrency, limit), concurrency, limit)


def spec_of(settings: Settings, trigger: str | None) -> FlowSpec:
    """The spec for a trigger by name (the defaults for a trigger no longer configured)."""
    return spec_for(settings, settings.find_trigger(trigger))


def all_specs(settings: Settings) -> dict[str, FlowSpec]:
    """Every spec this config uses, by namespace, the defaults first."""
    specs = {"": spec_for(settings, None)}
    for trig in settings.triggers:
        spec = spec_for(settings, trig)
        specs.setdefault(spec.namespace, spec)
    return specs
