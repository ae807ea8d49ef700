"""A stage killed mid-write leaves nothing at its final path that looks complete; the next
`dvc repro` rebuilds correctly."""
import os
import signal
import subprocess
import time

import datasets
import pyarrow.parquet as pq
import pytest

from conftest import BIN, md5_tree, run, set_params

KILL_CASES = {
    # stage, its final output, the temp sibling the writer fills
    "hf_bytes": ("hf_bytes@train", "data/hf_bytes/train", "data/hf_bytes/.train.tmp-*"),
    "verl": ("verl@train", "data/verl/train.parquet", "data/verl/.train.parquet.tmp-*"),
}


def wait_for(repo, pattern, proc, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if list(repo.glob(pattern)):
            return True
        if proc.poll() is not None:
            return False
        time.sleep(0.005)
    return False


@pytest.mark.parametrize("case", KILL_CASES)
def test_sigkill_mid_write_then_repro_recovers(scratch_repo, repro_repo, case):
    stage, final, tmp_pattern = KILL_CASES[case]
    # Enough rows that the write takes seconds, so the kill lands while the temp output is growing.
    set_params(scratch_repo, **{"raw.rows.train": 1500, "raw.max_images_per_row": 3})
    run(["dvc", "repro", "raw"], scratch_repo)
    if case == "verl":
        run(["dvc", "repro", "hf_bytes@train", "tokenizer"], scratch_repo)
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    proc = subprocess.Popen(["dvc", "repro", "--single-item", stage], cwd=scratch_repo, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        assert wait_for(scratch_repo, tmp_pattern, proc), proc.stdout.read().decode() if proc.stdout else ""
        time.sleep(0.2)
        os.killpg(proc.pid, signal.SIGKILL)  # the whole group: dvc and the stage's python
    finally:
        proc.wait()
    out = scratch_repo / final
    # The temp sibling may remain (a kill runs no cleanup), but the final path holds nothing valid.
    assert not out.exists(), "a killed stage published its output"
    assert list(scratch_repo.glob(tmp_pattern))

    result = run(["dvc", "repro"], scratch_repo)
    assert f"Running stage '{stage}'" in result.stdout
    assert not list(scratch_repo.glob(tmp_pattern))  # the next run cleared the leftovers
    if case == "hf_bytes":
        assert len(datasets.load_from_disk(str(out))) > 1000
    else:
        assert pq.ParquetFile(out).metadata.num_rows > 1000
    assert "up to date" in run(["dvc", "status"], scratch_repo).stdout


def test_two_full_runs_and_num_proc_give_identical_bytes(scratch_repo, repro_repo):
    """Every stage, forced to rerun (raw and tokenizer included), with num_proc 2: same bytes."""
    set_params(scratch_repo, **{"hf_bytes.num_proc": 2, "verl.num_proc": 2, "trl.num_proc": 2})
    run(["dvc", "repro", "--force"], scratch_repo)
    for part in ["data", "metrics", "plots"]:
        assert md5_tree(scratch_repo / part) == md5_tree(repro_repo / part), part
