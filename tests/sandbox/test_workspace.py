"""The .aido workspace: discovery, creation, sandbox paths, the active pointer (store/workspace.py)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from aido.errors import UsageError, WorkspaceError
from aido.exit_codes import ExitCode
from aido.store.workspace import DIRNAME, SandboxPaths, Workspace

SID = "abcdefabcdef"
OTHER = "0123456789ab"


def _make_workspace(root: Path) -> Workspace:
    (root / DIRNAME / "sandboxes").mkdir(parents=True)
    return Workspace(root.resolve())


def _make_sandbox(workspace: Workspace, sandbox_id: str) -> SandboxPaths:
    paths = workspace.sandbox(sandbox_id)
    paths.root.mkdir()
    paths.metadata.write_text("{}")
    return paths


def test_find_in_the_directory_itself(tmp_path: Path) -> None:
    workspace = _make_workspace(tmp_path)
    assert Workspace.find(tmp_path) == workspace


def test_find_walks_up_to_the_nearest_ancestor(tmp_path: Path) -> None:
    outer = _make_workspace(tmp_path)
    inner_root = tmp_path / "a" / "b"
    inner = _make_workspace(inner_root)
    deep = inner_root / "c" / "d" / "e"
    deep.mkdir(parents=True)
    assert Workspace.find(deep) == inner
    assert Workspace.find(tmp_path / "a") == outer


def test_find_ignores_an_aido_dir_without_sandboxes(tmp_path: Path) -> None:
    outer = _make_workspace(tmp_path)
    nested = tmp_path / "project"
    (nested / DIRNAME).mkdir(parents=True)  # not a workspace: no sandboxes/
    assert Workspace.find(nested) == outer


def test_find_ignores_a_file_named_sandboxes(tmp_path: Path) -> None:
    (tmp_path / DIRNAME).mkdir()
    (tmp_path / DIRNAME / "sandboxes").write_text("")
    found = Workspace.find(tmp_path)
    assert found is None or found.root != tmp_path.resolve()


def test_find_defaults_to_the_current_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    workspace = _make_workspace(tmp_path)
    (tmp_path / "sub").mkdir()
    monkeypatch.chdir(tmp_path / "sub")
    assert Workspace.find() == workspace


def test_require_without_a_workspace(project: Path) -> None:
    # `project` is a fresh tmp directory; nothing above it in /tmp is a workspace.
    assert Workspace.find(project) is None
    with pytest.raises(WorkspaceError) as caught:
        Workspace.require(project)
    assert caught.value.message == "no aido workspace here or in any parent directory"
    assert caught.value.hint == "create one with a sandbox: `aido sandbox up`"
    assert caught.value.exit_code == ExitCode.SANDBOX_STATE == 3


def test_find_or_create_creates_layout_and_gitignore(project: Path) -> None:
    workspace = Workspace.find_or_create(project)
    assert workspace.root == project.resolve()
    assert workspace.dir == project.resolve() / ".aido"
    assert workspace.sandboxes.is_dir()
    gitignore = workspace.dir / ".gitignore"
    assert gitignore.is_file()
    assert "*" in gitignore.read_text().splitlines()
    assert Workspace.find(project) == workspace
    # No temporary files left behind by the atomic write.
    assert sorted(p.name for p in workspace.dir.iterdir()) == [".gitignore", "sandboxes"]


def test_find_or_create_reuses_an_ancestor_and_keeps_gitignore(project: Path) -> None:
    workspace = Workspace.find_or_create(project)
    (workspace.dir / ".gitignore").write_text("custom\n")
    sub = project / "src" / "pkg"
    sub.mkdir(parents=True)
    assert Workspace.find_or_create(sub) == workspace
    assert not (sub / DIRNAME).exists()
    assert Workspace.find_or_create(project) == workspace
    assert (workspace.dir / ".gitignore").read_text() == "custom\n"


def test_find_or_create_reports_unwritable_place(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(WorkspaceError, match=r"^cannot create the workspace "):
        Workspace.find_or_create(blocker)  # a file cannot hold .aido/


def test_sandbox_paths(tmp_path: Path) -> None:
    workspace = _make_workspace(tmp_path)
    paths = workspace.sandbox(SID)
    root = workspace.sandboxes / SID
    assert paths.root == root
    assert (paths.inputs, paths.work, paths.outputs, paths.runs) == (
        root / "inputs",
        root / "work",
        root / "outputs",
        root / "runs",
    )
    assert paths.metadata == root / "sandbox.json"
    assert paths.events == root / "events.log"
    assert paths.lock == root / ".lock"
    assert paths.run_dir("run-001") == root / "runs" / "run-001"
    assert workspace.events == workspace.dir / "events.log"
    assert workspace.config_file == workspace.dir / "config.json"


@pytest.mark.parametrize("bad", ["..", "../../etc", "abc/def", "ABCDEFABCDEF", "abcdefabcde\x00", ""])
def test_sandbox_validates_ids(tmp_path: Path, bad: str) -> None:
    workspace = _make_workspace(tmp_path)
    with pytest.raises(UsageError, match=r"^invalid sandbox id "):
        workspace.sandbox(bad)


def test_sandbox_symlink_escaping_the_workspace_is_refused(tmp_path: Path) -> None:
    workspace = _make_workspace(tmp_path / "ws")
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (workspace.sandboxes / SID).symlink_to(outside)
    with pytest.raises(WorkspaceError, match=r"escapes the workspace"):
        workspace.sandbox(SID)


def test_sandbox_ids_lists_only_real_sandboxes(tmp_path: Path) -> None:
    workspace = _make_workspace(tmp_path)
    _make_sandbox(workspace, OTHER)
    _make_sandbox(workspace, SID)
    (workspace.sandboxes / "zzzzzzzzzzzz").mkdir()  # no sandbox.json
    (workspace.sandboxes / "Not-An-Id").mkdir()
    (workspace.sandboxes / "Not-An-Id" / "sandbox.json").write_text("{}")
    (workspace.sandboxes / ".hidden").write_text("")
    assert workspace.sandbox_ids() == [OTHER, SID]


def test_sandbox_ids_without_sandboxes_dir(tmp_path: Path) -> None:
    assert Workspace(tmp_path).sandbox_ids() == []


def test_active_pointer_set_read_clear(tmp_path: Path) -> None:
    workspace = _make_workspace(tmp_path)
    assert workspace.active_id() is None
    workspace.set_active(SID)
    assert workspace.active_id() == SID
    assert (workspace.dir / "active").read_text() == f"{SID}\n"
    workspace.set_active(OTHER)
    assert workspace.active_id() == OTHER
    workspace.set_active(None)
    assert workspace.active_id() is None
    assert not (workspace.dir / "active").exists()
    workspace.set_active(None)  # clearing twice is fine
    assert workspace.active_id() is None


@pytest.mark.parametrize(
    "content", [b"../../etc\n", b"ABCDEFABCDEF", b"\xff\xfe", b"", b"abcdefabcdef extra"]
)
def test_active_pointer_with_garbage_is_ignored(tmp_path: Path, content: bytes) -> None:
    workspace = _make_workspace(tmp_path)
    (workspace.dir / "active").write_bytes(content)
    assert workspace.active_id() is None


def test_active_pointer_replaces_a_planted_symlink(tmp_path: Path) -> None:
    workspace = _make_workspace(tmp_path)
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    (workspace.dir / "active").symlink_to(victim)
    workspace.set_active(SID)
    assert victim.read_text() == "keep me"
    assert not (workspace.dir / "active").is_symlink()
    assert workspace.active_id() == SID


def test_active_pointer_is_a_regular_file_when_set(tmp_path: Path) -> None:
    workspace = _make_workspace(tmp_path)
    workspace.set_active(SID)
    assert os.path.isfile(workspace.dir / "active")
    assert not os.path.islink(workspace.dir / "active")


def test_a_garbage_active_pointer_is_an_error_only_where_a_sandbox_is_chosen(tmp_path: Path) -> None:
    workspace = Workspace.find_or_create(tmp_path)
    (workspace.dir / "active").write_text("../../etc\n")
    assert workspace.active_id() is None  # listing and destroying still work
    with pytest.raises(WorkspaceError) as caught:
        workspace.active_id(strict=True)
    assert "does not hold a sandbox id" in caught.value.message
    assert caught.value.hint is not None and "--sandbox" in caught.value.hint
