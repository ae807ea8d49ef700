"""Failures of the run itself, each the way a user meets it: the stage ends in one line naming the stage,
the file and what to do, exits non-zero, publishes nothing, and leaves nothing the next run does not clean.

A stage is caught mid-write deterministically by tests/hooks/sitecustomize.py (it stalls after the first
output table is written), never by guessing a delay."""
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from conftest import BIN, REPO, run, set_params, stage_argv

HOOKS = REPO / "tests" / "hooks"


def env_for(marker: Path | None = None, target: str = "arrow-stream", resume: Path | None = None, **extra) -> dict:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", **extra}
    env.pop("VIRTUAL_ENV", None)
    if marker is not None:
        env.update(PYTHONPATH=str(HOOKS), VLPREP_TEST_STALL_MARKER=str(marker), VLPREP_TEST_STALL_ON=target)
        if resume is not None:
            env["VLPREP_TEST_STALL_RESUME"] = str(resume)
    return env


def start(cmd, cwd, env) -> subprocess.Popen:
    return subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


def wait_for(path: Path, proc: subprocess.Popen, timeout=300) -> None:
    deadline = time.time() + timeout
    while not path.exists():
        if proc.poll() is not None:
            raise AssertionError(f"exited {proc.returncode} before stalling:\n{proc.stdout.read()}\n{proc.stderr.read()}")
        assert time.time() < deadline, "the stage never reached its first write"
        time.sleep(0.02)


def leftovers(workdir: Path) -> list[str]:
    area = workdir / ".vlprep" / "tmp"
    found = [p.name for p in area.iterdir()] if area.is_dir() else []
    return found + [str(p) for p in workdir.glob("data/**/.*tmp*")]


@pytest.fixture(scope="module")
def big_raw(tmp_path_factory, repro_repo) -> Path:
    """A raw train split of 1500 rows (many row groups): a stage takes long enough to be caught mid-run."""
    work = tmp_path_factory.mktemp("big-raw")
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["raw"]["rows"] = {"train": 1500}
    params["raw"]["max_images_per_row"] = 3
    (work / "params.yaml").write_text(yaml.safe_dump(params))
    run(stage_argv("raw", "train"), work)
    return work / "data" / "raw" / "train"


@pytest.fixture
def workdir(tmp_path, big_raw, repro_repo) -> Path:
    """A stage's working directory: params.yaml reading big_raw, the built tokenizer, hf_bytes num_proc 2."""
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["inputs"] = {"train": str(big_raw)}
    params["hf_bytes"]["num_proc"] = 2
    tokenizer = str(repro_repo / "data/tokenizer/qwen2_5_vl")
    params["model"]["tokenizer"] = tokenizer
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    return tmp_path


def hf_bytes(workdir, env=None, check=False):
    return run(stage_argv("hf_bytes", "train"), workdir, check=check, env=env)


@pytest.mark.parametrize("sig, code, words", [
    (signal.SIGINT, 130, "interrupted (Ctrl-C)"),
    (signal.SIGTERM, 143, "terminated (SIGTERM)"),
])
def test_ctrl_c_and_sigterm_end_in_one_line_and_publish_nothing(workdir, sig, code, words):
    marker = workdir / "stalled"
    proc = start(stage_argv("hf_bytes", "train"), workdir, env_for(marker))
    wait_for(marker, proc)
    # Ctrl-C reaches the terminal's whole process group (workers too); `kill` and DVC signal the stage.
    os.killpg(proc.pid, sig) if sig == signal.SIGINT else proc.send_signal(sig)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == code
    assert stderr.strip().splitlines() == [f"hf_bytes[train]: {words}; nothing was published; rerun to build it"]
    assert not (workdir / "data/hf_bytes/train").exists()
    assert leftovers(workdir) == []


def test_sigkill_leftovers_are_ignored_by_dvc_and_git_then_swept_by_the_next_stage_run(scratch_repo):
    marker = scratch_repo.parent / "stalled"
    proc = start(["dvc", "repro", "--force", "--single-item", "hf_bytes@train"], scratch_repo, env_for(marker))
    wait_for(marker, proc)
    os.killpg(proc.pid, signal.SIGKILL)  # dvc, the stage and its workers: no cleanup runs
    proc.wait()
    left = leftovers(scratch_repo)
    assert left and all(".vlprep" not in name and name.split("-")[0].isdigit() for name in left)
    assert not list(scratch_repo.glob("data/**/.*tmp*"))  # nothing beside the outputs

    # DVC restores the killed stage's output from its cache without running it ...
    out = run(["dvc", "repro"], scratch_repo).stdout
    assert "Running stage 'hf_bytes@train'" not in out
    assert "up to date" in run(["dvc", "status"], scratch_repo).stdout
    # ... the leftover is where neither git nor DVC look ...
    assert leftovers(scratch_repo) == left
    untracked = run(["git", "status", "--porcelain", "--untracked-files=all"], scratch_repo).stdout
    assert "??" not in untracked
    # ... and the next run of any stage removes it.
    run(["dvc", "repro", "--force", "--single-item", "verl@test"], scratch_repo)
    assert leftovers(scratch_repo) == []


def test_a_killed_worker_stops_the_stage_in_one_line(workdir):
    marker, resume = workdir / "stalled", workdir / "resume"
    proc = start(stage_argv("hf_bytes", "train"), workdir, env_for(marker, resume=resume))
    wait_for(marker, proc)
    workers = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True).stdout.split()
    assert len(workers) == 2
    os.kill(int(workers[0]), signal.SIGKILL)
    resume.touch()
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 1, stderr
    assert len(stderr.strip().splitlines()) == 1, stderr
    (line,) = stderr.strip().splitlines()
    assert line.startswith("hf_bytes[train]: a worker process died while running ") and "num_proc" in line
    assert not (workdir / "data/hf_bytes/train").exists() and leftovers(workdir) == []


@pytest.mark.parametrize("change", ["removed", "changed"])
def test_an_input_changed_mid_run_stops_the_stage(workdir, big_raw, tmp_path, change):
    raw = tmp_path / "raw"
    shutil.copytree(big_raw, raw)
    params = yaml.safe_load((workdir / "params.yaml").read_text())
    params["inputs"] = {"train": str(raw)}
    params["hf_bytes"]["num_proc"] = 1
    (workdir / "params.yaml").write_text(yaml.safe_dump(params))
    marker, resume = workdir / "stalled", workdir / "resume"
    proc = start(stage_argv("hf_bytes", "train"), workdir, env_for(marker, resume=resume))
    wait_for(marker, proc)
    first = sorted(raw.glob("*.parquet"))[0]
    if change == "removed":
        first.unlink()  # already open: reading goes on, on the old file
    else:
        # rewritten in place, same content: still a new version. Opened without truncating, so the stage's
        # read-ahead, which may be reading this file now, never sees it empty mid-write.
        data = first.read_bytes()
        with open(first, "r+b") as f:
            f.write(data)
        os.utime(first, ns=(time.time_ns(), time.time_ns() + 10**9))
    resume.touch()
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 1
    assert stderr.strip().splitlines() == [
        f"hf_bytes[train]: input {first} was {change} while the stage read it; nothing was published: rerun"]
    assert not (workdir / "data/hf_bytes/train").exists() and leftovers(workdir) == []


def test_disk_full_names_the_output_and_cleans_up(workdir, tmp_path):
    disk = tmp_path / "small-disk"
    disk.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(disk)], capture_output=True).returncode:
        pytest.skip("cannot mount a small tmpfs here (needs root)")
    try:
        shutil.copy(workdir / "params.yaml", disk / "params.yaml")
        proc = hf_bytes(disk)
        assert proc.returncode == 1
        (line,) = proc.stderr.strip().splitlines()
        assert line.startswith("hf_bytes[train]: disk full writing data/")
        assert "free space and rerun" in line
        assert not (disk / "data/hf_bytes/train").exists() and leftovers(disk) == []
    finally:
        subprocess.run(["umount", str(disk)], check=True)


def test_an_unwritable_output_directory_names_it(workdir):
    data = workdir / "data"
    data.mkdir()
    if subprocess.run(["chattr", "+i", str(data)], capture_output=True).returncode:
        pytest.skip("chattr +i is not supported on this file system")
    try:
        proc = hf_bytes(workdir)
    finally:
        subprocess.run(["chattr", "-i", str(data)], check=True)
    assert proc.returncode == 1
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith("hf_bytes[train]: cannot write data/")
    assert line.endswith("make the output directory writable and rerun")


@pytest.mark.parametrize("tokenizer, words", [
    ("data/no/such/tokenizer", "tokenizer directory data/no/such/tokenizer does not exist: run `dvc repro tokenizer`"),
    ("Qwen/Qwen2.5-VL-7B-Instruct", "cannot load tokenizer 'Qwen/Qwen2.5-VL-7B-Instruct'"),
])
def test_a_tokenizer_that_cannot_load_is_one_line(workdir, repro_repo, tokenizer, words):
    set_params(workdir, **{"model.tokenizer": tokenizer})
    (workdir / "data").mkdir(exist_ok=True)
    (workdir / "data/hf_bytes").symlink_to(repro_repo / "data/hf_bytes")
    cmd = [sys.executable, str(REPO / "stages/target.py"), "verl", "train"]
    # No network here, and none wanted: hub access is off as on an offline cluster.
    proc = run(cmd, workdir, check=False, env={"HF_HUB_OFFLINE": "1", "HF_HOME": str(workdir / "hf")})
    assert proc.returncode == 1
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith("verl[train]: ") and words in line
    assert not (workdir / "data/verl").exists()


def test_dvc_repro_twice_at_once_is_refused_by_dvcs_lock(scratch_repo):
    marker = scratch_repo.parent / "stalled"
    first = start(["dvc", "repro", "--force", "--single-item", "hf_bytes@train"], scratch_repo, env_for(marker))
    try:
        wait_for(marker, first)
        second = run(["dvc", "repro"], scratch_repo, check=False)
        assert second.returncode != 0
        # DVC's own lock: the second run stops at once, naming the busy output and the first run's PID.
        assert "is busy, it is being blocked by" in second.stderr and "(PID " in second.stderr, second.stderr
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
