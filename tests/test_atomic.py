"""A stage killed mid-write leaves nothing at its final path that looks complete; the next
`dvc repro` rebuilds correctly."""
import hashlib
import os
import signal
import subprocess
import time
import zlib

import datasets
import pyarrow.parquet as pq
import pytest

from conftest import BIN, REPO, md5_tree, run, set_params

HOOKS = REPO / "tests" / "hooks"  # sitecustomize.py: stalls a stage after its first output write

KILL_CASES = {
    # stage, its final output, the temp sibling the writer fills, what the stall hook watches
    "hf_bytes": ("hf_bytes@train", "data/hf_bytes/train", ".vlprep/tmp/*-data-hf_bytes-train", "arrow-stream"),
    "verl": ("verl@train", "data/verl/train", ".vlprep/tmp/*-data-verl-train", "-data-verl-train/"),
}


def start_stalling(repo, stage, target, marker):
    """`dvc repro` of one stage, which stops mid-write (its first output table written, more to come)."""
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "PYTHONPATH": str(HOOKS),
           "VLPREP_TEST_STALL_MARKER": str(marker), "VLPREP_TEST_STALL_ON": target}
    return subprocess.Popen(["dvc", "repro", "--single-item", stage], cwd=repo, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)


def wait_for(path, proc, timeout=300):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if path.exists():
            return True
        if proc.poll() is not None:
            return False
        time.sleep(0.01)
    return False


@pytest.mark.parametrize("case", KILL_CASES)
def test_sigkill_mid_write_then_repro_recovers(scratch_repo, repro_repo, case):
    stage, final, tmp_pattern, target = KILL_CASES[case]
    # More rows than one output write holds, so the stalled stage is truly mid-write; small one-image
    # rows, and only the target under test built, so the recovery `dvc repro` stays short.
    set_params(scratch_repo, **{"raw.rows.train": 1500, "raw.max_images_per_row": 1, "raw.image_size": [32, 64],
                                "targets.verl": ["train"] if case == "verl" else [], "targets.trl": []})
    run(["dvc", "repro", "raw"], scratch_repo)
    if case == "verl":
        run(["dvc", "repro", "hf_bytes@train", "tokenizer"], scratch_repo)
    marker = scratch_repo.parent / "stalled"
    proc = start_stalling(scratch_repo, stage, target, marker)
    try:
        assert wait_for(marker, proc), proc.stdout.read().decode() if proc.stdout else ""
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
        assert pq.read_table(out, columns=["data_source"]).num_rows > 1000  # its parts
    assert "up to date" in run(["dvc", "status"], scratch_repo).stdout


def test_two_full_runs_and_num_proc_give_identical_bytes(scratch_repo, repro_repo):
    """Every stage, forced to rerun (raw and tokenizer included), with num_proc 2: same bytes."""
    set_params(scratch_repo, **{"hf_bytes.num_proc": 2, "verl.num_proc": 2, "trl.num_proc": 2})
    run(["dvc", "repro", "--force"], scratch_repo)
    for part in ["data", "metrics", "plots"]:
        assert md5_tree(scratch_repo / part) == md5_tree(repro_repo / part), part


def test_early_writeback_flushes_a_growing_file_and_leaves_it_whole(tmp_path, monkeypatch):
    """writers.EarlyWriteback (parts are flushed to disk while they are written): the published file
    has every byte, in order, and the CRC and MD5 are those of the whole file, however the background
    follows interleave with the writes."""
    from vlprep.core.writers import EarlyWriteback, atomic_path

    monkeypatch.chdir(tmp_path)
    final = tmp_path / "out" / "part.bin"
    chunks = [bytes([i]) * 4096 for i in range(64)]
    with atomic_path(final) as tmp:
        writeback = EarlyWriteback(tmp, step=8192)
        with open(tmp, "wb") as f:
            for chunk in chunks:
                f.write(chunk)
                f.flush()
                writeback.grew()
        crc, md5 = writeback.finish()
    assert final.read_bytes() == b"".join(chunks)
    assert crc == zlib.crc32(b"".join(chunks))
    assert md5 == hashlib.md5(b"".join(chunks)).hexdigest()
