"""``fire``: a run of one named trigger, started by hand (CLI or API), for every kind.

A fire becomes the event the trigger's own source would have made, and goes down the
one ingest path like it:

- a schedule trigger: a tick at the present second (``scheduled_time`` = now);
- a file trigger with ``file``: the version of that file, checked as the watcher
  checks a dropped one (inside the dir, matching the globs, settled, its marker);
- a git trigger with ``sha`` (and ``branch``): a push of that commit, fetched into the
  source's mirror first when the trigger has a git ``source``;
- any other trigger (or one whose templates read nothing a fire lacks): a ``manual``
  event.

Identity is data. A file fire's event id is the file version's, the watcher's own, so
a file the watcher also offers runs once; a git fire's comes from (trigger, sha,
branch). A schedule or manual fire is a new event each time unless the caller gives an
``event_id``, its idempotency key. A fire that cannot run raises ``FireError`` naming
the request fields that would make it one.
"""

from __future__ import annotations

import hashlib
import os
import time
import uuid
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

from trigger.core import text
from trigger.core.errors import FireError, WorkspaceError
from trigger.core.event import AttributeValue, Event, EventKind, manual_event, whoami
from trigger.core.fileversion import (
    FileVersion,
    Skipped,
    file_event,
    inspect_file,
    rel_of,
    sha256_of,
    shown,
)
from trigger.core.gitref import SHA, ZERO_SHA, ref_problem
from trigger.core.matching import RunRequest, check_inputs
from trigger.core.settings import Settings, TriggerConfig
from trigger.core.settings.files import Matcher
from trigger.core.templates import COMMON_FIELDS, SOURCE_FIELDS
from trigger.ingest import Shape, git_code, intake
from trigger.sources.files.folder import check_dir, watch_dir
from trigger.sources.files.offer import file_info, needs_sha
from trigger.sources.webhooks.filters import git_rules
from trigger.sources.webhooks.push import Push, attributes
from workflows.intake import Enqueuer
from workflows.queue import Enqueued
from workflows.steps.code import fetch_commit, on_branch


def manual_filter(event: Event, trigger: TriggerConfig) -> str | None:
    if event.attributes.get("trigger") != trigger.name:
        return "fired for another trigger"
    return None


@dataclass(frozen=True)
class Fire:
    """What a fire asks for. ``file`` is absolute or relative to the trigger's watched
    dir (the CLI makes a relative path absolute from the shell's folder first)."""

    trigger: str
    params: dict[str, str] = field(default_factory=dict)
    event_id: str | None = None
    fired_by: str | None = None
    file: str | None = None
    sha: str | None = None
    branch: str | None = None


@dataclass(frozen=True)
class Prepared:
    """A fire checked and turned into its event, not enqueued yet."""

    trigger: TriggerConfig
    event: Event
    shape: Shape | None


@dataclass(frozen=True)
class Fired:
    event: Event
    run: Enqueued


def prepare(settings: Settings, request: Fire) -> Prepared:
    """Every check of a fire, before anything is written: the ``FireError`` (or the
    event model's ``ValidationError`` for a bad ``event_id``) comes from here."""
    trig = settings.trigger(request.trigger)
    inputs = check_inputs(trig, request.params)
    event, shape = fired_event(settings, trig, request, inputs)
    return Prepared(trig, event, shape)


def fire(
    enqueuer: Enqueuer,
    request: Fire | Prepared,
    *,
    source_addr: str | None = None,
    timeout: float | None = None,
) -> Fired:
    """Exactly one run of the named trigger (or the one it already has, a duplicate), or
    a ``FireError``; given up after ``timeout`` seconds (``EnqueueUnavailableError``),
    it leaves nothing behind."""
    ready = request if isinstance(request, Prepared) else prepare(enqueuer.settings, request)
    run = _take(enqueuer, ready.trigger, ready.event, ready.shape, source_addr, timeout)
    return Fired(ready.event, run)


def fire_event(
    enqueuer: Enqueuer,
    event: Event,
    *,
    source_addr: str | None = None,
    timeout: float | None = None,
) -> Enqueued:
    """A manual event made elsewhere (tests, tools): exactly one run of the trigger it
    names, or a ``FireError`` saying why not."""
    trig = enqueuer.settings.trigger(str(event.attributes.get("trigger")))
    return _take(enqueuer, trig, event, None, source_addr, timeout)


def _take(
    enqueuer: Enqueuer,
    trig: TriggerConfig,
    event: Event,
    shape: Shape | None,
    source_addr: str | None,
    timeout: float | None,
) -> Enqueued:
    received = intake(
        enqueuer.settings, event, manual_filter, among=[trig], shape=shape, source_addr=source_addr
    )
    if not received.requests:
        [decision] = received.decisions
        raise FireError(f"trigger {trig.name!r} cannot run this fire: {decision.reason}", field="")
    [run] = enqueuer.take(received, timeout).runs
    return run


def fired_event(
    settings: Settings, trig: TriggerConfig, request: Fire, inputs: dict[str, str]
) -> tuple[Event, Shape | None]:
    """The event this fire stands for, and the last touch on its run request."""
    who = request.fired_by or whoami()
    extra: dict[str, AttributeValue] = {
        "fired_by": who,
        "verified": f"not needed: fired by {who} with access",
        **inputs,
    }
    if request.branch is not None and request.sha is None:
        raise FireError(
            "a branch goes with a commit: give the sha too", field="branch", needs=("sha",)
        )
    if request.file is not None:
        return _file_fire(settings, trig, request, extra)
    if request.sha is not None:
        return _git_fire(settings, trig, request, extra)
    if trig.schedule is not None:
        return _schedule_fire(trig, request, extra), None
    refusal = plain_refusal(trig)
    if refusal is not None:
        raise refusal
    return manual_event(trig.name, inputs, event_id=request.event_id, fired_by=who), None


def plain_refusal(trig: TriggerConfig) -> FireError | None:
    """Why a fire with neither ``file`` nor ``sha`` cannot run ``trig``, and what would."""
    if trig.schedule is not None:
        return None
    kind = _git_kind(trig)
    rules = git_rules(trig, kind) if kind is not None else None
    # A fire of a git trigger names its branch when the templates read it.
    commit: dict[str, tuple[str, ...]] = (
        {"needs": ("sha", "branch"), "optional": ()}
        if "git_branch" in trig.template_fields()
        else {"needs": ("sha",), "optional": ("branch",)}
    )
    if rules is not None and rules.source is not None:
        return FireError(
            f"trigger {trig.name!r} runs {trig.project_dir} of {kind} pushes to {rules.repo}",
            field="sha",
            **commit,
        )
    given = COMMON_FIELDS | SOURCE_FIELDS["manual"] | set(trig.inputs)
    lacking = sorted(trig.template_fields() - given)
    if not lacking:
        return None
    uses = f"its templates use {', '.join(lacking)}"
    if trig.files is not None and set(lacking) <= SOURCE_FIELDS["files"]:
        why = f"trigger {trig.name!r} runs on files dropped in {trig.files.dir} and {uses}"
        return FireError(why, field="file", needs=("file",))
    if rules is not None and set(lacking) <= SOURCE_FIELDS[kind or "github"]:
        why = f"trigger {trig.name!r} runs on {kind} pushes to {rules.repo} and {uses}"
        return FireError(why, field="sha", **commit)
    return FireError(
        f"trigger {trig.name!r} cannot be fired by hand: {uses}, which only its "
        f"{', '.join(trig.sources()[1:]) or 'source'} deliveries provide; send one of those",
        field="",
    )


def _git_kind(trig: TriggerConfig) -> EventKind | None:
    """The push source of a git trigger; GitHub's when it has both."""
    return "github" if trig.github is not None else "gitlab" if trig.gitlab is not None else None


def _schedule_fire(trig: TriggerConfig, request: Fire, extra: dict[str, AttributeValue]) -> Event:
    from trigger.sources.schedule import tick_attributes

    now = datetime.now(UTC).replace(microsecond=0)
    return Event(
        kind="schedule",
        id=request.event_id or f"fire-{uuid.uuid4().hex}",
        attributes={**tick_attributes(trig, now), **extra},
    )


def _file_fire(
    settings: Settings, trig: TriggerConfig, request: Fire, extra: dict[str, AttributeValue]
) -> tuple[Event, Shape]:
    """The watcher's event for this file, after the watcher's own checks."""
    source = trig.files
    if source is None:
        raise FireError(
            f"trigger {trig.name!r} watches no folder, so a file cannot fire it", field="file"
        )
    assert request.file is not None
    root = watch_dir(settings, trig)
    check_dir(trig.name, root)
    real_root = os.path.realpath(root)
    path = Path(os.path.abspath(root / Path(request.file).expanduser()))
    name = shown(str(path))
    rel = rel_of(root, str(path)) or rel_of(Path(real_root), os.path.realpath(path))
    if rel is None:
        raise FireError(
            f"file {name} is not inside {root}, the folder trigger {trig.name!r} watches",
            field="file",
        )
    matcher = Matcher(source)
    why = matcher.refusal(rel)
    if why is not None:
        raise FireError(f"file {name} {why}", field="file")
    version = _version(root, real_root, rel, name)
    age = (time.time_ns() - version.mtime_ns) / 1e9
    if age < source.settle_seconds:
        raise FireError(
            f"file {name} was written {max(age, 0):.1f}s ago and counts as finished once "
            f"unchanged for {source.settle_seconds:g}s (files.settle_seconds); fire it then",
            field="file",
        )
    marker = matcher.marker_for(rel)
    if marker is not None and not os.path.lexists(root / marker):
        raise FireError(
            f"file {name} waits for its ready marker {shown(marker)}, which is not there yet",
            field="file",
        )
    sha = sha256_of(path) if needs_sha(trig) else None
    if sha is not None and _version(root, real_root, rel, name) != version:
        raise FireError(f"file {name} changed while it was read; fire it again", field="file")
    found = file_event(trig.name, source, root, version, sha256=sha)
    event = Event(
        kind="files",
        id=request.event_id or found.id,
        received_at=found.received_at,
        attributes={**found.attributes, **extra},
    )
    info = file_info(source, matcher, root, version, sha)

    def shape(run: RunRequest, _trig: TriggerConfig) -> RunRequest:
        return replace(run, file=info)

    return event, shape


def _version(root: Path, real_root: str, rel: str, name: str) -> FileVersion:
    try:
        return inspect_file(root, real_root, rel)
    except (FileNotFoundError, NotADirectoryError):
        raise FireError(f"file {name} does not exist", field="file") from None
    except Skipped as why:
        raise FireError(f"file {name} is not offered: {why}", field="file") from None
    except OSError as exc:
        raise FireError(f"file {name} cannot be read: {exc.strerror}", field="file") from None


def _git_fire(
    settings: Settings, trig: TriggerConfig, request: Fire, extra: dict[str, AttributeValue]
) -> tuple[Event, Shape]:
    """A push of ``sha`` to ``branch``: the attributes a push webhook gives, and the same
    checkout of the commit for a trigger with a git ``source``."""
    kind = _git_kind(trig)
    rules = git_rules(trig, kind) if kind is not None else None
    if kind is None or rules is None:
        raise FireError(
            f"trigger {trig.name!r} has no [triggers.github] or [triggers.gitlab] section, "
            "so a commit cannot fire it",
            field="sha",
        )
    assert request.sha is not None
    sha = request.sha.strip().lower()
    if not SHA.match(sha):
        raise FireError(
            f"commit {text.quoted(request.sha)} is not a 40-character hex sha; give the "
            "full commit id (git rev-parse)",
            field="sha",
        )
    branch = request.branch.removeprefix("refs/heads/") if request.branch else None
    if branch is not None:
        problem = ref_problem(branch)
        if problem is not None:
            raise FireError(f"branch {text.quoted(branch)} {problem}", field="branch")
    if branch is None and "git_branch" in trig.template_fields():
        raise FireError(
            f"trigger {trig.name!r} uses git_branch in its templates",
            field="branch",
            needs=("branch",),
        )
    head: dict[str, str] | None = None
    if rules.source is not None:
        try:
            subject, date = fetch_commit(settings.state_path, rules.source, sha)
        except WorkspaceError as exc:
            if exc.retryable:
                raise
            raise FireError(str(exc), field="sha") from None
        if branch is not None and not on_branch(settings.state_path, rules.source, sha, branch):
            raise FireError(
                f"commit {sha[:12]} is not on branch {text.quoted(branch)} of "
                f"{rules.source} (or it has no such branch); check the branch, or leave it out",
                field="branch",
            )
        head = {"message": subject, "timestamp": date}
    push = Push(
        repo=rules.repo,
        ref=f"refs/heads/{branch}" if branch else "HEAD",
        before=ZERO_SHA,
        after=sha,
        pusher=str(extra["fired_by"]),
        commits=[],
        head=head,
        commits_complete=False,
    )
    values = {**attributes(push), "trigger": trig.name, **extra}
    if branch is None:
        values["git_ref"] = None
    digest = hashlib.sha256(f"{trig.name}\0{sha}\0{branch or ''}".encode()).hexdigest()
    event = Event(
        kind=kind,
        id=request.event_id or f"fire-{kind}-{sha[:12]}-{digest[:12]}",
        attributes=values,
    )

    def shape(run: RunRequest, found: TriggerConfig) -> RunRequest:
        return git_code(run, found, event)

    return event, shape
