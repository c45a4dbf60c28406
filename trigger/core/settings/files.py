"""``[triggers.files]``: which folder, which files, when they count as finished.

Pure configuration and name matching; nothing here touches the disk, so the
settings module can import it and matching can call it on every event.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from wcmatch import fnmatch, glob

# Files nobody means as a finished drop: editor and download leftovers, dotfiles,
# and our own processed/ and failed/ folders.
DEFAULT_EXCLUDE = (
    ".*",
    "*.tmp",
    "*.part",
    "*.partial",
    "*.crdownload",
    "*~",
    ".#*",
)
DONE_FOLDERS = ("processed", "failed")

_FLAGS = fnmatch.BRACE | fnmatch.EXTMATCH | fnmatch.DOTMATCH
_PATH_FLAGS = glob.BRACE | glob.EXTGLOB | glob.DOTGLOB | glob.GLOBSTAR
_MARKER = re.compile(r"[^/\\\x00-\x1f]+\Z")


class FilesSource(BaseModel):
    """The ``[triggers.files]`` table of one trigger."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    dir: Path = Field(description="watched folder: absolute, or relative to the config file")
    patterns: list[str] = Field(default_factory=lambda: ["*"])
    exclude: list[str] = Field(default_factory=list, description="added to the default excludes")
    recursive: bool = False
    settle_seconds: float = Field(default=2.0, ge=0, le=86_400)
    ready_marker: str | None = Field(
        default=None,
        description="'{name}.done' waits for a companion file, '_SUCCESS' for a folder marker",
    )
    after: Literal["leave", "move"] = "leave"
    identity: Literal["stat", "content"] = "stat"
    force_polling: bool = False
    poll_interval: float = Field(default=0.3, gt=0, le=60)
    rescan_seconds: float = Field(default=300.0, ge=0)

    @field_validator("patterns", "exclude")
    @classmethod
    def _globs(cls, value: list[str]) -> list[str]:
        for pattern in value:
            if not pattern or "\x00" in pattern or pattern.startswith("/"):
                raise ValueError(
                    f"glob {pattern!r} must be a non-empty pattern relative to dir, "
                    "like '*.parquet' or 'orders/**/*.csv'"
                )
        return value

    @field_validator("ready_marker")
    @classmethod
    def _marker(cls, value: str | None) -> str | None:
        if value is None:
            return value
        rest = value.replace("{name}", "").replace("{stem}", "")
        if not _MARKER.match(value) or "{" in rest or "}" in rest or not value.strip("."):
            raise ValueError(
                "must be a file name such as '{name}.done', '{stem}.ok' or '_SUCCESS' "
                "(no folders; only {name} and {stem} are filled in)"
            )
        return value

    @property
    def marker_is_companion(self) -> bool:
        return self.ready_marker is not None and "{" in self.ready_marker


class Matcher:
    """Decides from a path relative to the watched dir whether it is a candidate."""

    def __init__(self, source: FilesSource) -> None:
        self.source = source
        self._include = _Globs(source.patterns)
        self._exclude = _Globs([*DEFAULT_EXCLUDE, *source.exclude])

    def wanted(self, rel: str) -> bool:
        """A matching, non-excluded file that is not a marker and not in a done folder."""
        return self.refusal(rel) is None

    def refusal(self, rel: str) -> str | None:
        """Why ``rel`` is not a candidate (completing "file X ..."), or None when it is."""
        parts = rel.split("/")
        if len(parts) > 1 and not self.source.recursive:
            return "is in a sub-folder of the watched dir, and files.recursive is false"
        if any(part in DONE_FOLDERS or part.startswith(".") for part in parts[:-1]):
            return "is inside a processed/, failed/ or hidden folder, which are never offered"
        if self.is_marker(rel):
            return "is a ready marker, not a data file"
        name = parts[-1]
        if self._exclude.match(name, rel):
            return (
                "is excluded (files.exclude, or the defaults for dotfiles and partial "
                "downloads: " + ", ".join(DEFAULT_EXCLUDE) + ")"
            )
        if not self._include.match(name, rel):
            return "does not match files.patterns (" + ", ".join(self.source.patterns) + ")"
        return None

    def enters(self, rel_dir: str) -> bool:
        """Whether a scan descends into a sub-folder (``rel_dir`` relative to dir)."""
        if not self.source.recursive:
            return False
        parts = rel_dir.split("/")
        return not any(part in DONE_FOLDERS or part.startswith(".") for part in parts)

    def is_marker(self, rel: str) -> bool:
        marker = self.source.ready_marker
        if marker is None:
            return False
        name = rel.rsplit("/", 1)[-1]
        if not self.source.marker_is_companion:
            return name == marker
        head, _, tail = marker.partition("{name}")
        if "{name}" in marker and name.startswith(head) and name.endswith(tail):
            return len(name) > len(head) + len(tail)
        head, _, tail = marker.partition("{stem}")
        return (
            "{stem}" in marker
            and name.startswith(head)
            and name.endswith(tail)
            and len(name) > len(head) + len(tail)
        )

    def marker_for(self, rel: str) -> str | None:
        """The marker that makes ``rel`` ready, relative to dir; None without marker mode."""
        marker = self.source.ready_marker
        if marker is None:
            return None
        folder, _, name = rel.rpartition("/")
        stem = name.rsplit(".", 1)[0] if "." in name.lstrip(".") else name
        filled = marker.replace("{name}", name).replace("{stem}", stem)
        return f"{folder}/{filled}" if folder else filled


class _Globs:
    """Compiled once: a pattern without '/' matches the file name at any depth; with '/',
    the path relative to dir."""

    def __init__(self, patterns: list[str] | tuple[str, ...]) -> None:
        names = [p for p in patterns if "/" not in p]
        paths = [p for p in patterns if "/" in p]
        self._names = fnmatch.compile(names, flags=_FLAGS) if names else None
        self._paths = glob.compile(paths, flags=_PATH_FLAGS) if paths else None

    def match(self, name: str, rel: str) -> bool:
        if self._names is not None and self._names.match(name):
            return True
        return self._paths is not None and bool(self._paths.match(rel))
