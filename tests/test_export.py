"""Hub export: off by default; when on, each product's folder loads with `datasets.load_dataset(folder)`,
offline, every split with the card's features, images decoding."""
import json
import os
import subprocess

import yaml

from conftest import BIN, run, set_params


def test_export_is_off_by_default(repro_repo):
    assert yaml.safe_load((repro_repo / "params.yaml").read_text())["export"]["products"] == []
    stages = run(["dvc", "stage", "list", "--name-only"], repro_repo).stdout.split()
    assert not [s for s in stages if s.startswith("export")], stages
    assert not (repro_repo / "data/hub").exists()


LOAD = """
import json, sys, datasets
ds = datasets.load_dataset(sys.argv[1])
out = {}
for split, d in ds.items():
    first = d[0]
    img = first["images"][0]
    out[split] = {"rows": len(d), "features": d.features.to_dict(),
                  "image": type(img).__module__ + "." + type(img).__name__,
                  "size": list(getattr(img, "size", ())) if hasattr(img, "size") else None}
print(json.dumps(out))
"""


def test_exported_folders_load_offline_with_every_split(scratch_repo):
    repo = scratch_repo
    set_params(repo, **{"export.products": ["hf_bytes", "verl", "trl"], "export.rows_per_shard": 50})
    out = run(["dvc", "repro"], repo).stdout
    assert {"export@hf_bytes", "export@verl", "export@trl"} <= set(
        l.split("'")[1] for l in out.splitlines() if l.startswith("Running stage"))
    assert "up to date" in run(["dvc", "status"], repo).stdout
    params = yaml.safe_load((repo / "params.yaml").read_text())
    for product in ["hf_bytes", "verl", "trl"]:
        folder = repo / "data/hub" / product
        splits = list(params["inputs"]) if product == "hf_bytes" else params["targets"][product]
        shards = sorted(p.name for p in (folder / "data").iterdir())
        assert all(any(s.startswith(f"{split}-") for s in shards) for split in splits), shards
        assert any(s.endswith("-of-00002.parquet") or s.endswith("-of-00003.parquet") for s in shards), shards
        env = {**os.environ, "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1",
               "HF_HOME": str(repo / ".hf_home")}  # an empty cache: nothing could come from elsewhere
        proc = subprocess.run([str(BIN / "python"), "-c", LOAD, str(folder)], capture_output=True, text=True,
                              env=env, timeout=300)
        assert proc.returncode == 0, proc.stderr
        loaded = json.loads(proc.stdout)
        assert sorted(loaded) == sorted(splits)
        card = yaml.safe_load((folder / "README.md").read_text().split("---")[1])
        assert card["configs"][0]["data_files"] == [{"split": s, "path": f"data/{s}-*"} for s in splits]
        for split in splits:
            source = "hf_bytes" if product == "hf_bytes" else product
            rows = json.loads((repo / "metrics" / source / f"{split}.json").read_text())["rows_out"]
            assert loaded[split]["rows"] == rows
            assert {"name": split, "num_examples": rows} in card["dataset_info"]["splits"]
            if product == "verl":  # verl's own form: {bytes, path} dicts
                assert loaded[split]["features"]["images"]["feature"]["bytes"] == {"dtype": "binary", "_type": "Value"}
                assert loaded[split]["image"] == "builtins.dict"
            else:  # decoded to PIL images
                assert loaded[split]["features"]["images"] == {"feature": {"_type": "Image"}, "_type": "List"}
                assert loaded[split]["image"].startswith("PIL.") and all(loaded[split]["size"])
