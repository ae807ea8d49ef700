"""engine: ray (docs/ray.md): the same stages as Ray tasks, one per output part, give the
same bytes as the local engine (outputs, rejects, metrics, plots), in a Ray started by the stage and on
a real local cluster; a killed worker's part is retried; an unreachable cluster or an interrupted stage
fails in one line and publishes nothing."""
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from conftest import BIN, REPO, md5_tree, run, set_params, stage_argv
from test_adversarial import adversarial_project
from vlprep.engine.parts import PartInfo, combined_crc, crc32_combine, plan_parts
from vlprep.engine.ray_engine import RAY_ENV
from vlprep.io.sources import RowGroup

pytest.importorskip("ray")  # the optional extra; CI installs it (.ci/run)

HOOKS = REPO / "tests" / "hooks"  # sitecustomize.py: stalls the first output write (see there)
TARGETS = ("hf_bytes", "verl", "trl")
COMPARED = ("data/hf_bytes", "data/verl", "data/trl", "data/rejects", "metrics", "plots")


def engine(name: str, address: str | None = None, part_rows: int = 1, num_proc: int = 2) -> dict:
    # part_rows 1: each input unit its own part, so every output has several parts (3 shards here)
    return {s: {"engine": name, "ray_address": address, "part_rows": part_rows, "num_proc": num_proc} for s in TARGETS}


def verl_on_ray() -> dict:
    """Only verl on Ray (the stage the kill and Ctrl-C tests stop); the stages before and after it local."""
    return {**engine("local"), "verl": engine("ray")["verl"]}


def build(work: Path, env: dict | None = None) -> None:
    for stage in ("hf_bytes", "select", "verl", "trl"):
        run(stage_argv(stage, "train"), work, env=env, timeout=600)


def outputs(work: Path) -> dict:
    return {part: md5_tree(work / part) for part in COMPARED}


@pytest.fixture(scope="module")
def tokenizer(sample_tokenizer) -> str:
    return sample_tokenizer


@pytest.fixture(scope="module")
def local_outputs(tokenizer, tmp_path_factory) -> dict:
    work = tmp_path_factory.mktemp("local")
    adversarial_project(work, tokenizer, **engine("local"))
    build(work)
    return outputs(work)


def test_parts_are_whole_units_of_at_least_part_rows():
    units = [RowGroup("f", i, 10 * i, rows) for i, rows in enumerate([3, 4, 10, 1, 1])]
    assert [[u.row_group for u in p] for p in plan_parts(units, 5)] == [[0, 1], [2], [3, 4]]
    assert plan_parts(units, None) == [units]
    assert plan_parts([], 5) == [[]]  # one (empty) part: the split still has a file


def test_the_fingerprint_of_parts_is_the_crc_of_their_concatenation():
    import zlib

    blobs = [os.urandom(n) for n in (0, 1, 1000, 77777)]
    infos = [PartInfo(0, len(b), zlib.crc32(b)) for b in blobs]
    assert combined_crc(infos) == zlib.crc32(b"".join(blobs))
    assert crc32_combine(zlib.crc32(b"ab"), zlib.crc32(b"cd"), 2) == zlib.crc32(b"abcd")


def test_in_process_ray_gives_the_local_bytes_on_adversarial_data(tokenizer, local_outputs, tmp_path):
    adversarial_project(tmp_path, tokenizer, **engine("ray"))
    build(tmp_path, env={"RAY_ADDRESS": ""})  # null address, no cluster named: Ray in the stage
    assert len(list((tmp_path / "data/verl/train").glob("part-*.parquet"))) > 1
    assert outputs(tmp_path) == local_outputs


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ray_cluster():
    """A real Ray cluster on 127.0.0.1 (`ray start --head`), its own temp dir and port, stopped by its
    PID (never `ray stop`, which would stop every Ray of this user)."""
    port, temp = free_port(), tempfile.mkdtemp(prefix="vlprep-ray-t", dir="/tmp")
    env = {**os.environ, **RAY_ENV}
    env.pop("RAY_ADDRESS", None)
    log = open(Path(temp) / "start.log", "w")
    proc = subprocess.Popen([str(BIN / "ray"), "start", "--head", "--block", "--node-ip-address=127.0.0.1",
                             f"--port={port}", "--num-cpus=2", "--include-dashboard=false", f"--temp-dir={temp}",
                             "--disable-usage-stats"], env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, Path(temp, "start.log").read_text()
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "ray start: no GCS port after 120 s"
                time.sleep(0.2)
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()  # SIGTERM to `ray start --block`: it stops the processes it started
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # anything of its own session left behind
        except ProcessLookupError:
            pass
        log.close()
        shutil.rmtree(temp, ignore_errors=True)


def test_a_real_local_cluster_gives_the_local_bytes(tokenizer, local_outputs, ray_cluster, tmp_path):
    adversarial_project(tmp_path, tokenizer, **engine("ray", address=ray_cluster))
    build(tmp_path)
    assert outputs(tmp_path) == local_outputs


def stalled_stage(work: Path, marker: Path, stage: str = "verl") -> subprocess.Popen:
    """The stage, run directly, stopped by the test hook in its first part's first write (in a Ray
    worker: the hook reaches workers through PYTHONPATH, which Ray's processes inherit)."""
    env = {**os.environ, "PYTHONPATH": str(HOOKS), "VLPREP_TEST_STALL_MARKER": str(marker),
           "VLPREP_TEST_STALL_ON": f"-data-{stage}-train/", "RAY_ADDRESS": ""}
    proc = subprocess.Popen(stage_argv(stage, "train"), cwd=work, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while not (marker.exists() and marker.read_text()):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the stage never reached its first write"
        time.sleep(0.05)
    return proc


def test_a_killed_worker_is_retried_and_the_output_is_the_same(tokenizer, local_outputs, tmp_path):
    adversarial_project(tmp_path, tokenizer, **verl_on_ray())
    for stage in ("hf_bytes", "select"):
        run(stage_argv(stage, "train"), tmp_path)
    marker = tmp_path.parent / f"stalled-{tmp_path.name}"  # one per test: the hook stalls only once
    proc = stalled_stage(tmp_path, marker)
    worker = int(marker.read_text())
    assert worker != proc.pid  # a Ray worker writes the part, not the stage's process
    os.kill(worker, signal.SIGKILL)
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    run(stage_argv("trl", "train"), tmp_path)
    assert outputs(tmp_path) == local_outputs


def test_an_interrupted_ray_stage_publishes_nothing(tokenizer, tmp_path):
    adversarial_project(tmp_path, tokenizer, **verl_on_ray())
    for stage in ("hf_bytes", "select"):
        run(stage_argv(stage, "train"), tmp_path)
    proc = stalled_stage(tmp_path, tmp_path.parent / f"stalled-{tmp_path.name}")
    proc.send_signal(signal.SIGINT)  # Ctrl-C
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 130, err
    assert err.strip().splitlines()[-1] == "verl[train]: interrupted (Ctrl-C); nothing was published; rerun to build it"
    assert not (tmp_path / "data/verl/train").exists()
    assert not list((tmp_path / ".vlprep/tmp").glob("*-data-verl-train*"))  # no part left in the work area


def test_an_unreachable_cluster_fails_in_one_line_naming_it(tokenizer, tmp_path):
    address = f"127.0.0.1:{free_port()}"  # nothing listens there
    adversarial_project(tmp_path, tokenizer, **engine("ray", address=address))
    proc = run(stage_argv("hf_bytes", "train"), tmp_path, check=False, timeout=180)
    assert proc.returncode == 1
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith("hf_bytes[train]: Ray cluster at ") and address in line
    assert not (tmp_path / "data/hf_bytes/train").exists()


def test_ray_address_comes_from_RAY_ADDRESS_when_the_param_is_null(tokenizer, tmp_path):
    address = f"127.0.0.1:{free_port()}"
    adversarial_project(tmp_path, tokenizer, **engine("ray"))
    proc = run(stage_argv("hf_bytes", "train"), tmp_path, check=False, env={"RAY_ADDRESS": address}, timeout=180)
    assert proc.returncode == 1 and address in proc.stderr


def test_shuffle_and_max_rows_stop_engine_ray_at_start(tokenizer, tmp_path):
    adversarial_project(tmp_path, tokenizer, **verl_on_ray())
    run(stage_argv("hf_bytes", "train"), tmp_path)
    run(stage_argv("select", "train"), tmp_path)
    for key, value in (("verl.shuffle", True), ("verl.max_rows", 5)):
        set_params(tmp_path, **{"verl.shuffle": False, "verl.max_rows": None, key: value})
        proc = run(stage_argv("verl", "train"), tmp_path, check=False)
        (line,) = proc.stderr.strip().splitlines()
        assert proc.returncode == 1 and "work with verl.engine: local only" in line
