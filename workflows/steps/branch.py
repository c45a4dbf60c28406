"""The guard between a rendered branch suffix and a Bauplan write."""

from __future__ import annotations

import re

from trigger.core.errors import BranchError

_USER = re.compile(r"[A-Za-z0-9_-]+\Z")
_SUFFIX = re.compile(r"[A-Za-z0-9_]+\Z")


def user_branch(username: str, suffix: str) -> str:
    """``username.suffix``, refusing anything that could write outside the user's space."""
    if not _USER.match(username):
        raise BranchError(f"Bauplan username {username!r} is not a valid branch prefix")
    if not _SUFFIX.match(suffix):
        raise BranchError(
            f"branch suffix {suffix!r} has characters other than letters, digits and '_'"
        )
    branch = f"{username}.{suffix}"
    guard_writable(branch, username)
    return branch


def guard_writable(branch: str, username: str) -> None:
    """Never write on main, and never on a branch outside ``username.``."""
    if branch.lower() == "main" or branch.lower().startswith("main@"):
        raise BranchError("refusing to run on main: runs only write to the user's own branches")
    if not branch.startswith(f"{username}."):
        raise BranchError(
            f"refusing to run on {branch!r}: it is not prefixed by the Bauplan user {username!r}."
        )
