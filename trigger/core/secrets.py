"""Secrets: the one reader of secret environment variables, and the one redactor.

The config only names variables (every key ending in ``_env``). Their values are
read here and nowhere else, and each value read is remembered so it can be cut
out of any text before the text is logged or stored: a receiver's answer, a run's
error and log tail, our own error messages, and every log record. A notifier URL
is a credential as a whole: its path and query go too, and so does each part of
them that looks like a key, so a receiver that echoes only the token is caught.

The redactor is process state because log records are: the filter must see the
records of every logger and every handler (DBOS's own, a test's), so it runs as
each record is made, not on one logger. It only ever grows, and holds only
values this process read.
"""

from __future__ import annotations

import base64
import binascii
import logging
import os
import re
import threading
from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, unquote, urlsplit

if TYPE_CHECKING:
    from trigger.core.settings import Settings

REDACTED = "***"
# Shorter values would blank out ordinary words and protect nothing.
_MIN_SECRET = 4
# A part of a URL's path or query is taken for a key when it is this long and is
# not a plain lower-case word ("services", "hooks", "statuses").
_MIN_KEY_PART = 8
_PLAIN_WORD = re.compile(r"[a-z._~-]+\Z")
_SAFE_ARGS = (int, float, bool, type(None))
# What a ``*_env`` key of the config may hold: the name of a variable, never its value.
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def is_env_name(value: str) -> bool:
    """Whether ``value`` can be the name of an environment variable (and so is not,
    say, a secret pasted into the file by mistake)."""
    return ENV_NAME.match(value) is not None


def whsec_problem(value: str) -> str | None:
    """Why ``value`` is not a Standard Webhooks signing secret (``whsec_`` and the key in
    base64), or None: the one test, for the signed-webhook notifier and generic hooks."""
    if not value.startswith("whsec_"):
        return "does not start with whsec_"
    key = value.removeprefix("whsec_")
    try:
        raw = base64.b64decode(key + "=" * (-len(key) % 4), validate=True)
    except (binascii.Error, ValueError):
        return "is not base64 after whsec_"
    if not raw:
        return "holds no key after whsec_"
    return None


def whsec_keys_problem(value: str) -> str | None:
    """:func:`whsec_problem` for a variable that may hold several secrets (a key
    rotation), naming which one is wrong."""
    keys = rotation(value)
    for number, key in enumerate(keys, 1):
        problem = whsec_problem(key)
        if problem is not None:
            return problem if len(keys) == 1 else f"(secret {number} of {len(keys)}) {problem}"
    return None


class Redactor:
    """Known secret values and what each is replaced with; longest match first."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._replacements: dict[str, str] = {}
        self._pattern: re.Pattern[str] | None = None
        self.longest = 0

    def add(self, value: str, replacement: str = REDACTED) -> None:
        forms = [form for form in {value, value.strip()} if len(form) >= _MIN_SECRET]
        if all(form in self._replacements for form in forms):
            return
        with self._lock:
            for form in forms:
                self._replacements.setdefault(form, replacement)
            ordered = sorted(self._replacements, key=len, reverse=True)
            self._pattern = re.compile("|".join(re.escape(v) for v in ordered))
            self.longest = len(ordered[0])

    def add_url(self, url: str) -> None:
        """The URL, its path and query, its credentials and each key-like part of them."""
        url = url.strip()
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError:
            self.add(url)
            return
        if not parts.netloc:
            self.add(url)
            return
        origin = f"{parts.scheme}://{parts.hostname or ''}" + (f":{port}" if port else "")
        self.add(url, f"{origin}/{REDACTED}")
        rest = url.split(parts.netloc, 1)[1]
        for piece in (rest, parts.path, parts.query, unquote(parts.path)):
            if piece not in ("", "/"):
                self.add(piece, f"/{REDACTED}" if piece.startswith("/") else REDACTED)
        for credential in (parts.username, parts.password):
            if credential:
                self.add(credential)
        for piece in _url_pieces(parts.path, parts.query):
            if len(piece) >= _MIN_KEY_PART and not _PLAIN_WORD.match(piece):
                self.add(piece)

    def redact(self, text: str, extra: Iterable[str] = ()) -> str:
        pattern = self._pattern
        if pattern is not None and text:
            text = pattern.sub(lambda match: self._replacements[match.group(0)], text)
        for value in extra:
            if len(value) >= _MIN_SECRET:
                text = text.replace(value, REDACTED)
        return text


def _url_pieces(path: str, query: str) -> Iterator[str]:
    for segment in path.split("/"):
        yield segment
        yield unquote(segment)
    for key, value in parse_qsl(query, keep_blank_values=True):
        yield key
        yield value


_redactor = Redactor()


def redact(text: str, extra: Iterable[str] = ()) -> str:
    """``text`` with every secret this process knows (and ``extra``) replaced by ``***``."""
    return _redactor.redact(text, extra)


def longest() -> int:
    """The length of the longest known secret: what a cut-off text may end in part of."""
    return _redactor.longest


def read(
    variable: str,
    environ: Mapping[str, str] | None = None,
    *,
    url: bool = False,
    strip: bool = False,
) -> str | None:
    """The value of the environment variable ``variable``, or None when it is unset or
    empty. The value is remembered for redaction; ``url`` marks a notifier URL."""
    env = os.environ if environ is None else environ
    value = env.get(variable) or ""
    if strip:
        value = value.strip()
    if not value:
        return None
    if url:
        _redactor.add_url(value)
    else:
        _redactor.add(value)
        for key in rotation(value):
            _redactor.add(key)
            if key.startswith("whsec_"):
                _redactor.add(key.removeprefix("whsec_"))
    return value


def rotation(value: str) -> list[str]:
    """The secrets one variable holds: several, space-separated, while a Standard Webhooks
    key is rotated (the new one and the old one), else just the one."""
    return value.split()


def install(settings: Settings, environ: Mapping[str, str] | None = None) -> None:
    """Learn every secret the config names before anything is logged, and install the
    log filter. Called by each process's composition root; harmless twice."""
    for key, variable in _env_keys(settings.model_dump()):
        read(variable, environ, url=key.endswith("url_env"))
    if settings.system_database_url:
        try:
            password = urlsplit(settings.system_database_url).password
        except ValueError:
            password = None
        if password:
            _redactor.add(unquote(password))
    install_log_filter()


def _env_keys(data: Any) -> Iterator[tuple[str, str]]:
    if isinstance(data, dict):
        for key, value in data.items():
            if isinstance(key, str) and key.endswith("_env") and isinstance(value, str):
                yield key, value
            else:
                yield from _env_keys(value)
    elif isinstance(data, list):
        for item in data:
            yield from _env_keys(item)


class RedactSecrets(logging.Filter):
    """Cuts every known secret out of a record's message, arguments and traceback, and
    shows a URL object (httpx logs each request's) as its origin only."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            _scrub(record)
        except Exception:  # a log call must never fail because of us
            record.msg, record.args, record.exc_info = "(log line withheld)", None, None
        return True


def _scrub(record: logging.LogRecord) -> None:
    if isinstance(record.msg, str):
        record.msg = redact(record.msg)
    if isinstance(record.args, tuple):
        record.args = tuple(_arg(a) for a in record.args)
    elif isinstance(record.args, Mapping):
        record.args = {k: _arg(v) for k, v in record.args.items()}
    if _redactor.longest == 0:
        return
    try:
        message = record.getMessage()
    except Exception:  # a malformed call: logging reports it when the record is emitted
        message = ""
    if redact(message) != message:  # a secret split across the format and its arguments
        record.msg, record.args = redact(message), None
    if record.exc_info and record.exc_info[1] is not None:
        text = logging.Formatter().formatException(record.exc_info)
        if redact(text) != text:
            record.exc_text, record.exc_info = redact(text), None
    if record.stack_info:
        record.stack_info = redact(record.stack_info)


def _arg(value: Any) -> Any:
    if isinstance(value, _SAFE_ARGS):
        return value
    if type(value).__name__ == "URL" and type(value).__module__.startswith("httpx"):
        port = f":{value.port}" if value.port else ""
        return f"{value.scheme}://{value.host}{port}/{REDACTED}"
    if isinstance(value, str):
        return redact(value)
    if _redactor.longest:
        text = str(value)
        if redact(text) != text:
            return redact(text)
    return value


_FILTER = RedactSecrets()
_installed: list[bool] = []
_install_lock = threading.Lock()


def install_log_filter() -> None:
    """Run the filter on every record as it is made (idempotent)."""
    with _install_lock:
        if _installed:
            return
        previous = logging.getLogRecordFactory()

        def make(*args: Any, **kwargs: Any) -> logging.LogRecord:
            record = previous(*args, **kwargs)
            _FILTER.filter(record)
            return record

        logging.setLogRecordFactory(make)
        _installed.append(True)
