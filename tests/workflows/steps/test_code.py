"""Per-run checkouts of a pushed commit, on real git repositories."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.trigger.hookkit import git, make_repo
from trigger.core.errors import WorkspaceError
from workflows.steps import code as workspace


def _head(folder: Path) -> str:
    return git(folder, "rev-parse", "HEAD")


def test_the_exact_commit_is_checked_out_and_removed(tmp_path: Path) -> None:
    upstream = tmp_path / "upstream"
    first, second = make_repo(upstream)
    state = tmp_path / "state"
    project = workspace.prepare(state, str(upstream), first, "run:orders:a", "pipelines/orders")
    assert (project / "models.py").read_text() == "VERSION = 1\n"
    assert _head(project) == first
    other = workspace.prepare(state, str(upstream), second, "run:orders:b", "pipelines/orders")
    assert (other / "models.py").read_text() == "VERSION = 2\n"
    assert workspace.remove(state, str(upstream), "run:orders:a") is True
    assert not project.exists() and other.exists()
    assert workspace.remove(state, str(upstream), "run:orders:a") is False
    worktrees = git(workspace.mirror_path(state, str(upstream)), "worktree", "list")
    assert str(workspace.workspace_path(state, "run:orders:a")) not in worktrees


def test_prepare_is_idempotent_and_rebuilds_a_removed_workspace(tmp_path: Path) -> None:
    upstream = tmp_path / "upstream"
    first, _ = make_repo(upstream)
    state = tmp_path / "state"
    args = (state, str(upstream), first, "run:x:1", "pipelines/orders")
    project = workspace.prepare(*args)
    marker = project / "marker"
    marker.write_text("kept")
    assert workspace.prepare(*args) == project and marker.exists()  # reused as is
    shutil.rmtree(workspace.workspace_path(state, "run:x:1"))  # gone behind our back
    assert workspace.prepare(*args) == project
    assert _head(project) == first and not marker.exists()


def test_a_commit_pushed_after_the_mirror_was_made_is_fetched(tmp_path: Path) -> None:
    upstream = tmp_path / "upstream"
    first, _ = make_repo(upstream)
    state = tmp_path / "state"
    workspace.prepare(state, str(upstream), first, "run:x:1", "pipelines/orders")
    (upstream / "pipelines/orders/models.py").write_text("VERSION = 3\n")
    git(upstream, "commit", "-q", "-am", "third")
    third = _head(upstream)
    project = workspace.prepare(state, str(upstream), third, "run:x:2", "pipelines/orders")
    assert (project / "models.py").read_text() == "VERSION = 3\n"


@pytest.mark.parametrize(
    ("source", "sha", "subdir", "message"),
    [
        ("SRC", "HEAD", ".", "40-character"),
        ("SRC", "--upload-pack=touch /tmp/pwned" + "0" * 10, ".", "40-character"),
        ("--upload-pack=touch /tmp/pwned", "a" * 40, ".", "clone URL"),
        ("SRC", "a" * 40, "../../etc", "inside the repository"),
        ("SRC", "a" * 40, "/etc", "inside the repository"),
    ],
)
def test_hostile_inputs_never_reach_git(
    tmp_path: Path, source: str, sha: str, subdir: str, message: str
) -> None:
    upstream = tmp_path / "upstream"
    make_repo(upstream)
    source = source.replace("SRC", str(upstream))
    with pytest.raises(WorkspaceError, match=message):
        workspace.prepare(tmp_path / "state", source, sha, "run:x:1", subdir)
    assert not (tmp_path / "state" / "git").exists()


def test_an_unknown_commit_or_folder_is_a_clear_error(tmp_path: Path) -> None:
    upstream = tmp_path / "upstream"
    first, _ = make_repo(upstream)
    state = tmp_path / "state"
    with pytest.raises(WorkspaceError, match="is not in"):
        workspace.prepare(state, str(upstream), "f" * 40, "run:x:1", ".")
    with pytest.raises(WorkspaceError, match="has no folder 'nope'"):
        workspace.prepare(state, str(upstream), first, "run:x:2", "nope")


def test_a_commit_missing_after_a_fresh_fetch_is_permanent(tmp_path: Path) -> None:
    upstream = tmp_path / "upstream"
    make_repo(upstream)
    with pytest.raises(WorkspaceError) as caught:
        workspace.prepare(tmp_path / "state", str(upstream), "f" * 40, "run:x:1", ".")
    assert caught.value.retryable is False
    assert "after a fresh fetch" in str(caught.value)


def test_a_fetch_that_fails_is_transient(tmp_path: Path) -> None:
    upstream = tmp_path / "upstream"
    first, _ = make_repo(upstream)
    state = tmp_path / "state"
    workspace.prepare(state, str(upstream), first, "run:x:1", ".")  # the mirror exists now
    shutil.rmtree(upstream)  # the source goes away: the next fetch fails
    with pytest.raises(WorkspaceError) as caught:
        workspace.prepare(state, str(upstream), "f" * 40, "run:x:2", ".")
    assert caught.value.retryable is True
    assert "git fetch failed" in str(caught.value)


def test_credentials_in_a_source_url_stay_out_of_errors(tmp_path: Path) -> None:
    source = "http://user:hunter2@127.0.0.1:9/acme/lakehouse.git"
    with pytest.raises(WorkspaceError) as caught:
        workspace.prepare(tmp_path / "state", source, "a" * 40, "run:x:1", ".")
    assert "hunter2" not in str(caught.value)
