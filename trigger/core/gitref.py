"""Git refs and commit ids from outside, checked before they reach git or a template.

A push payload is data from the network; its ref names become branch names,
template values and, for the pushed-commit checkout, git arguments. We accept
only what git itself would accept and refuse the shapes that turn into options
(``-x``), range syntax (``..``, ``@{``) or terminal tricks (control characters).
"""

from __future__ import annotations

import re

from trigger.core import text
from trigger.core.errors import HookPayloadError

SHA = re.compile(r"[0-9a-f]{40}\Z")
ZERO_SHA = "0" * 40
_BAD_REF = re.compile(r"[\x00-\x20\x7f~^:?*\[\\]")


def check_sha(value: object, *, where: str) -> str:
    if not isinstance(value, str) or not SHA.match(value):
        raise HookPayloadError(f"{where} must be a 40-character lower-case hex commit id")
    return value


def ref_problem(ref: str) -> str | None:
    """Why ``ref`` is refused, or None when it is an acceptable git ref name."""
    if not ref:
        return "is empty"
    if len(ref) > 255:
        return "is longer than 255 characters"
    if ref.startswith("-"):
        return "starts with '-'"
    if ".." in ref:
        return "contains '..'"
    if "@{" in ref or ref == "@":
        return "contains '@{'"
    unsafe = text.problem(ref)
    if unsafe is not None:
        return unsafe
    if _BAD_REF.search(ref):
        return "contains a space, a control character or one of ~^:?*[\\"
    if ref.startswith("/") or ref.endswith(("/", ".", ".lock")) or "//" in ref:
        return "is not a well-formed ref name"
    if any(part.startswith(("-", ".")) for part in ref.split("/")):
        return "has a component that starts with '-' or '.'"
    return None


def check_ref(value: object, *, where: str) -> str:
    if not isinstance(value, str):
        raise HookPayloadError(f"{where} must be a string")
    problem = ref_problem(value)
    if problem is not None:
        raise HookPayloadError(f"{where} {text.quoted(value)} {problem}; refused")
    return value


def split_ref(ref: str) -> tuple[str | None, str | None]:
    """``refs/heads/x`` -> (branch x, None); ``refs/tags/v1`` -> (None, tag v1)."""
    if ref.startswith("refs/heads/"):
        return ref.removeprefix("refs/heads/") or None, None
    if ref.startswith("refs/tags/"):
        return None, ref.removeprefix("refs/tags/") or None
    return None, None
