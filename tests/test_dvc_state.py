"""io/dvc_state.py: the md5 a stage computed while writing reaches DVC, which then does not read the
file again, and is never trusted for other bytes. Against the real `dvc` in a real git repo."""
import hashlib
import json
from pathlib import Path

import pyarrow as pa
import pytest

from conftest import run
from vlprep.io import dvc_state


@pytest.fixture
def dvc_repo(tmp_path, monkeypatch):
    run(["git", "init", "-q"], tmp_path)
    run(["dvc", "init", "-q"], tmp_path)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DVC_ROOT", str(tmp_path))  # what `dvc repro` sets for a stage
    monkeypatch.setattr(dvc_state, "MIN_BYTES", 0)  # small files here
    return tmp_path


def dvc_add_md5(repo: Path, rel: str) -> str:
    run(["dvc", "add", "-q", rel], repo)
    return (repo / f"{rel}.dvc").read_text().split("md5: ")[1].split()[0]


def test_dvc_takes_a_recorded_md5_instead_of_hashing_and_rehashes_a_changed_file(dvc_repo):
    data = dvc_repo / "data" / "big.bin"
    data.parent.mkdir()
    data.write_bytes(b"x" * 100_000)
    planted = hashlib.md5(b"not these bytes").hexdigest()  # only a hash DVC did not compute can show it was used
    assert dvc_state.record_hashes({Path("data/big.bin"): planted})
    assert dvc_add_md5(dvc_repo, "data/big.bin") == planted
    run(["dvc", "remove", "-q", "data/big.bin.dvc"], dvc_repo)  # (dvc add linked it into the cache)

    data.write_bytes(data.read_bytes() + b"y")  # other bytes: the entry no longer matches (inode, mtime, size)
    assert dvc_add_md5(dvc_repo, "data/big.bin") == hashlib.md5(b"x" * 100_000 + b"y").hexdigest()


def test_nothing_is_computed_or_recorded_outside_dvc_or_for_small_outputs(dvc_repo, monkeypatch):
    from vlprep.engine.parts import ParquetParts, write_part

    (dvc_repo / "f.bin").write_bytes(b"z" * 1000)
    monkeypatch.setattr(dvc_state, "MIN_BYTES", 1001)
    assert not dvc_state.record_hashes({Path("f.bin"): "0" * 32})
    monkeypatch.setattr(dvc_state, "MIN_BYTES", 0)
    monkeypatch.delenv("DVC_ROOT")
    assert not dvc_state.record_hashes({Path("f.bin"): "0" * 32})
    table = pa.table({"text": ["a", "b"]})
    info = write_part(ParquetParts(table.schema, 100), dvc_repo / "part.parquet", [table])
    assert info.md5 == "" and info.rows == 2  # outside `dvc repro` the stage spends no CPU on md5


def test_a_parted_output_hands_dvc_the_true_md5_of_every_part(dvc_repo):
    """Parted.publish (every stage's split output): what DVC records for each part is the md5 of its
    bytes, without DVC hashing it (the state entry is ours: read before `dvc add` runs)."""
    from dvc.repo import Repo
    from dvc_objects.fs import LocalFileSystem

    from vlprep.engine.parts import write_hf_dataset

    features = {"text": {"dtype": "string", "_type": "Value"}}
    tables = [pa.table({"text": [f"row {i}" * 50 for i in range(j, j + 100)]}) for j in range(0, 300, 100)]
    write_hf_dataset(Path("data/out"), features, tables)
    files = sorted((dvc_repo / "data/out").glob("*.arrow"))
    assert files
    truth = {str(f): hashlib.md5(f.read_bytes()).hexdigest() for f in files}
    repo = Repo(str(dvc_repo))
    try:
        known = {p: repo.state.get(p, LocalFileSystem())[1] for p in truth}
    finally:
        repo.close()
    assert {p: h.value for p, h in known.items()} == truth

    run(["dvc", "add", "-q", "data/out"], dvc_repo)
    dir_md5 = (dvc_repo / "data/out.dvc").read_text().split("md5: ")[1].split()[0]
    manifest = json.loads((dvc_repo / ".dvc/cache/files/md5" / dir_md5[:2] / dir_md5[2:]).read_text())
    assert {e["relpath"]: e["md5"] for e in manifest if e["relpath"].endswith(".arrow")} == \
        {Path(p).name: h for p, h in truth.items()}
