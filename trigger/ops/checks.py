"""``check``: everything we can verify before the first event arrives."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from trigger.core.errors import BauplanFailure, TriggerError
from trigger.core.settings import Settings


def run_checks(settings: Settings) -> tuple[list[dict[str, Any]], bool]:
    rows: list[dict[str, Any]] = [
        {
            "check": "config",
            "result": "ok",
            "detail": f"{settings.config_path} ({len(settings.triggers)} triggers)",
        }
    ]
    rows.append(_database(settings))
    rows.append(_bauplan_user(settings))
    for trig in settings.triggers:
        from workflows.bauplan.adapter import has_project_file

        path = settings.project_path(trig)
        found = has_project_file(path)
        rows.append(
            {
                "check": f"trigger {trig.name}",
                "result": "ok" if found else "FAIL",
                "detail": f"{path} holds bauplan_project.yml"
                if found
                else f"{path} has no bauplan_project.yml; fix project_dir",
            }
        )
        rows.extend(_secrets(trig))
        if trig.files is not None:
            from trigger.sources.files.folder import dir_check

            rows.append(dir_check(settings, trig))
    return rows, all(row["result"] == "ok" for row in rows)


def _secrets(trig: Any) -> list[dict[str, Any]]:
    from trigger.core import secrets
    from trigger.core.settings.hooks import secret_envs

    present = [(name, secrets.read(name) is not None) for name in secret_envs(trig)]
    return [
        {
            "check": f"trigger {trig.name} secret",
            "result": "ok" if found else "FAIL",
            "detail": f"${name} is set"
            if found
            else f"${name} is not set; every delivery to this trigger will be refused (401)",
        }
        for name, found in present
    ]


def _database(settings: Settings) -> dict[str, Any]:
    """The truth about the system database, found out without creating it."""
    from trigger.core import outage
    from workflows import sysdb

    kind = "postgresql" if settings.is_postgres else "sqlite"
    where = sysdb.where(settings)
    row = {"check": "system database", "result": "ok"}
    try:
        ready = sysdb.is_ready(settings)
    except TriggerError as exc:
        return {**row, "result": "FAIL", "detail": str(exc)}
    except Exception as exc:
        if not outage.is_unreachable(exc):
            raise
        return {**row, "result": "FAIL", "detail": str(outage.unreachable(exc))}
    if ready:
        return {**row, "detail": f"{kind} at {where} is set up and answers"}
    if not settings.is_postgres and not _creatable(settings.state_path):
        return {
            **row,
            "result": "FAIL",
            "detail": f"sqlite at {where} cannot be created: no write access to its folder; "
            "fix [service] state_dir",
        }
    return {
        **row,
        "detail": f"{kind} at {where} is not set up yet; `serve` (or the first `fire`) sets it up",
    }


def _creatable(folder: Path) -> bool:
    """Whether ``folder`` exists writable, or could be made in its nearest existing parent."""
    while not folder.exists():
        folder = folder.parent
    return folder.is_dir() and os.access(folder, os.W_OK | os.X_OK)


def _bauplan_user(settings: Settings) -> dict[str, Any]:
    if settings.bauplan.mode == "rehearse":
        user = settings.bauplan.username or "rehearsal"
        return {"check": "bauplan user", "result": "ok", "detail": f"rehearsal mode as {user}"}
    from workflows.bauplan.adapter import Bauplan, live_client

    try:
        user = Bauplan(live_client()).username()
    except BauplanFailure as exc:
        return {"check": "bauplan user", "result": "FAIL", "detail": str(exc)}
    expected = settings.bauplan.username
    if expected and expected != user:
        return {
            "check": "bauplan user",
            "result": "FAIL",
            "detail": f"config says {expected!r}, API key belongs to {user!r}",
        }
    return {"check": "bauplan user", "result": "ok", "detail": user}
