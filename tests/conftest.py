"""Shared fixtures: a real copy of the project in a real git repo, driven by the real `dvc` CLI."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent  # the venv's bin: its python and dvc run the stages


def run(cmd: list[str] | str, cwd: Path, check: bool = True, env: dict | None = None, timeout: int = 900) -> subprocess.CompletedProcess:
    """Run a command the way a user would in the project venv; on failure show everything it printed."""
    full_env = {**os.environ, **(env or {})}
    full_env["PATH"] = f"{BIN}{os.pathsep}{full_env.get('PATH', '')}"
    full_env.pop("VIRTUAL_ENV", None)
    proc = subprocess.run(
        cmd, cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout, shell=isinstance(cmd, str)
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"{cmd} exited {proc.returncode}\n--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}")
    return proc


def git_commit_all(repo: Path, message: str) -> None:
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-q", "--allow-empty", "-m", message], repo)


def copy_project(dest: Path) -> Path:
    """What a fresh clone has (files git tracks, plus new files not ignored) in a new git repo.
    DVC outputs and caches are git-ignored, so they are not copied."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO, capture_output=True, check=True
    ).stdout.decode().split("\0")
    dest.mkdir(parents=True, exist_ok=True)
    for rel in filter(None, listed):
        src = REPO / rel
        if src.is_file():  # (a file deleted but not yet committed is listed too)
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    run(["git", "init", "-q", "-b", "main"], dest)
    run(["git", "config", "user.name", "vlprep tests"], dest)  # dvc exp commits need an identity
    run(["git", "config", "user.email", "tests@vlprep.invalid"], dest)
    git_commit_all(dest, "project")
    return dest


@pytest.fixture(scope="session")
def repro_repo(tmp_path_factory) -> Path:
    """A project copy on which `dvc repro` has completed (shared: treat as read-only)."""
    repo = copy_project(tmp_path_factory.mktemp("repro") / "project")
    run(["dvc", "repro"], repo)
    return repo


ALL_TARGETS = {"targets.llamafactory": ["train", "test"], "targets.swift": ["train"], "targets.swift_grpo": ["train"]}


@pytest.fixture(scope="session")
def all_targets_repo(repro_repo, tmp_path_factory) -> Path:
    """The repro'd project with every target switched on (only their stages and the products rerun;
    shared: treat as read-only)."""
    repo = tmp_path_factory.mktemp("all_targets") / "project"
    shutil.copytree(repro_repo, repo, symlinks=True)
    set_params(repo, **ALL_TARGETS)
    run(["dvc", "repro"], repo)
    return repo


@pytest.fixture
def scratch_repo(repro_repo, tmp_path) -> Path:
    """A private, writable copy of the repro'd project (outputs, cache and git history included)."""
    dest = tmp_path / "project"
    shutil.copytree(repro_repo, dest, symlinks=True)
    return dest


@pytest.fixture
def committed_repo(scratch_repo):
    """The repro'd copy with its outputs' dvc.lock committed: a baseline for experiments and clones."""
    git_commit_all(scratch_repo, "repro")
    return scratch_repo


def pushed_and_pulled(repo: Path, tmp_path: Path) -> Path:
    """Push repo's data to a local remote, clone the repo and pull: the clone, checked to hold the same
    files with nothing left for DVC to do."""
    run(["dvc", "remote", "add", "-d", "shared", str(tmp_path / "remote")], repo)
    git_commit_all(repo, "remote")
    run(["dvc", "push"], repo)
    clone = tmp_path / "clone"
    run(["git", "clone", "-q", str(repo), str(clone)], tmp_path)
    run(["dvc", "pull"], clone)
    assert md5_tree(clone / "data") == md5_tree(repo / "data")
    assert "up to date" in run(["dvc", "status"], clone).stdout
    return clone


def set_params(repo: Path, **dotted) -> None:
    """Edit params.yaml in a test copy: set_params(repo, **{"hf_bytes.num_proc": 2})."""
    import yaml

    path = repo / "params.yaml"
    params = yaml.safe_load(path.read_text())
    for key, value in dotted.items():
        node = params
        *parents, last = key.split(".")
        for part in parents:
            node = node[part]
        node[last] = value
    path.write_text(yaml.safe_dump(params, sort_keys=False))


def target_config(name: str, **update):
    """The shipped params of target `name` and the model, as the target stage reads them (targets.base.Config),
    with some keys changed: target_config("trl", tokenizer=dir, max_total_tokens=50)."""
    from vlprep.core.params import load_section
    from vlprep.targets.base import Config

    return Config(load_section(name, REPO / "params.yaml"), load_section("model", REPO / "params.yaml")).replace(**update)


def stage_argv(stage: str, split: str) -> list[str]:
    """The command dvc.yaml runs for stage@split (the stage script by its path in this repo), so tests
    that run a stage directly run it as DVC does."""
    import yaml

    body = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"][stage]
    cmd = body.get("do", body)["cmd"].replace("${key}", split).replace("${item}", split).split()
    return [cmd[0], str(REPO / cmd[1]), *cmd[2:]]


def md5_tree(root: Path) -> dict[str, str]:
    import hashlib

    return {
        str(p.relative_to(root)): hashlib.md5(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }
