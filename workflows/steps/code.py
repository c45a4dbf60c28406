"""The pushed commit's code, checked out for one run.

Per source we keep a bare mirror under ``<state_dir>/git/mirrors`` and update
it when a run needs a commit it does not have yet; each run gets a detached
``git worktree`` of the exact sha under ``<state_dir>/git/workspaces``, removed
when the run ends. ``prepare`` is idempotent: a step re-run after a crash (or a
workspace removed behind our back) finds or rebuilds the same checkout, so a
run never points at a folder that is gone.

Everything reaching git is validated first, git gets argument lists (never a
shell string) with ``--`` before user-supplied values, and it never prompts.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path, PurePosixPath

from trigger.core.errors import WorkspaceError
from trigger.core.gitref import SHA

log = logging.getLogger(__name__)

_GIT_TIMEOUT = 300.0
_SAFE = ("-c", "protocol.ext.allow=never", "-c", "core.hooksPath=/dev/null")


def _key(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def mirror_path(state_dir: Path, source: str) -> Path:
    return state_dir / "git" / "mirrors" / f"{_key(source)}.git"


def workspace_path(state_dir: Path, run_id: str) -> Path:
    return state_dir / "git" / "workspaces" / _key(run_id)


def _git(*args: str, cwd: Path | None = None, timeout: float = _GIT_TIMEOUT) -> str:
    env = {
        **os.environ,
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_ASKPASS": "true",
        "GIT_CONFIG_NOSYSTEM": "1",
        "LC_ALL": "C",
    }
    try:
        result = subprocess.run(
            ["git", *_SAFE, *args],
            cwd=cwd,
            capture_output=True,
            text=True,
            env=env,
            timeout=timeout,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise WorkspaceError(
            f"git {_command(args)} did not complete ({exc})", retryable=True
        ) from None
    if result.returncode != 0:
        lines = result.stderr.strip().splitlines() or ["no output"]
        detail = next((line for line in lines if line.startswith("fatal:")), lines[-1])[:300]
        raise WorkspaceError(f"git {_command(args)} failed: {detail}", retryable=True)
    return result.stdout


def _command(args: tuple[str, ...]) -> str:
    """The git subcommand, past a leading ``-C <folder>``."""
    return args[2] if args[:1] == ("-C",) and len(args) > 2 else args[0]


def check_inputs(source: str, sha: str, subdir: str) -> None:
    if not SHA.match(sha):
        raise WorkspaceError(f"commit {sha!r} is not a 40-character hex sha; refused")
    if not source or source.startswith("-") or any(ord(ch) < 32 for ch in source):
        raise WorkspaceError(f"git source {source[:80]!r} is not a clone URL or path; refused")
    parts = PurePosixPath(subdir).parts
    if PurePosixPath(subdir).is_absolute() or ".." in parts:
        raise WorkspaceError(f"project folder {subdir!r} must be inside the repository")


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """One git writer per mirror across threads and processes on this machine."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(f"{path}.lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _has_commit(mirror: Path, sha: str) -> bool:
    try:
        _git("-C", str(mirror), "cat-file", "-e", f"{sha}^{{commit}}", timeout=60)
    except WorkspaceError:
        return False
    return True


def _fetch(mirror: Path, source: str, sha: str) -> None:
    """Make ``sha`` present in the mirror. The retry decision is made here: a clone or
    fetch that fails (network, server) is transient, so ``_git`` marks it retryable; a
    commit still missing after a fetch that worked is permanent."""
    if not (mirror / "HEAD").is_file():
        if mirror.exists():
            shutil.rmtree(mirror)
        log.info("mirroring %s", display_source(source))
        _git("clone", "--mirror", "--quiet", "--", source, str(mirror))
    if _has_commit(mirror, sha):
        return
    _git("-C", str(mirror), "fetch", "--prune", "--quiet", "origin")
    if _has_commit(mirror, sha):
        return
    # A commit no branch points at any more (force-pushed away) may still be fetchable.
    with suppress(WorkspaceError):
        _git("-C", str(mirror), "fetch", "--quiet", "origin", "--", sha)
    if not _has_commit(mirror, sha):
        # The fetch worked, so asking again will not make the commit appear: permanent.
        raise WorkspaceError(
            f"commit {sha} is not in {display_source(source)} after a fresh fetch (was it "
            "force-pushed away, or pushed to another repository?); the run is not retried"
        )


def _checked_out(workspace: Path) -> str | None:
    if not (workspace / ".git").is_file():
        return None
    try:
        return _git("-C", str(workspace), "rev-parse", "HEAD", timeout=60).strip()
    except WorkspaceError:
        return None


def prepare(state_dir: Path, source: str, sha: str, run_id: str, subdir: str) -> Path:
    """The project folder of ``sha`` for ``run_id``, created if missing; idempotent."""
    check_inputs(source, sha, subdir)
    mirror = mirror_path(state_dir, source)
    workspace = workspace_path(state_dir, run_id)
    with _locked(mirror):
        if _checked_out(workspace) != sha:
            _discard(mirror, workspace)
            _fetch(mirror, source, sha)
            workspace.parent.mkdir(parents=True, exist_ok=True)
            _git("-C", str(mirror), "worktree", "add", "--detach", "--", str(workspace), sha)
            log.info("checked out %s at %s for run %s", display_source(source), sha[:12], run_id)
    project = workspace / subdir if subdir not in ("", ".") else workspace
    if not project.is_dir():
        raise WorkspaceError(
            f"commit {sha[:12]} of {display_source(source)} has no folder {subdir!r}; "
            "project_dir is relative to the repository root when source is set"
        )
    return project


def fetch_commit(state_dir: Path, source: str, sha: str) -> tuple[str, str]:
    """Fetch ``sha`` into the source's mirror as a run of it would (its run then finds
    it there), for ``fire``: the commit's subject line and committer date. A commit
    that is not there is a permanent ``WorkspaceError`` saying so; a failed fetch is
    retryable."""
    check_inputs(source, sha, ".")
    mirror = mirror_path(state_dir, source)
    with _locked(mirror):
        try:
            _fetch(mirror, source, sha)
        except WorkspaceError as exc:
            if exc.retryable:
                raise
            raise WorkspaceError(
                f"commit {sha} is not in {display_source(source)}, even after a fresh fetch; "
                "check the sha and that it was pushed there"
            ) from None
        shown = _git("-C", str(mirror), "show", "-s", "--format=%s%x00%cI", sha, "--", timeout=60)
    subject, _, date = shown.strip().partition("\x00")
    return subject, date


def on_branch(state_dir: Path, source: str, sha: str, branch: str) -> bool:
    """Whether ``branch`` holds ``sha`` (after :func:`fetch_commit`); the mirror is
    fetched once more when its copy of the branch does not, as it may be behind."""
    mirror = mirror_path(state_dir, source)
    check = ("-C", str(mirror), "merge-base", "--is-ancestor", sha, f"refs/heads/{branch}")
    with _locked(mirror):
        try:
            _git(*check, timeout=60)
        except WorkspaceError:
            _git("-C", str(mirror), "fetch", "--prune", "--quiet", "origin")
            try:
                _git(*check, timeout=60)
            except WorkspaceError:
                return False
    return True


def remove(state_dir: Path, source: str, run_id: str) -> bool:
    """Drop the run's checkout; True when there was one."""
    mirror = mirror_path(state_dir, source)
    workspace = workspace_path(state_dir, run_id)
    with _locked(mirror):
        existed = workspace.exists()
        _discard(mirror, workspace)
    if existed:
        log.info("removed the workspace of run %s", run_id)
    return existed


def _discard(mirror: Path, workspace: Path) -> None:
    if workspace.exists():
        shutil.rmtree(workspace)
    if (mirror / "HEAD").is_file():
        try:
            _git("-C", str(mirror), "worktree", "prune", timeout=60)
        except WorkspaceError as exc:
            log.warning("git worktree prune failed in %s: %s", mirror, exc)


def display_source(source: str) -> str:
    """A source for logs and errors: credentials in a URL never leave this process."""
    if "://" in source and "@" in source.split("://", 1)[1].split("/", 1)[0]:
        scheme, rest = source.split("://", 1)
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return source


def is_local(source: str) -> bool:
    """Whether git reads ``source`` as a path on this machine rather than a remote URL
    (git's own rule: a ``scheme://`` is a URL, ``host:path`` before any ``/`` is ssh)."""
    if "://" in source:
        return source.startswith("file://")
    head = source.split("/", 1)[0]
    return ":" not in head


def local_refs(repository: Path) -> list[str]:
    """Every branch and tag of a repository on this machine (``refs/heads/...``,
    ``refs/tags/...``); a folder that is not a repository raises ``WorkspaceError``."""
    out = _git(
        "-C",
        str(repository),
        "for-each-ref",
        "--format=%(refname)",
        "refs/heads",
        "refs/tags",
        timeout=60,
    )
    return out.split()


def has_file_at(repository: Path, ref: str, path: str) -> bool:
    """Whether ``path`` is a file in ``ref`` of a repository on this machine."""
    try:
        kind = _git("-C", str(repository), "cat-file", "-t", f"{ref}:{path}", timeout=60)
    except WorkspaceError:
        return False
    return kind.strip() == "blob"
