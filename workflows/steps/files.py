"""The run workflow's file steps: is the dropped file still there, and where it goes after.

Both are DBOS steps called from ``run_workflow`` only for file-drop runs
(``RunRequest.file`` set by the watcher). The move is a step before the
workflow ends, so a crash between the run's end and the move is finished by
recovery; re-executing it is harmless because it only moves the exact version
the run was for, never deletes and never overwrites.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path
from typing import Any

from trigger.core.errors import FileGoneError
from trigger.core.fileversion import sha256_of, shown
from trigger.core.matching import RunRequest
from workflows import crashpoint

log = logging.getLogger(__name__)

DONE_FOLDER = {"success": "processed"}  # anything else goes to failed/


def _same_version(path: Path, info: dict[str, Any]) -> bool:
    try:
        st = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return False
    if (st.st_size, st.st_mtime_ns) == (info["size"], info["mtime_ns"]):
        return True
    # Content identity: a touch is the same version.
    if info.get("identity") == "content" and info.get("sha256"):
        return bool(sha256_of(path) == info["sha256"])
    return False


def check_file(request: dict[str, Any]) -> None:
    """Fail the run with a clear message when its file vanished or changed since it settled."""
    req = RunRequest.from_dict(request)
    info = req.file or {}
    path = Path(info["root"]) / info["rel"]
    if not path.exists():
        raise FileGoneError(
            f"run {req.run_id}: the dropped file {shown(str(path))} is gone (deleted or moved "
            "away after it was picked up); drop it again to run it"
        )
    if not _same_version(path, info):
        raise FileGoneError(
            f"run {req.run_id}: the dropped file {shown(str(path))} changed after it was "
            "picked up; its new version gets its own run"
        )


def _free_name(folder: Path, name: str, run_id: str) -> Path:
    """``name`` in ``folder``, or with a suffix from the run id when that is taken."""
    target = folder / name
    if not os.path.lexists(target):
        return target
    stem, dot, ext = name.rpartition(".")
    if not dot or not stem:
        stem, ext = name, ""
    tag = hashlib.sha256(run_id.encode()).hexdigest()[:8]
    for n in range(1000):
        suffix = f"{tag}" if n == 0 else f"{tag}-{n}"
        candidate = folder / (f"{stem}.{suffix}.{ext}" if ext else f"{stem}.{suffix}")
        if not os.path.lexists(candidate):
            return candidate
    raise FileExistsError(f"no free name for {name} in {folder}")


def move_file(request: dict[str, Any], status: str) -> str | None:
    """Rename the file (and its companion marker) into processed/ or failed/ beside it.

    Returns the new path, or None when there was nothing to move: the file is
    already moved (a re-executed step), gone, or replaced by a newer version,
    which must stay where it is for its own run.
    """
    req = RunRequest.from_dict(request)
    info = req.file or {}
    path = Path(info["root"]) / info["rel"]
    if not _same_version(path, info):
        log.info(
            "run %s: %s is gone or replaced by a newer version; not moved",
            req.run_id,
            shown(str(path)),
        )
        return None
    folder = path.parent / DONE_FOLDER.get(status, "failed")
    folder.mkdir(exist_ok=True)
    # The marker goes first: a crash between the two renames leaves the file where it
    # was, so the re-executed step still finds its version and moves it. The other way
    # round the file is gone by then, and its stale marker would later make a new file
    # of the same name look ready before its writer has finished.
    marker = info.get("marker")
    if marker:
        marker_path = Path(info["root"]) / marker
        if marker_path.is_file():
            os.rename(marker_path, _free_name(folder, marker_path.name, req.run_id))
    crashpoint.reached("move_file.marker")
    target = _free_name(folder, path.name, req.run_id)
    os.rename(path, target)
    log.info("run %s: moved %s to %s", req.run_id, shown(str(path)), shown(str(target)))
    return str(target)


def before_run(req: RunRequest, request: dict[str, Any]) -> None:
    if req.file:
        crashpoint.step({"name": "check_file"}, check_file, request)


def after_run(req: RunRequest, request: dict[str, Any], status: str) -> None:
    """Move the file by outcome; a failed move is logged and never changes the outcome."""
    if not (req.file and req.file.get("after") == "move"):
        return
    try:
        crashpoint.step({"name": "move_file"}, move_file, request, status)
    except OSError as exc:
        log.error("run %s: could not move its file: %s", req.run_id, exc)
