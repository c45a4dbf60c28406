"""Pure matching: ``(event, settings) -> list[RunRequest]``.

No I/O, no clock, no DBOS: the same event and config always give the same
requests with the same run ids, which is what makes a redelivery a no-op.
"""

from __future__ import annotations

import copy
import hashlib
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

from trigger.core import text
from trigger.core.errors import BadParameterError, FireError, TemplateError
from trigger.core.event import (
    LIST_ATTRIBUTES,
    AttributeValue,
    Event,
    fitted_list,
    list_attribute,
)
from trigger.core.settings import Settings, TriggerConfig
from trigger.core.templates import Template

_SAFE_ID = re.compile(r"[A-Za-z0-9._:-]{1,120}\Z")
_SUFFIX_UNSAFE = re.compile(r"[^A-Za-z0-9_]+")

ParameterValue = str | int | float | bool


@dataclass(frozen=True)
class RunRequest:
    """Everything a run needs, with no secrets: this is the workflow's input."""

    run_id: str
    trigger: str
    event_id: str
    event_kind: str
    project_dir: str
    branch_suffix: str
    base_ref: str
    parameters: dict[str, ParameterValue]
    priority: int
    notify: list[str] = field(default_factory=list)
    summary: dict[str, AttributeValue] = field(default_factory=dict)
    rehearse_seconds: float | None = None
    rehearse_outcome: str | None = None
    # Pushed-commit runs: the project folder is project_subdir of git_source at git_sha.
    git_source: str | None = None
    git_sha: str | None = None
    project_subdir: str | None = None
    on_burst: str = "queue"
    debounce_seconds: float | None = None
    # A file drop's location and version, untruncated, for the run's file steps.
    file: dict[str, Any] | None = None
    # Time limits (``workflows.limits``): of the job once submitted, of the wait before.
    timeout_seconds: float | None = None
    max_queue_seconds: float | None = None
    # ``[triggers.publish]``: merge the run's branch into this one when it succeeds.
    publish_into: str | None = None
    delete_branch_after: bool = False

    def as_dict(self) -> dict[str, Any]:
        """What ``dataclasses.asdict`` gives, without its deep copy of every summary value:
        only the containers are copied (the values are scalars), which matters on
        the enqueue path of every delivery."""
        data = {name: getattr(self, name) for name in _REQUEST_FIELDS}
        data["parameters"] = dict(self.parameters)
        data["notify"] = list(self.notify)
        data["summary"] = dict(self.summary)
        data["file"] = copy.deepcopy(self.file)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunRequest:
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in data.items() if k in known})


_REQUEST_FIELDS = tuple(f.name for f in fields(RunRequest))


# A source decides whether a trigger cares about an event of its kind: it passes its
# own filter to ``decide``, so the verdict never depends on what was imported.
Filter = Callable[[Event, TriggerConfig], str | None]


@dataclass(frozen=True)
class Decision:
    trigger: str
    request: RunRequest | None
    reason: str | None  # why the trigger did not match; None when it did


def decide(
    event: Event,
    settings: Settings,
    check: Filter,
    triggers: Sequence[TriggerConfig] | None = None,
) -> list[Decision]:
    """Every trigger's verdict on the event, including why the others passed;
    ``check`` is the event's source's filter (``None``: the trigger wants it).

    ``triggers`` narrows the verdicts to some of ``settings.triggers`` (a webhook's
    verified ones) without copying the settings."""
    decisions: list[Decision] = []
    for trig in settings.triggers if triggers is None else triggers:
        if event.kind not in trig.sources():
            decisions.append(Decision(trig.name, None, f"listens to {', '.join(trig.sources())}"))
            continue
        reason = check(event, trig)
        if reason is not None:
            decisions.append(Decision(trig.name, None, reason))
            continue
        try:
            request = build_request(event, trig, settings)
        except TemplateError as exc:
            decisions.append(Decision(trig.name, None, f"cannot render templates: {exc}"))
            continue
        decisions.append(Decision(trig.name, request, None))
    return decisions


def run_id_for(trigger: str, event_id: str) -> str:
    """The workflow id: data from the event's identity, never a clock or a random number."""
    if _SAFE_ID.match(event_id):
        return f"run:{trigger}:{event_id}"
    digest = hashlib.sha256(event_id.encode()).hexdigest()[:40]
    return f"run:{trigger}:h-{digest}"


def run_id_prefix(trigger: str) -> str:
    return f"run:{trigger}:"


def trigger_of(run_id: str) -> str | None:
    """The trigger a run id (:func:`run_id_for`) belongs to; None for another kind of id."""
    kind, _, rest = run_id.partition(":")
    trigger, sep, _ = rest.partition(":")
    return trigger if kind == "run" and sep and trigger else None


def sanitise_suffix(rendered: str, *, trigger: str) -> str:
    """Letters, digits and underscores only; refuse an empty result."""
    suffix = _SUFFIX_UNSAFE.sub("_", rendered).strip("_")
    if not suffix:
        raise TemplateError(
            f"trigger {trigger!r}: branch template rendered to {rendered!r}, which has no "
            "letters or digits left after making it Bauplan-safe"
        )
    return suffix[:200]


def build_request(event: Event, trig: TriggerConfig, settings: Settings) -> RunRequest:
    values = event.fields()
    suffix = sanitise_suffix(trig.branch_template().render(values), trigger=trig.name)
    parameters: dict[str, ParameterValue] = {}
    for key, template in trig.parameter_templates().items():
        parameters[key] = template.render(values) if isinstance(template, Template) else template
    return RunRequest(
        run_id=run_id_for(trig.name, event.id),
        trigger=trig.name,
        event_id=event.id,
        event_kind=event.kind,
        project_dir=str(settings.project_path(trig)),
        branch_suffix=suffix,
        base_ref=trig.base_ref,
        parameters=parameters,
        priority=trig.priority,
        notify=list(trig.notify),
        summary=_summary(event),
        rehearse_seconds=trig.rehearse_seconds,
        rehearse_outcome=trig.rehearse_outcome,
        on_burst=trig.on_burst,
        debounce_seconds=trig.debounce_seconds,
        timeout_seconds=_either(trig.timeout_seconds, settings.bauplan.timeout_seconds),
        max_queue_seconds=_either(trig.max_queue_seconds, settings.queue.max_queue_seconds),
        publish_into=trig.publish.into if trig.publish else None,
        delete_branch_after=bool(trig.publish and trig.publish.delete_branch_after),
    )


def _either(own: float | None, default: float | None) -> float | None:
    return own if own is not None else default


def _summary(event: Event) -> dict[str, AttributeValue]:
    summary: dict[str, AttributeValue] = {
        "kind": event.kind,
        "id": event.id,
        "received_at": event.received_at.isoformat(),
    }
    for key, value in event.attributes.items():
        if isinstance(value, str) and len(value) > 300:
            listed = list_attribute(event.attributes, key) if key in LIST_ATTRIBUTES else None
            value = value[:297] + "..." if listed is None else fitted_list(listed, 300)
        summary[key] = value
    return summary


def parse_params(trig: TriggerConfig, pairs: list[str]) -> dict[str, str]:
    """``fire --param k=v``: the pairs as values, checked by :func:`check_inputs`."""
    values: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise BadParameterError(f"--param {pair!r} must look like name=value")
        values[key] = value
    return check_inputs(trig, values)


def check_inputs(trig: TriggerConfig, values: dict[str, str]) -> dict[str, str]:
    """A fire's input values (CLI or API): only names the trigger declares in ``inputs``,
    each plain text, none missing. The messages name no CLI flag; the CLI words a
    missing input's ``FireError`` its own way."""
    for key, value in values.items():
        if key not in trig.inputs:
            declared = ", ".join(trig.inputs) or "none"
            raise BadParameterError(
                f"input {text.quoted(key)}: trigger {trig.name!r} does not declare it in "
                f"inputs (declared: {declared}); add it to inputs = [...] in the config"
            )
        if len(value) > 1000:
            raise BadParameterError(f"input {key}: the value is over 1000 characters")
        why = text.problem(value)
        if why is not None:
            raise BadParameterError(
                f"input {key}: the value {text.quoted(value)} {why}; pass plain text"
            )
    missing = [name for name in trig.inputs if name not in values]
    if missing:
        raise FireError(
            f"trigger {trig.name!r} needs a value for its inputs: {', '.join(missing)}",
            field="params",
            needs=tuple(f"param:{name}" for name in missing),
        )
    return dict(values)
