"""``check``: everything we can verify before the first event arrives.

Each check says ``ok``, ``warn`` (works, but look) or ``fail`` (will not work as
configured). What cannot be known before an event is said so, not guessed: the
project folder of a trigger with a remote git ``source`` exists only in the
pushed commit. Secret values are read the way the service reads them and never
shown; a check names the variable and what is wrong with its value.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Literal

from trigger.core import secrets
from trigger.core.errors import BauplanFailure, NotifierError, TriggerError, WatchDirError
from trigger.core.settings import Settings, TriggerConfig
from trigger.core.settings.hooks import GitSource
from trigger.core.settings.notify import (
    AnyNotifier,
    GithubStatusNotifier,
    SlackNotifier,
    WebhookNotifier,
    display_name,
)

Status = Literal["ok", "warn", "fail"]
_PROJECT_FILES = ("bauplan_project.yml", "bauplan_project.yaml")
# Refs of a local source checked for project_dir; a repository with more is sampled.
_MAX_REFS = 20


@dataclass(frozen=True)
class Check:
    name: str
    status: Status
    message: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def failed(checks: list[Check]) -> bool:
    return any(check.status == "fail" for check in checks)


def run_checks(settings: Settings, environ: Mapping[str, str] | None = None) -> list[Check]:
    """Every check, in the order a reader fixes things: config, database, Bauplan, then
    each trigger and each notifier. ``environ`` stands in for ``os.environ``."""
    checks = [
        Check("config", "ok", f"{settings.config_path} ({len(settings.triggers)} triggers)"),
        _database(settings),
        _bauplan_user(settings),
    ]
    for trig in settings.triggers:
        checks.append(_project(settings, trig))
        checks.extend(_hook_secrets(trig, environ))
        if trig.files is not None:
            checks.append(_watch_dir(settings, trig))
    for name, notifier in settings.notifiers.items():
        checks.append(_notifier(settings, name, notifier, environ))
    return checks


# -- triggers -------------------------------------------------------------------------


def _project(settings: Settings, trig: TriggerConfig) -> Check:
    git = trig.github or trig.gitlab
    if git is not None and git.source:
        return _git_project(trig, git)
    from workflows.bauplan.adapter import has_project_file

    path = settings.project_path(trig)
    if has_project_file(path):
        return Check(f"trigger {trig.name}", "ok", f"{path} holds bauplan_project.yml")
    return Check(
        f"trigger {trig.name}", "fail", f"{path} has no bauplan_project.yml; fix project_dir"
    )


def _git_project(trig: TriggerConfig, git: GitSource) -> Check:
    """A git-sourced trigger runs ``project_dir`` inside the pushed commit: a remote
    repository is checked for what its URL says, a local one at the refs it would run."""
    from workflows.steps import code

    name = f"trigger {trig.name}"
    source = str(git.source)
    subdir = trig.project_dir.as_posix()
    if not code.is_local(source):
        return _remote_source(name, source, subdir)
    where = Path(source.removeprefix("file://")).expanduser()
    relative = not where.is_absolute()
    where = Path(os.path.abspath(where))
    if not where.is_dir():
        return Check(name, "fail", f"git source {where} does not exist; fix source")
    try:
        refs = code.local_refs(where)
    except TriggerError:
        return Check(name, "fail", f"git source {where} is not a git repository; fix source")
    wanted = [ref for ref in refs if _runs_on(git, ref)]
    if not wanted:
        return Check(
            name,
            "warn",
            f"no branch or tag of {where} matches this trigger's rules yet; "
            f"{subdir} is checked at run time, in the pushed commit",
        )
    sampled = wanted[:_MAX_REFS]
    missing = [ref for ref in sampled if not _project_at(where, ref, subdir)]
    if missing:
        shown = ", ".join(_short(ref) for ref in missing[:5])
        return Check(
            name,
            "fail",
            f"{subdir} has no bauplan_project.yml at {shown} of {where}; fix project_dir "
            "(relative to the repository root when source is set)",
        )
    shown = ", ".join(_short(ref) for ref in sampled[:5])
    more = f" and {len(sampled) - 5} more" if len(sampled) > 5 else ""
    note = f"; source is relative, so serve must run in {Path.cwd()}" if relative else ""
    return Check(
        name,
        "warn" if relative else "ok",
        f"{subdir} holds bauplan_project.yml at {shown}{more} of {where}{note}",
    )


def _remote_source(name: str, source: str, subdir: str) -> Check:
    from urllib.parse import urlsplit

    from workflows.steps.code import display_source

    shown = display_source(source)
    if "://" in source:
        try:
            parts = urlsplit(source)
            host = parts.hostname
        except ValueError:
            host = None
            parts = None
        if parts is None or not host or parts.scheme not in ("https", "http", "ssh", "git"):
            return Check(
                name,
                "fail",
                f"git source {shown} is not a clone URL git can use (https://, ssh://, "
                "git:// or user@host:path); fix source",
            )
        if parts.password or (parts.username and parts.scheme.startswith("http")):
            return Check(
                name,
                "warn",
                f"git source {shown} holds credentials in the config file; use a git "
                "credential helper or an SSH key instead",
            )
    return Check(
        name,
        "ok",
        f"{shown} is a remote repository: {subdir} is checked at run time, in the pushed commit",
    )


def _runs_on(git: GitSource, ref: str) -> bool:
    from trigger.sources.webhooks.filters import glob_matches

    if ref.startswith("refs/tags/"):
        return bool(git.tags) and glob_matches(ref.removeprefix("refs/tags/"), git.tags)
    branch = ref.removeprefix("refs/heads/")
    if git.branches and not glob_matches(branch, git.branches):
        return False
    return not (git.exclude_branches and glob_matches(branch, git.exclude_branches))


def _project_at(where: Path, ref: str, subdir: str) -> bool:
    from workflows.steps.code import has_file_at

    folder = PurePosixPath(subdir)
    return any(has_file_at(where, ref, str(folder / item)) for item in _PROJECT_FILES)


def _short(ref: str) -> str:
    return ref.removeprefix("refs/heads/").removeprefix("refs/")


def _hook_secrets(trig: TriggerConfig, environ: Mapping[str, str] | None) -> list[Check]:
    out = []
    for kind in ("github", "gitlab", "generic", "cloudevents"):
        section = getattr(trig, kind)
        if section is None:
            continue
        name, variable = f"trigger {trig.name} secret", section.secret_env
        value = secrets.read(variable, environ)
        if value is None:
            out.append(
                Check(
                    name,
                    "fail",
                    f"${variable} is not set; every delivery to this trigger will be refused (401)",
                )
            )
            continue
        signed = kind == "generic" or (kind == "cloudevents" and section.auth == "signature")
        problem = secrets.whsec_keys_problem(value) if signed else None
        if problem is not None:
            out.append(
                Check(
                    name,
                    "fail",
                    f"${variable} {problem} (value not shown): Standard Webhooks senders "
                    "sign with a whsec_ secret, so every delivery would be refused (401)",
                )
            )
            continue
        out.append(Check(name, "ok", f"${variable} is set"))
    return out


def _watch_dir(settings: Settings, trig: TriggerConfig) -> Check:
    from trigger.sources.files.folder import check_dir, watch_dir

    root = watch_dir(settings, trig)
    try:
        check_dir(trig.name, root)
    except WatchDirError as exc:
        return Check(f"watch {trig.name}", "fail", str(exc))
    return Check(f"watch {trig.name}", "ok", f"{root} is readable")


# -- notifiers ------------------------------------------------------------------------


def _notifier(
    settings: Settings, name: str, notifier: AnyNotifier, environ: Mapping[str, str] | None
) -> Check:
    """The variables a send would read, read and judged by the code that sends."""
    from workflows.notify.http import check_url
    from workflows.notify.webhook import signer

    display = display_name(name, notifier)
    problems: list[str] = []
    notes: list[str] = []
    variables = notifier.secret_envs()
    for key, variable in variables.items():
        value = secrets.read(variable, environ, url=key == "url_env", strip=True)
        if value is None:
            problems.append(f"${variable} ({key}) is not set")
            continue
        try:
            if key == "url_env":
                check_url(display, variable, value)
                notes.extend(_clear_text(variable, value))
            elif key == "secret_env" and isinstance(notifier, WebhookNotifier):
                signer(display, variable, value)
        except NotifierError as exc:
            problems.append(str(exc).removeprefix(f"notifier {display}: "))
    check_name = f"notifier {display}"
    if problems:
        return Check(check_name, "fail", "; ".join(problems) + "; nothing can be sent")
    if not any(name in trig.notify for trig in settings.triggers):
        notes.append("no trigger lists it in notify")
    said = ", ".join(f"${v}" for v in variables.values())
    what = _what(notifier)
    if notes:
        return Check(check_name, "warn", f"{said} {what}; but " + "; ".join(notes))
    return Check(check_name, "ok", f"{said} {what}")


def _what(notifier: AnyNotifier) -> str:
    if isinstance(notifier, SlackNotifier):
        return "is set to an http(s) URL"
    if isinstance(notifier, WebhookNotifier):
        return "are set: an http(s) URL and a whsec_ secret"
    assert isinstance(notifier, GithubStatusNotifier)
    return f"is set (statuses go to {notifier.api_url})"


def _clear_text(variable: str, url: str) -> list[str]:
    """A notifier URL is a credential: over plain http it crosses the network readable."""
    import httpx

    parsed = httpx.URL(url)  # as the sender parses it; check_url has accepted it
    if parsed.scheme == "http" and parsed.host not in ("127.0.0.1", "localhost", "::1"):
        return [f"${variable} is http://, so it and every message cross the network in clear"]
    return []


# -- the database and Bauplan ---------------------------------------------------------


def _database(settings: Settings) -> Check:
    """The truth about the system database, found out without creating it."""
    from trigger.core import outage
    from workflows import sysdb

    kind = "postgresql" if settings.is_postgres else "sqlite"
    where = sysdb.where(settings)
    name = "system database"
    try:
        ready = sysdb.is_ready(settings)
    except TriggerError as exc:
        return Check(name, "fail", str(exc))
    except Exception as exc:
        if not outage.is_unreachable(exc):
            raise
        return Check(name, "fail", str(outage.unreachable(exc)))
    if ready:
        return Check(name, "ok", f"{kind} at {where} is set up and answers")
    if not settings.is_postgres and not _creatable(settings.state_path):
        return Check(
            name,
            "fail",
            f"sqlite at {where} cannot be created: no write access to its folder; "
            "fix [service] state_dir",
        )
    return Check(
        name, "ok", f"{kind} at {where} is not set up yet; `serve` (or the first `fire`) sets it up"
    )


def _creatable(folder: Path) -> bool:
    """Whether ``folder`` exists writable, or could be made in its nearest existing parent."""
    while not folder.exists():
        folder = folder.parent
    return folder.is_dir() and os.access(folder, os.W_OK | os.X_OK)


def _bauplan_user(settings: Settings) -> Check:
    name = "bauplan user"
    if settings.bauplan.mode == "rehearse":
        user = settings.bauplan.username or "rehearsal"
        return Check(name, "ok", f"rehearsal mode as {user}")
    from workflows.bauplan.adapter import Bauplan, live_client

    try:
        user = Bauplan(live_client()).username()
    except BauplanFailure as exc:
        return Check(name, "fail", str(exc))
    expected = settings.bauplan.username
    if expected and expected != user:
        return Check(name, "fail", f"config says {expected!r}, API key belongs to {user!r}")
    return Check(name, "ok", user)
