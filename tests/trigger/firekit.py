"""Triggers of every kind for the ``fire`` tests, and what a fire put on the queue."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from tests.trigger.hookkit import git
from trigger.core.matching import RunRequest


def kinds(project_dir: Path, landing: Path, upstream: Path) -> list[dict[str, Any]]:
    """A schedule, a file, a git-sourced, a plain git and a generic trigger, whose
    templates read their source's fields."""
    return [
        {
            "name": "nightly",
            "project_dir": str(project_dir),
            "branch": "nightly_{scheduled_date}",
            "parameters": {"at": "{scheduled_time}", "day": "{scheduled_date}"},
            "schedule": {"cron": "0 3 * * *", "timezone": "Europe/Berlin"},
        },
        {
            "name": "landing",
            "project_dir": str(project_dir),
            "branch": "landing_{file_stem}",
            "parameters": {
                "source_file": "{file_path}",
                "rel": "{file_rel}",
                "size": "{file_size}",
            },
            "files": {"dir": str(landing), "patterns": ["*.csv"], "settle_seconds": 1},
        },
        {
            "name": "orders",
            "project_dir": "pipelines/orders",
            "branch": "orders_{git_branch}",
            "parameters": {"sha": "{git_sha}", "short": "{git_short_sha}", "repo": "{repo}"},
            "github": {
                "repo": "acme/lakehouse",
                "secret_env": "GITHUB_WEBHOOK_SECRET",
                "source": str(upstream),
            },
        },
        {
            "name": "pushed",
            "project_dir": str(project_dir),
            "branch": "pushed",
            "parameters": {"sha": "{git_sha}"},
            "gitlab": {"repo": "acme/lake", "secret_env": "GITLAB_WEBHOOK_TOKEN"},
        },
        {
            "name": "hooked",
            "project_dir": str(project_dir),
            "branch": "hooked_{body_day}",
            "generic": {"secret_env": "GENERIC_WEBHOOK_SECRET", "fields": {"day": "string"}},
        },
    ]


def settled(path: Path, text: str = "id,total\n1,2\n", age: float = 60.0) -> Path:
    """A dropped file, written ``age`` seconds ago: long settled."""
    path.write_text(text)
    then = time.time() - age
    os.utime(path, (then, then))
    return path


def branch_at(repo: Path, name: str, sha: str) -> None:
    git(repo, "branch", name, sha)


def queued(client: Any, run_id: str) -> RunRequest:
    """The request a run was enqueued with, read back from DBOS."""
    [row] = client.list_workflows(workflow_ids=[run_id])
    return RunRequest.from_dict(row.input["args"][0])
