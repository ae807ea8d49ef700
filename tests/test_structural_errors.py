"""Structural problems stop the stage with a message naming the file; nothing is published."""

import pytest
import yaml

from builders import row, write_raw
from conftest import REPO, run, stage_argv


@pytest.fixture
def workdir(tmp_path):
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["inputs"] = {"train": "raw/train"}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    return tmp_path


def hf_bytes(workdir, check=False):
    return run(stage_argv("hf_bytes", "train"), workdir, check=check)


def test_empty_input_directory(workdir):
    (workdir / "raw/train").mkdir(parents=True)
    proc = hf_bytes(workdir)
    assert proc.returncode != 0 and "raw/train" in proc.stderr and "no parquet" in proc.stderr


def test_glob_matching_nothing(workdir):
    (workdir / "params.yaml").write_text((workdir / "params.yaml").read_text().replace("raw/train", "raw/*.parquet"))
    proc = hf_bytes(workdir)
    assert proc.returncode != 0 and "raw/*.parquet" in proc.stderr


def test_file_that_is_not_parquet(workdir):
    write_raw(workdir / "raw/train/a.parquet", [row()])
    (workdir / "raw/train/b.parquet").write_text("not parquet")
    proc = hf_bytes(workdir)
    assert proc.returncode != 0 and "b.parquet" in proc.stderr and "not a readable parquet" in proc.stderr
    assert not (workdir / "data/hf_bytes/train").exists()


def test_missing_required_column(workdir):
    r = row()
    del r["answer_label"]
    write_raw(workdir / "raw/train/a.parquet", [r])
    proc = hf_bytes(workdir)
    assert proc.returncode != 0 and "a.parquet" in proc.stderr and "answer_label" in proc.stderr


def test_zero_rows_kept_is_an_error_with_reasons(workdir):
    write_raw(workdir / "raw/train/a.parquet", [row(images=[]), row(answer_label="Q")])
    proc = hf_bytes(workdir)
    assert proc.returncode != 0 and "zero rows" in proc.stderr and "no_image" in proc.stderr
    assert not (workdir / "data/hf_bytes/train").exists()


def test_comma_list_of_file_dir_and_glob_is_deduplicated_in_order(workdir):
    write_raw(workdir / "raw/train/a.parquet", [row(dataset_index=1)])
    write_raw(workdir / "raw/train/sub/b.parquet", [row(dataset_index=2)])
    write_raw(workdir / "raw/other/c.parquet", [row(dataset_index=3)])
    spec = "raw/other/c.parquet, raw/train, raw/*/c.parquet"
    params = yaml.safe_load((workdir / "params.yaml").read_text())
    params["inputs"]["train"] = spec
    (workdir / "params.yaml").write_text(yaml.safe_dump(params))
    hf_bytes(workdir, check=True)
    import datasets

    ds = datasets.load_from_disk(str(workdir / "data/hf_bytes/train"))
    assert ds["dataset_index"] == [3, 1, 2]


def set_inputs(workdir, entries):
    params = yaml.safe_load((workdir / "params.yaml").read_text())
    params["inputs"]["train"] = entries
    (workdir / "params.yaml").write_text(yaml.safe_dump(params))


def test_mapped_column_missing_names_the_input_file_and_column(workdir):
    (workdir / "raw").mkdir()
    (workdir / "raw/a.csv").write_text("Figure_path,Question,Answer,Choice A,Choice B,Answer_label\nx.jpg,q,a,A:a,B:b,A\n")
    set_inputs(workdir, [{"path": "raw/a.csv", "preset": "pmc_vqa"}])
    proc = hf_bytes(workdir)
    assert proc.returncode != 0
    assert "inputs.train[0]" in proc.stderr and "a.csv" in proc.stderr and "Choice C" in proc.stderr
    assert "`columns:` mapping" in proc.stderr and "`optional`" in proc.stderr  # and says what to do
    assert not (workdir / "data/hf_bytes/train").exists()


def test_mapped_column_of_the_wrong_type_names_it(workdir):
    write_raw(workdir / "raw/a.parquet", [{"img": b"x", "q": "?", "opts": 5, "label": "A"}])
    set_inputs(workdir, [{"path": "raw/a.parquet", "columns": {"image": "img", "question": "q", "option_list": "opts",
                                                               "answer_label": "label"}}])
    proc = hf_bytes(workdir)
    assert proc.returncode != 0 and "inputs.train[0]" in proc.stderr and "'opts' is int64" in proc.stderr


def test_second_entry_matching_nothing_names_it(workdir):
    write_raw(workdir / "raw/train/a.parquet", [row()])
    set_inputs(workdir, [{"path": "raw/train", "preset": "reference"}, {"path": "raw/slake", "preset": "slake"}])
    proc = hf_bytes(workdir)
    assert proc.returncode != 0 and "inputs.train[1]" in proc.stderr and "raw/slake" in proc.stderr


def test_bad_preset_name_is_a_params_error(workdir):
    set_inputs(workdir, [{"path": "raw/a.csv", "preset": "pmcvqa"}])
    proc = hf_bytes(workdir)
    assert proc.returncode != 0 and "inputs.train[0].preset" in proc.stderr and "Traceback" not in proc.stderr


def test_json_file_that_is_not_an_array_names_it(workdir):
    (workdir / "raw").mkdir()
    (workdir / "raw/a.json").write_text('{"data": [{"question": "q"}]}')
    set_inputs(workdir, [{"path": "raw/a.json", "preset": "slake"}])
    proc = hf_bytes(workdir)
    assert proc.returncode != 0 and "a.json" in proc.stderr and "not an array" in proc.stderr
