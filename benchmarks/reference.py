"""The reference scripts as a measured peer of `dvc repro` (issue 29), on the same generated data.

The reference is the public data_process scripts vlprep replaces (published with MedVLThinker, in
UCSC-VLAA/MedVLSynther, data_process/: prep_to_hf_bytes.py, convert_verl_format.py,
convert_trl_for_vlm.py). Their code is not in this repo: --reference-scripts names a directory holding
them, by default benchmarks/work/reference/data_process (git-ignored), e.g. after

    git clone https://github.com/UCSC-VLAA/MedVLSynther benchmarks/work/reference

They run unmodified, as their README runs them (train split: prep, then verl and trl from prep's
output), in a throwaway venv, benchmarks/work/ref-venv, with what they import (datasets, pillow,
transformers, jinja2 for the chat template, python-dotenv, click, pandas) at the versions of
requirements.lock, so both sides use the same libraries. Offline: their hub tokenizer
(Qwen/Qwen2.5-VL-7B-Instruct) is replaced, through their own --tokenizer_name argument, by the local
copy benchmarks/run.py builds (vlprep.prompting.qwen_tokenizer); each run gets an empty HF cache of
its own (HF_HOME), so `load_dataset`'s Arrow conversion is paid every time, as on a first run.

Their input: `load_dataset("parquet")` needs one schema over all files, while the generated raw data
mixes physical forms by file (images as binary or {bytes, path}; options as a struct or JSON). They get
a copy in the form their README documents (images as datasets' Image struct, options as a JSON
string), made once per raw data set and not timed; vlprep reads the mixed original.
"""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

STAGES = ("ref_hf_bytes", "ref_verl", "ref_trl")
PACKAGES = ["datasets", "pillow", "transformers", "jinja2", "python-dotenv", "click", "pandas"]
SCRIPTS = {"ref_hf_bytes": "prep_to_hf_bytes.py", "ref_verl": "convert_verl_format.py",
           "ref_trl": "convert_trl_for_vlm.py"}
OUTPUTS = {"ref_hf_bytes": "ref/hf_bytes", "ref_verl": "ref/verl", "ref_trl": "ref/trl"}


def ensure_venv(work: Path, constraints: Path) -> Path:
    """The reference's own interpreter: a venv under work/ with PACKAGES (pinned by `constraints`)."""
    venv = work / "ref-venv"
    python = venv / "bin" / "python"
    marker = venv / "installed.json"
    if marker.is_file() and json.loads(marker.read_text()) == PACKAGES:
        return python
    shutil.rmtree(venv, ignore_errors=True)
    subprocess.run(["python3.11", "-m", "venv", str(venv)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "-q", "-c", str(constraints), *PACKAGES], check=True)
    marker.write_text(json.dumps(PACKAGES))
    return python


def _struct_images(images: pa.ChunkedArray) -> pa.Array:
    """list<binary> or list<struct<bytes, path: null>> -> list<struct<bytes, path: string>>, datasets' Image
    storage (the generated data has no path images)."""
    images = images.combine_chunks()
    values = images.values.field("bytes") if pa.types.is_struct(images.type.value_type) else images.values
    struct = pa.StructArray.from_arrays([values, pa.nulls(len(values), pa.string())], names=["bytes", "path"])
    return pa.ListArray.from_arrays(images.offsets, struct, mask=images.is_null())


def _json_options(options: pa.ChunkedArray) -> pa.Array:
    """A struct of options (absent keys null) -> the JSON object string of the keys present."""
    if pa.types.is_string(options.type) or pa.types.is_large_string(options.type):
        return options.combine_chunks()
    return pa.array([None if o is None else json.dumps({k: v for k, v in o.items() if v is not None},
                                                       ensure_ascii=False) for o in options.to_pylist()])


def ensure_input(raw_train: Path) -> Path:
    """raw_train's rows, file by file, in the one schema the reference reads (module docstring)."""
    out = raw_train.parent / "reference-schema"
    files = sorted(raw_train.glob("*.parquet"))
    if (out / "done").is_file() and (out / "done").read_text() == json.dumps([f.name for f in files]):
        return out
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir()
    for path in files:
        pf = pq.ParquetFile(path)
        writer = None
        for g in range(pf.metadata.num_row_groups):  # row group by row group: bounded memory
            t = pf.read_row_group(g)
            t = t.set_column(t.schema.get_field_index("images"), "images", _struct_images(t["images"]))
            t = t.set_column(t.schema.get_field_index("options"), "options", _json_options(t["options"]))
            writer = writer or pq.ParquetWriter(out / path.name, t.schema)
            writer.write_table(t)
        writer.close()
    (out / "done").write_text(json.dumps([f.name for f in files]))
    return out


def command(stage: str, scripts: Path, python: Path, proj: Path, raw_train: Path, tokenizer: Path,
            num_proc: int) -> list[str]:
    """The reference README's command for stage (train split), reading and writing under proj/ref."""
    hf = proj / OUTPUTS["ref_hf_bytes"]
    args = {
        "ref_hf_bytes": ["--parquet_glob", str(ensure_input(raw_train)), "--out_dir", str(hf),
                         "--num_proc", str(num_proc), "--strict_image", "--keep_first_k_images", "6"],
        "ref_verl": ["--local_data_dir", str(hf), "--data_source", "vlprep_medical_mcqa", "--ability", "medical_mcqa",
                     "--split", "train", "--output_dir", str(proj / OUTPUTS["ref_verl"]), "--num_proc", str(num_proc)],
        "ref_trl": ["--is_local", "true", "-d", str(hf), "--tokenizer_name", str(tokenizer),
                    "--out_parquet", str(proj / OUTPUTS["ref_trl"] / "train.parquet"), "-n", str(num_proc),
                    "--keep_in_memory", "True"],
    }[stage]
    return [str(python), str(scripts / SCRIPTS[stage]), *args]


def environment(proj: Path) -> dict:
    """Offline, and an HF cache of the run's own, emptied before each script (cold, as a first run)."""
    home = proj / "ref" / "hf_home"
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    return {"HF_HOME": str(home), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
            "HF_DATASETS_DISABLE_PROGRESS_BARS": "1"}
