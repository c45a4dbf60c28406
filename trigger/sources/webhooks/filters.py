"""Which pushes a GitHub or GitLab trigger cares about: repo, branch, tag and path rules.

Branch and tag globs use wcmatch (``*`` stays inside one ``/`` segment, ``**``
crosses them); path rules are gitignore-style through pathspec. When a push's
file list may be incomplete (see ``paths_complete``), path rules cannot be
decided and the trigger matches: a skipped run is worse than an extra one.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import pathspec
from wcmatch import glob

from trigger.core.event import Event, list_attribute
from trigger.core.settings import TriggerConfig
from trigger.core.settings.hooks import CloudEventsSource, GitSource

_GLOB_FLAGS = glob.GLOBSTAR | glob.BRACE | glob.DOTGLOB


@lru_cache(maxsize=256)
def _spec(patterns: tuple[str, ...]) -> pathspec.PathSpec[Any]:
    return pathspec.PathSpec.from_lines("gitignore", patterns)


def glob_matches(name: str, patterns: list[str]) -> bool:
    return bool(glob.globmatch(name, patterns, flags=_GLOB_FLAGS))


def changed_paths(event: Event) -> list[str]:
    return list_attribute(event.attributes, "changed_paths") or []


def git_rules(trigger: TriggerConfig, kind: str) -> GitSource | None:
    """The trigger's ``[triggers.github]`` or ``[triggers.gitlab]`` section."""
    return trigger.github if kind == "github" else trigger.gitlab


def git_section(trigger: TriggerConfig, kind: str) -> GitSource:
    """The section of a trigger already known to listen to ``kind`` pushes."""
    rules = git_rules(trigger, kind)
    assert rules is not None
    return rules


def git_filter(event: Event, trigger: TriggerConfig) -> str | None:
    """None when ``trigger`` wants this push, else the rule that filtered it out."""
    rules = git_rules(trigger, event.kind)
    if rules is None:
        return f"has no [triggers.{event.kind}] section"
    repo = event.attributes.get("repo")
    if not isinstance(repo, str) or repo.lower() != rules.repo.lower():
        return f"filtered by repo rule (wants {rules.repo})"
    if event.attributes.get("deleted"):
        return "the push deletes a ref; deletions start nothing"
    branch = event.attributes.get("git_branch")
    tag = event.attributes.get("git_tag")
    if isinstance(tag, str):
        if not rules.tags:
            return "tag push; the trigger has no tags rule"
        if not glob_matches(tag, rules.tags):
            return "filtered by tags rule"
        return None
    if not isinstance(branch, str):
        return "the push is neither to a branch nor a tag"
    if rules.branches and not glob_matches(branch, rules.branches):
        return "filtered by branches rule"
    if rules.exclude_branches and glob_matches(branch, rules.exclude_branches):
        return "filtered by exclude_branches rule"
    return _path_filter(event, rules)


def _path_filter(event: Event, rules: GitSource) -> str | None:
    if not rules.paths and not rules.exclude_paths:
        return None
    if event.attributes.get("paths_complete") is not True:
        return None  # the changed files are not all known: match rather than skip
    paths = changed_paths(event)
    if rules.paths:
        paths = [p for p in paths if _spec(tuple(rules.paths)).match_file(p)]
        if not paths:
            return "filtered by paths rule"
    if rules.exclude_paths:
        paths = [p for p in paths if not _spec(tuple(rules.exclude_paths)).match_file(p)]
        if not paths:
            return "filtered by exclude_paths rule"
    return None


def _sent_to(event: Event, trigger: TriggerConfig, kind: str) -> str | None:
    """Why a hook event addressed by trigger name is not this trigger's, or None."""
    if getattr(trigger, kind, None) is None:
        return f"has no [triggers.{kind}] section"
    if event.attributes.get("trigger") != trigger.name:
        return "sent to another trigger"
    return None


def generic_filter(event: Event, trigger: TriggerConfig) -> str | None:
    return _sent_to(event, trigger, "generic")


def cloudevents_filter(event: Event, trigger: TriggerConfig) -> str | None:
    wrong = _sent_to(event, trigger, "cloudevents")
    if wrong is not None:
        return wrong
    section: CloudEventsSource | None = trigger.cloudevents
    assert section is not None
    kind, source = event.attributes.get("ce_type"), event.attributes.get("ce_source")
    if section.types and not (isinstance(kind, str) and glob_matches(kind, section.types)):
        return "filtered by types rule"
    if section.sources and not (isinstance(source, str) and glob_matches(source, section.sources)):
        return "filtered by sources rule"
    return None
