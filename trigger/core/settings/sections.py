"""The top-level tables: ``[service]``, ``[bauplan]``, ``[queue]``, ``[api]``, ``[events]``."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal
from urllib.parse import quote, urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator

from trigger.core import secrets, text
from trigger.core.settings.flow import BranchLimit

# A name that goes into ids, queue names and log lines: trigger, process, notifier.
SLUG = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}\Z")
_LISTEN = re.compile(r"(?P<host>\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+):(?P<port>\d{1,5})\Z")
_HOST_NAME = re.compile(r"(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*\.?)\Z")


def _public_url_problem(value: str) -> str | None:
    problem = text.link_problem(value)
    if problem is None and (urlsplit(value).query or value.endswith(("?", "#")) or "#" in value):
        return "must not have a query or fragment"
    return problem


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ServiceSettings(Section):
    state_dir: Path = Path(".bauplan-trigger")
    listen: str = "127.0.0.1:8080"
    name: str = Field(default="main", description="this process's name in its executor id")
    application_version: str = Field(
        default="1",
        description="pinned DBOS application version: change it only with an empty queue",
    )
    max_body_bytes: int = Field(default=5 * 1024 * 1024, gt=0)
    body_timeout: float = Field(
        default=10.0,
        gt=0,
        le=3600,
        description="seconds a request's headers and body may take to arrive before 408",
    )
    max_connections: int = Field(
        default=512,
        ge=1,
        le=1_000_000,
        description="open HTTP connections at most; a new one beyond it gets 503",
    )
    enqueue_timeout: float = Field(
        default=5.0, gt=0, description="seconds a webhook waits for its enqueue before 503"
    )
    reuse_port: bool = Field(
        default=False,
        description="let several serve processes listen on the same address (SO_REUSEPORT); "
        "the kernel spreads connections across them",
    )
    allowed_hosts: list[str] = Field(
        default_factory=list,
        description="more names (Host header) the API, page and metrics answer to; '*' for any",
    )

    public_url: str | None = Field(
        default=None,
        description="the address people open the page at (behind any proxy); links in "
        "notifications are built from it, and there are none when it is unset",
    )

    @field_validator("public_url")
    @classmethod
    def _public_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        problem = _public_url_problem(value)
        if problem is not None:
            raise ValueError(
                f"the URL {problem}; give the page's address, like "
                "https://trigger.example.com or https://example.com/bauplan-trigger"
            )
        return value.rstrip("/")

    def run_url(self, run_id: str) -> str | None:
        """The run's page, or None when no ``public_url`` says where the page is."""
        if self.public_url is None:
            return None
        return f"{self.public_url}/runs/{quote(run_id, safe=':@')}"

    @field_validator("allowed_hosts")
    @classmethod
    def _allowed_hosts(cls, value: list[str]) -> list[str]:
        for name in value:
            if name != "*" and not _HOST_NAME.match(name):
                raise ValueError(
                    f"{name[:80]!r} must be a host name or address without scheme or port, "
                    "like trigger.example.com, or '*' for any name"
                )
        return value

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str) -> str:
        match = _LISTEN.match(value)
        if not match or not 0 < int(match["port"]) < 65536:
            raise ValueError("must be HOST:PORT, for example 127.0.0.1:8080")
        return value

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not SLUG.match(value):
            raise ValueError("must be a short slug: lower-case letters, digits, '-' or '_'")
        return value

    @property
    def host(self) -> str:
        return self.listen.rsplit(":", 1)[0].strip("[]")

    @property
    def port(self) -> int:
        return int(self.listen.rsplit(":", 1)[1])


Outcome = Literal["success", "fail", "hang"]


class BauplanSettings(Section):
    mode: Literal["live", "rehearse"] = "live"
    username: str | None = Field(
        default=None,
        description="expected Bauplan user; when unset it is resolved with client.info()",
    )
    rehearse_seconds: float = Field(default=2.0, ge=0)
    rehearse_outcome: Outcome = "success"
    poll_interval: float = Field(default=2.0, gt=0, description="first get_job poll delay")
    poll_max_interval: float = Field(default=30.0, gt=0, description="poll backoff cap")
    retry_attempts: int = Field(default=6, ge=1, description="tries of a transient SDK error")
    retry_interval: float = Field(default=2.0, gt=0)
    log_tail_lines: int = Field(default=40, ge=0)
    timeout_seconds: float | None = Field(
        default=None, gt=0, description="every trigger's job time limit unless it sets its own"
    )

    @field_validator("username")
    @classmethod
    def _username(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[A-Za-z0-9_-]+", value):
            raise ValueError("must be a Bauplan username (letters, digits, '_' or '-')")
        return value


class QueueSettings(Section):
    polling_interval: float = Field(default=0.1, gt=0, le=10)
    notice_polling_interval: float = Field(
        default=1.0, gt=0, le=60, description="seconds between polls of the notice queue"
    )
    per_branch_concurrency: int = Field(default=1, ge=1)
    worker_concurrency: int | None = Field(default=None, ge=1)
    global_concurrency: int | None = Field(default=None, ge=1)
    per_branch_limit: BranchLimit | None = None
    takeover_after_seconds: float | None = Field(
        default=None, gt=0, description="workers take over executors silent this long"
    )
    max_queue_seconds: float | None = Field(
        default=None, gt=0, description="every trigger's queue time limit unless it sets its own"
    )


class ApiSettings(Section):
    token_env: str | None = Field(
        default=None, description="environment variable holding the API bearer token"
    )

    @field_validator("token_env")
    @classmethod
    def _token_env(cls, value: str | None) -> str | None:
        if value is not None and not secrets.is_env_name(value):
            raise ValueError("must name an environment variable, like BAUPLAN_TRIGGER_API_TOKEN")
        return value


class EventsSettings(Section):
    retention_days: float = Field(default=30.0, gt=0, description="event log retention")
