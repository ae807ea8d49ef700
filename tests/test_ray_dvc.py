"""engine: ray through `dvc repro` (docs/ray.md): inputs on a real S3 server read by Ray workers, and
every stage on Ray reproducing the committed output hashes. (Apart from test_ray_engine.py, so that
pytest-xdist's loadscope runs the two modules on different workers.)"""
from pathlib import Path

import pytest
import yaml

from conftest import REPO, md5_tree, run, set_params

pytest.importorskip("ray")  # the optional extra; CI installs it (.ci/run)

from test_ray_engine import TARGETS, engine  # noqa: E402


@pytest.mark.s3
def test_s3_inputs_through_ray_give_the_local_bytes_and_a_changed_object_reruns(scratch_repo, repro_repo, tmp_path):
    """inputs.train on a real S3 server (SeaweedFS), read in place by Ray workers; DVC tracks the prefix
    as an external dependency (input_data.train), so a changed object reruns hf_bytes@train."""
    from s3server import dvc_env, s3_server

    raw = repro_repo / "data/raw/train"
    with s3_server(tmp_path / "s3") as ep:
        client = ep.client()
        for f in sorted(p for p in raw.rglob("*") if p.is_file()):  # parquet shards and their image files
            client.put_object(Bucket=ep.bucket, Key=f"raw/train/{f.relative_to(raw).as_posix()}", Body=f.read_bytes())
        url = f"s3://{ep.bucket}/raw/train"
        set_params(scratch_repo, **{"inputs.train": url, "input_data.train": url},
                   **{f"{s}.{k}": v for s, values in engine("ray").items() for k, v in values.items()
                      if k != "part_rows"})
        env = {**dvc_env(ep), "RAY_ADDRESS": ""}
        run(["dvc", "repro", "verl@train", "trl@train"], scratch_repo, env=env, timeout=900)
        for part in ("data/verl/train", "data/trl/train"):
            assert md5_tree(scratch_repo / part) == md5_tree(repro_repo / part), part
        ours, local = md5_tree(scratch_repo / "data/hf_bytes/train"), md5_tree(repro_repo / "data/hf_bytes/train")
        del ours["README.md"], local["README.md"]  # the card names the input: here its S3 URL
        assert ours == local
        assert "up to date" in run(["dvc", "status", "hf_bytes@train"], scratch_repo, env=env).stdout

        first = sorted(raw.glob("*.parquet"))[0]
        client.put_object(Bucket=ep.bucket, Key=f"raw/train/{first.name}", Body=sorted(raw.glob("*.parquet"))[1].read_bytes())
        assert "Running stage 'hf_bytes@train'" in run(["dvc", "repro", "hf_bytes@train"], scratch_repo, env=env).stdout


def lock_outputs(repo: Path) -> dict:
    stages = yaml.safe_load((repo / "dvc.lock").read_text())["stages"]
    return {o["path"]: o["md5"] for stage in stages.values() for o in stage.get("outs", [])}


def test_dvc_repro_with_engine_ray_reproduces_the_committed_output_hashes(scratch_repo):
    """The issue's acceptance check: every stage with an engine on Ray (a Ray in each stage), `dvc repro`
    reruns them (engine is a param) and every output hash is the one dvc.lock commits."""
    set_params(scratch_repo, **{f"{s}.engine": "ray" for s in TARGETS})
    out = run(["dvc", "repro"], scratch_repo, env={"RAY_ADDRESS": ""}).stdout
    assert "Running stage 'verl@train'" in out and "Running stage 'hf_bytes@test'" in out
    assert lock_outputs(scratch_repo) == lock_outputs(REPO)
