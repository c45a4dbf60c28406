"""The watched folder: where it is, whether it can be watched at all, and how watching
it fails."""

from __future__ import annotations

import os
from pathlib import Path

from trigger.core.errors import WatchDirError
from trigger.core.settings import Settings, TriggerConfig


def watch_dir(settings: Settings, trig: TriggerConfig) -> Path:
    assert trig.files is not None
    folder = trig.files.dir.expanduser()
    if not folder.is_absolute():
        folder = settings.base_dir / folder
    return Path(os.path.abspath(folder))


def check_dir(trigger: str, root: Path) -> None:
    """A watched dir must exist and be listable; else one clear line at start-up."""
    if not root.exists():
        raise WatchDirError(trigger, str(root), "does not exist")
    if not root.is_dir():
        raise WatchDirError(trigger, str(root), "is not a folder")
    try:
        with os.scandir(root):
            pass
    except PermissionError:
        raise WatchDirError(trigger, str(root), "cannot be read by this user") from None


def undecodable(exc: BaseException) -> bool:
    """watchfiles' error for a name in the folder that is not UTF-8 (raised inside
    anyio's exception group): the watch ends, though nothing is wrong with the folder."""
    if isinstance(exc, BaseExceptionGroup):
        return all(undecodable(inner) for inner in exc.exceptions)
    return type(exc).__name__ == "WatchfilesRustInternalError" and "decode path" in str(exc)
