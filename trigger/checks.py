"""``check``: everything we can verify before the first event arrives."""

from __future__ import annotations

from typing import Any

from trigger.errors import BauplanFailure
from trigger.settings import Settings


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
        from workflows.bauplan_adapter import has_project_file

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
            from trigger.files.folder import dir_check

            rows.append(dir_check(settings, trig))
    return rows, all(row["result"] == "ok" for row in rows)


def _secrets(trig: Any) -> list[dict[str, Any]]:
    from trigger import secrets
    from trigger.hookconfig import secret_envs

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
    import sqlalchemy as sa

    kind = "postgresql" if settings.is_postgres else "sqlite"
    try:
        settings.state_path.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(settings.database_url())
        try:
            with engine.connect() as conn:
                conn.execute(sa.text("SELECT 1"))
        finally:
            engine.dispose()
    except Exception as exc:
        return {
            "check": "system database",
            "result": "FAIL",
            "detail": f"{kind} unreachable ({type(exc).__name__}); check DBOS_SYSTEM_DATABASE_URL",
        }
    return {"check": "system database", "result": "ok", "detail": f"{kind} reachable"}


def _bauplan_user(settings: Settings) -> dict[str, Any]:
    if settings.bauplan.mode == "rehearse":
        user = settings.bauplan.username or "rehearsal"
        return {"check": "bauplan user", "result": "ok", "detail": f"rehearsal mode as {user}"}
    from workflows.bauplan_adapter import Bauplan, live_client

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
