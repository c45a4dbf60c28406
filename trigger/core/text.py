"""What a string from outside may contain: one rule for every source and every reader.

Pushers, refs, commit messages, body values, ``fire`` parameters and file names all
end up in templates, the event log, run records, log lines and terminals. So:

- a string that is not valid Unicode (a lone surrogate such as the JSON escape
  ``"\\ud800"``, or a file name that is not UTF-8) is refused, whatever the field:
  nothing downstream could encode it;
- an identifier (a repo, a ref, a pusher, a body value, a parameter, a file name)
  with a control character is refused;
- free text (a commit message's first line) has its control characters removed.

Control characters are C0 (U+0000-U+001F), DEL, C1 (U+0080-U+009F), the line and
paragraph separators U+2028/U+2029 (``str.splitlines`` breaks lines there) and the
bidirectional overrides U+202A-U+202E and U+2066-U+2069 (they reorder what a reader
sees). The same set is what :func:`escaped` turns into visible escapes for a line of
text, and :func:`readable` makes what older versions stored readable again.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, TypeVar, cast

from pydantic import AfterValidator, Field

_CONTROLS = "\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069"
_SURROGATES = "\ud800-\udfff"
CONTROL = re.compile(f"[{_CONTROLS}]")
_SURROGATE = re.compile(f"[{_SURROGATES}]")
_UNSAFE = re.compile(f"[{_CONTROLS}{_SURROGATES}]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
T = TypeVar("T")


def invalid(value: str) -> str | None:
    """Why ``value`` is not valid Unicode, or None when it is."""
    found = _SURROGATE.search(value)
    if found is None:
        return None
    return (
        f"is not valid Unicode: it holds a lone surrogate (U+{ord(found.group()):04X}) "
        f"at position {found.start()}"
    )


def problem(value: str) -> str | None:
    """Why ``value`` may not be an identifier from outside, or None when it may."""
    found = _UNSAFE.search(value)
    if found is None:
        return None
    if _SURROGATE.match(found.group()):
        return invalid(value)
    return f"has a control character (U+{ord(found.group()):04X}) at position {found.start()}"


# What ends a link's address in Slack mrkdwn (``<url|label>``), in HTML or in a log line.
_LINK_BREAKERS = re.compile(r"[\s<>|\"'`\\]")
LINK_LIMIT = 300  # longer attribute values are cut in run records, which would break a link


def link_problem(url: str) -> str | None:
    """Why ``url`` may not be the address of a link we show (in Slack, on the page), or
    None: an http(s) URL with a host, no credentials, nothing that would end the link."""
    from urllib.parse import urlsplit

    if len(url) > LINK_LIMIT:
        return f"is longer than {LINK_LIMIT} characters"
    if _LINK_BREAKERS.search(url) or _UNSAFE.search(url):
        return "has a space, a quote, a control character or one of <>|`\\"
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        return "is not a URL"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "must be an http:// or https:// URL with a host"
    if parts.username or parts.password:
        return "must not hold credentials"
    return None


def _identifier(value: str) -> str:
    why = problem(value)
    if why is not None:
        raise ValueError(why)
    return value


# The same rule for the OpenAPI document, written with escapes. JSON text is Unicode,
# so the document leaves the surrogates out (generators choke on them, too).
IDENTIFIER_PATTERN = (
    "^[^" + "".join(c if c == "-" else f"\\u{ord(c):04x}" for c in _CONTROLS) + "]*$"
)

# A request-body field from outside that is an identifier (``actor``, ``fired_by``).
Identifier = Annotated[
    str, AfterValidator(_identifier), Field(json_schema_extra={"pattern": IDENTIFIER_PATTERN})
]


def stripped(value: str) -> str:
    """Free text with its control characters removed (check :func:`invalid` first)."""
    return CONTROL.sub("", value)


def quoted(value: str, limit: int = 80) -> str:
    """``value`` quoted for a message: escaped, and cut to ``limit`` characters."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def escaped(value: str) -> str:
    """``value`` fit for one line of text: control characters and lone surrogates
    written as escapes (``\\n``, ``\\x1b``, ``\\u2028``, ``\\ud800``), the rest as is."""
    if _UNSAFE.search(value) is None:
        return value
    return _UNSAFE.sub(_escape, value)


def _escape(found: re.Match[str]) -> str:
    char = found.group()
    if char in _NAMED:
        return _NAMED[char]
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def readable(data: T) -> T:
    """Stored data with every lone surrogate written as its escape, so it can be encoded.

    Older versions accepted such strings and stored them; readers pass what they read
    through here before answering, printing or rendering it."""
    return cast(T, _readable(data))


def _readable(data: Any) -> Any:
    if isinstance(data, str):
        return data if _SURROGATE.search(data) is None else _SURROGATE.sub(_escape, data)
    if isinstance(data, dict):
        return {_readable(key): _readable(value) for key, value in data.items()}
    if isinstance(data, list | tuple):
        return type(data)(_readable(item) for item in data)
    return data


def first_invalid(data: Any) -> tuple[str, str] | None:
    """The first string (or key) in parsed JSON that is not valid Unicode:
    ``(path, problem)``, the path as ``pusher.name`` or ``commits[0].message``.

    Walked with a stack, not recursion: a body may nest as deep as the parser allows."""
    stack: list[tuple[str, Any]] = [("", data)]
    while stack:
        where, value = stack.pop()
        if isinstance(value, str):
            why = invalid(value)
            if why is not None:
                return (where or "(the body)", why)
        elif isinstance(value, dict):
            items = []
            for key, item in value.items():
                path = f"{where}.{escaped(key)}" if where else escaped(key)
                why = invalid(key)
                if why is not None:
                    return (f"{path} (a key)", why)
                items.append((path, item))
            stack.extend(reversed(items))
        elif isinstance(value, list):
            stack.extend(reversed([(f"{where}[{i}]", item) for i, item in enumerate(value)]))
    return None
