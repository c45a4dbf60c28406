"""A file version on disk, made safe and turned into an ``Event``.

A version is (path relative to the watched dir, size, mtime_ns): the event id
is derived from it (or from the content's SHA-256 with ``identity = "content"``)
so the same version is the same run however often it is seen. Paths are checked
to stay inside the watched dir before anything reads them.
"""

from __future__ import annotations

import hashlib
import os
import stat
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from trigger.core import text
from trigger.core.event import AttributeValue, Event
from trigger.core.settings.files import FilesSource

_CHUNK = 1024 * 1024


@dataclass(frozen=True)
class FileVersion:
    rel: str
    size: int
    mtime_ns: int

    @property
    def key(self) -> tuple[int, int]:
        return (self.size, self.mtime_ns)


class Skipped(Exception):
    """Why a path is not offered: outside dir, not a regular file, unusable name."""


def shown(rel: str) -> str:
    """A file name fit for one line of text: control characters and bytes that are
    not UTF-8 (which Python holds as lone surrogates) escaped."""
    return text.escaped(rel)


def rel_of(root: Path, path: str) -> str | None:
    """``path`` relative to ``root`` with '/' separators; None when it is not under it."""
    try:
        rel = os.path.relpath(path, root)
    except ValueError:
        return None
    if rel == "." or rel.startswith(".." + os.sep) or rel == "..":
        return None
    return rel.replace(os.sep, "/")


def inspect_file(root: Path, real_root: str, rel: str) -> FileVersion:
    """Stat ``root/rel`` after checking it resolves inside the watched dir.

    Raises ``FileNotFoundError`` when it is gone and ``Skipped`` when it must not
    be offered.
    """
    why = text.problem(rel)
    if why is not None:  # a file name becomes template values: the rule for identifiers
        utf8 = text.invalid(rel) is None
        raise Skipped(f"its name {why if utf8 else 'is not valid UTF-8'}; rename it")
    path = root / rel
    real = os.path.realpath(path)
    if real != real_root and not real.startswith(real_root.rstrip(os.sep) + os.sep):
        raise Skipped(f"it resolves to {shown(real)}, outside the watched dir; not following")
    info = os.stat(real)
    if not stat.S_ISREG(info.st_mode):
        raise Skipped("it is not a regular file")
    return FileVersion(rel=rel, size=info.st_size, mtime_ns=info.st_mtime_ns)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def event_id(trigger: str, source: FilesSource, version: FileVersion, sha256: str | None) -> str:
    """Stat identity: (trigger, rel, size, mtime_ns). Content identity: (trigger, rel, sha256),
    so a touch (new mtime, same bytes) is the same event and runs nothing."""
    if source.identity == "content":
        if sha256 is None:
            raise ValueError("content identity needs the file's sha256")
        basis = f"{trigger}\0{version.rel}\0sha256:{sha256}"
        prefix = "file-c-"
    else:
        basis = f"{trigger}\0{version.rel}\0{version.size}\0{version.mtime_ns}"
        prefix = "file-"
    return prefix + hashlib.sha256(basis.encode("utf-8")).hexdigest()[:40]


def file_event(
    trigger: str,
    source: FilesSource,
    root: Path,
    version: FileVersion,
    *,
    sha256: str | None = None,
) -> Event:
    """The event for one ready file version. ``received_at`` is the file's mtime, so the
    same version always renders the same parameters (``event_date`` is the drop date)."""
    path = root / version.rel
    name = path.name
    stem, dot, ext = name.rpartition(".")
    if not dot or not stem:
        stem, ext = name, ""
    mtime = datetime.fromtimestamp(version.mtime_ns / 1e9, UTC)
    attributes: dict[str, AttributeValue] = {
        "trigger": trigger,
        "file_path": str(path),
        "file_rel": version.rel,
        "file_name": name,
        "file_stem": stem,
        "file_ext": ext,
        "file_dir": str(path.parent),
        "file_size": version.size,
        "file_mtime": mtime.isoformat().replace("+00:00", "Z"),
        "file_mtime_ns": version.mtime_ns,
    }
    if sha256 is not None:
        attributes["file_sha256"] = sha256
    return Event(
        kind="files",
        id=event_id(trigger, source, version, sha256),
        received_at=mtime,
        attributes=attributes,
    )
