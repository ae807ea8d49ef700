"""Shared fixtures: a real copy of the project in a real git repo, driven by the real `dvc` CLI.

The suite runs on every core with pytest-xdist (pyproject: addopts `-n 2 --dist loadscope`: a module's
tests stay on one worker, so its module fixtures are built once; SLOW_FIRST below). What several workers need is built
once for the whole run: the `dvc repro` of the sample project (`repro_repo`, under a file lock in the
run's shared temp dir, then copied per worker) and the trainer virtualenvs (tests/compat/
conftest_helpers.py, started in the background as soon as the run has collected a trainer test)."""
from __future__ import annotations

import fcntl
import os
import queue
import shutil
import signal
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent  # the venv's bin: its python and dvc run the stages
COMPAT = Path(__file__).resolve().parent / "compat"
sys.path.insert(0, str(COMPAT))
import conftest_helpers  # noqa: E402

# The trainer virtualenvs the tests of each module need (their fixtures call trainer_python(name)).
TRAINER_VENVS = {
    "test_trainer_compat.py": ("trainers",),
    "test_reward_compat.py": ("trainers",),
    "test_trainers2_compat.py": ("llamafactory", "swift"),
}

# Generating examples on a machine that is busy with other work (both cores taken by the other
# xdist worker, a CI neighbour) must not fail a property test: no wall-clock health check, no deadline.
settings.register_profile("vlprep", suppress_health_check=[HealthCheck.too_slow], deadline=None)
settings.load_profile("vlprep")


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


def is_xdist_worker(config) -> bool:
    return hasattr(config, "workerinput")


def run_temp(tmp_path_factory) -> Path:
    """The temp dir of the whole run: with xdist, the parent of every worker's basetemp."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


@contextmanager
def run_lock(tmp_path_factory, name: str):
    """An exclusive lock for the whole run (all xdist workers), around building something once."""
    with open(run_temp(tmp_path_factory) / f"{name}.lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        yield


@pytest.fixture(scope="session")
def repro_repo(tmp_path_factory) -> Path:
    """A project copy on which `dvc repro` has completed (shared: treat as read-only).

    Built once per run: the first worker to get here runs `dvc repro`, the others wait on the lock.
    Each xdist worker then works on its own copy (tests run `dvc status` and the like in it, and DVC
    locks the repo while they do)."""
    built = run_temp(tmp_path_factory) / "repro-shared" / "project"
    with run_lock(tmp_path_factory, "repro"):
        if not (built.parent / "done").exists():
            shutil.rmtree(built.parent, ignore_errors=True)  # a failed attempt's leftovers
            repo = copy_project(built)
            run(["dvc", "repro"], repo)
            (built.parent / "done").touch()
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        return built
    mine = tmp_path_factory.mktemp("repro") / "project"
    shutil.copytree(built, mine, symlinks=True)
    return mine


@pytest.fixture(scope="session")
def sample_tokenizer(tmp_path_factory) -> str:
    """The tokenizer the `tokenizer` stage writes (data/tokenizer/qwen2_5_vl), built once per run on its
    own, so tests that need only it do not wait for `repro_repo`'s whole `dvc repro` (shared: read-only)."""
    built = run_temp(tmp_path_factory) / "tokenizer-shared"
    with run_lock(tmp_path_factory, "tokenizer"):
        if not (built / "done").exists():
            shutil.rmtree(built, ignore_errors=True)
            run(["python", "-m", "vlprep.prompting.qwen_tokenizer", str(built / "qwen2_5_vl")], REPO)
            (built / "done").touch()
    return str(built / "qwen2_5_vl")


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


# --- trainer virtualenvs, built in the background ----------------------------------------------------
# Lines from the build threads, printed by the main thread between test reports (pytest's terminal
# reporter is not thread-safe, and output from a thread during a test would be captured with the test).
_venv_lines: "queue.Queue[str]" = queue.Queue()


def _start_trainer_venvs(config, test_files) -> None:
    names = sorted({n for f in test_files for n in TRAINER_VENVS.get(Path(f).name, ())})
    if not names:
        return
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(f"trainer venvs: building {', '.join(names)} in the background "
                            f"(cache {conftest_helpers.venv_cache_dir()})")
    conftest_helpers.start_builds(names, report=_venv_lines.put)


def _print_venv_lines(config) -> None:
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    while True:
        try:
            line = _venv_lines.get_nowait()
        except queue.Empty:
            return
        if reporter is not None:
            reporter.write_line(line)


# The modules that take minutes (full `dvc repro` runs, Ray, the trainers), longest first, run before the
# rest so that the two xdist workers finish together: loadscope would order modules by their number of
# tests and leave these few-test modules as a long tail (pyproject: --no-loadscope-reorder keeps this order).
SLOW_FIRST = ("test_dvc_reruns.py", "test_dvc_workflows.py", "test_ray_engine.py", "test_trainer_compat.py", "test_ray_dvc.py",
              "test_atomic.py", "test_own_data.py", "test_curation.py", "test_trainers2_compat.py",
              "test_selection_rebalance.py", "test_adversarial.py")


def pytest_collection_modifyitems(items):
    rank = {name: i for i, name in enumerate(SLOW_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(SLOW_FIRST)))  # stable: else collection order


def pytest_collection_finish(session):
    """Without xdist: start the builds the collected tests need as soon as collection ends."""
    if not is_xdist_worker(session.config):
        _start_trainer_venvs(session.config, {str(item.path) for item in session.items})


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_node_collection_finished(node, ids):
    """xdist controller: the first worker's collection says which tests the run has; start the builds
    here, in the controller, while the workers run the other tests (their fixtures wait for them)."""
    config = node.config
    if getattr(config, "_vlprep_venvs_started", False):
        return
    config._vlprep_venvs_started = True
    _start_trainer_venvs(config, {nodeid.split("::")[0] for nodeid in ids})


def pytest_runtest_logreport(report):
    if _CONFIG:
        _print_venv_lines(_CONFIG[0])


def pytest_configure(config):
    _CONFIG[:] = [config]
    # A run started in the background by a script (`cmd &` without job control, nohup ... &) inherits
    # SIGINT ignored, and so does every stage a test starts: the Ctrl-C tests would then wait out their
    # timeout on a stage that cannot be interrupted. The tests' processes get Ctrl-C as from a terminal.
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def pytest_sessionfinish(session):
    _print_venv_lines(session.config)


_CONFIG: list = []
