"""``[notifiers.<name>]``: one pydantic model per ``kind``, told apart by ``kind``.

Only the *names* of environment variables live here: a URL, token or signing
secret is read from the environment when a notification is sent, so it never
reaches a workflow input, a run record or a log line.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from trigger.core import secrets
from trigger.core.runstatus import NOTICE_STATUSES, NoticeStatus

DEFAULT_ON: tuple[NoticeStatus, ...] = ("succeeded", "failed")

_HEADER = re.compile(r"[A-Za-z0-9!#$%&'*+.^_`|~-]+\Z")
# Headers a user may not set on a signed webhook: we own them.
_RESERVED_HEADERS = frozenset(
    {
        "content-type",
        "content-length",
        "host",
        "webhook-id",
        "webhook-timestamp",
        "webhook-signature",
        "user-agent",
    }
)
# Keys people write when they paste the secret itself into the file.
_SECRET_KEYS = {
    "url": "url_env",
    "token": "token_env",
    "secret": "secret_env",
    "webhook_url": "url_env",
}


def _env_name(value: str) -> str:
    if not secrets.is_env_name(value):
        raise ValueError(
            "must be the NAME of an environment variable (letters, digits, '_'), "
            "not the secret itself"
        )
    return value


class _Notifier(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    on: list[NoticeStatus] = Field(default_factory=lambda: list(DEFAULT_ON))
    max_attempts: int = Field(default=5, ge=1, le=50, description="tries, counting the first")
    timeout: float = Field(default=10.0, gt=0, le=300, description="seconds per HTTP request")
    retry_interval: float = Field(default=1.0, gt=0, description="first backoff, doubled each try")
    retry_max_interval: float = Field(default=60.0, gt=0, description="backoff cap")
    retry_after_cap: float = Field(default=120.0, gt=0, description="longest Retry-After honoured")

    @model_validator(mode="before")
    @classmethod
    def _no_pasted_secret(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for key, instead in _SECRET_KEYS.items():
                if key in data:
                    raise ValueError(
                        f"key {key!r} is not accepted: put the value in an environment "
                        f'variable and name that variable with {instead} = "VAR_NAME"'
                    )
        return data

    def secret_envs(self) -> dict[str, str]:
        """Config key -> environment variable name, for every secret this notifier reads."""
        return {
            key: value
            for key, value in self.model_dump().items()
            if key.endswith("_env") and isinstance(value, str)
        }


class SlackNotifier(_Notifier):
    kind: Literal["slack"]
    url_env: str
    channel: str | None = Field(default=None, description="only legacy webhooks honour it")
    username: str | None = None
    icon_emoji: str | None = None

    @field_validator("url_env")
    @classmethod
    def _url_env(cls, value: str) -> str:
        return _env_name(value)


class WebhookNotifier(_Notifier):
    kind: Literal["webhook"]
    url_env: str
    secret_env: str
    headers: dict[str, str] = Field(default_factory=dict)

    @field_validator("url_env", "secret_env")
    @classmethod
    def _envs(cls, value: str) -> str:
        return _env_name(value)

    @field_validator("headers")
    @classmethod
    def _headers(cls, value: dict[str, str]) -> dict[str, str]:
        for key, item in value.items():
            if not _HEADER.match(key):
                raise ValueError(f"header name {key!r} is not a valid HTTP header name")
            if key.lower() in _RESERVED_HEADERS:
                raise ValueError(f"header {key!r} is set by bauplan-trigger; remove it")
            if any(ord(ch) < 32 for ch in item):
                raise ValueError(f"header {key!r} has a control character in its value")
        return value


class GithubStatusNotifier(_Notifier):
    kind: Literal["github_status"]
    token_env: str
    api_url: str = Field(default="https://api.github.com", description="GitHub Enterprise: /api/v3")
    context_prefix: str = Field(default="bauplan-trigger", min_length=1, max_length=100)
    run_url: str | None = Field(
        default=None, description="base URL of the run page; the run id is appended"
    )
    on: list[NoticeStatus] = Field(default_factory=lambda: list(NOTICE_STATUSES))

    @field_validator("token_env")
    @classmethod
    def _token_env(cls, value: str) -> str:
        return _env_name(value)

    @field_validator("api_url", "run_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"https?://[^\s/]+", value):
            raise ValueError("must be an http:// or https:// URL")
        return value


NotifierConfig = Annotated[
    SlackNotifier | WebhookNotifier | GithubStatusNotifier, Field(discriminator="kind")
]
AnyNotifier = SlackNotifier | WebhookNotifier | GithubStatusNotifier


def display_name(name: str, notifier: AnyNotifier) -> str:
    """How a notifier is shown everywhere: ``slack:data-alerts``."""
    return f"{notifier.kind}:{name}"
