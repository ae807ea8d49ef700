"""Contamination audit: planted copies are found with exact counts, clean rows are not flagged, the
outputs are byte-stable, the index keeps fixed-size records, and DVC reruns only `audit` for its params."""
from __future__ import annotations

import hashlib
import io
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from PIL import Image

from conftest import REPO, run, set_params
from vlprep.curation.audit.fingerprints import hamming, item_key, perceptual_hash
from vlprep.curation.audit.lsh import BandIndex, hamming_band_keys
from vlprep.curation.audit.run import audit
from vlprep.core.schema import HF_BYTES_FEATURES
from vlprep.core.params import load_section
from vlprep.io.sources import hf_dataset_files, plan_arrow_units
from vlprep.engine.parts import write_hf_dataset
from vlprep.core.writers import FixedRowGroups


# ---------------------------------------------------------------- planted data

def scan(seed: int, size: int = 128) -> Image.Image:
    """A smooth random 'scan': independent seeds give unrelated perceptual hashes."""
    rng = np.random.default_rng(seed)
    low = rng.integers(0, 256, size=(6, 6), dtype=np.uint8)
    return Image.fromarray(low, "L").resize((size, size), Image.Resampling.BICUBIC).convert("RGB")


def encode(im: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format=fmt, **kw)
    return buf.getvalue()


IMG = {name: scan(seed) for seed, name in enumerate("ABCDEFGHIJKLMN")}
PNG = {k: encode(v, "PNG") for k, v in IMG.items()}
JPG = {k: encode(v, "JPEG", quality=90) for k, v in IMG.items()}

OPTS = {"A": "Pneumothorax", "B": "Pleural effusion", "C": "Consolidation", "D": "Normal study"}
Q = {
    "t0": ("Which lobe shows the cavitating lesion on this chest radiograph?", {"A": "Right upper", "B": "Left lower"}),
    "t1": ("What is the estimated gestational age of the fetus shown?", {"A": "12 weeks", "B": "20 weeks"}),
    "t2": ("What abnormality is most evident in the left hemithorax on this film?", OPTS),
    "t3": ("Which vessel is occluded in this coronary angiogram?", {"A": "LAD", "B": "RCA", "C": "Circumflex"}),
    "template": ("What modality is this?", {"A": "CT", "B": "MRI", "C": "X-ray", "D": "Ultrasound"}),
    "t5": ("How many vertebral fractures are visible here?", {"A": "One", "B": "Two", "C": "Three"}),
}
BAD_BYTES = b"\x89PNG\r\n\x1a\n this is not really an image"


def item(images, question, options, name, index, answer_label="A"):
    return {"images": [{"bytes": b, "path": None} for b in images], "question": question,
            "options": json.dumps(options), "answer_label": answer_label, "answer": None, "reasoning": None,
            "dataset_name": name, "dataset_index": index, "hash": None, "misc": None, "question_type": "mcq"}


def planted_test_rows() -> list[dict]:
    return [
        item([PNG["A"]], *Q["t0"], "test_set", 100),
        item([JPG["B"]], *Q["t1"], "test_set", 101),
        item([PNG["C"]], *Q["t2"], "test_set", 102),
        item([PNG["D"]], *Q["t3"], "test_set", 103),
        item([PNG["E"]], *Q["template"], "test_set", 104),
        item([PNG["F"]], *Q["t5"], "test_set", 105),
    ]


def planted_train_rows() -> list[dict]:
    q2, _ = Q["t2"]
    q3, o3 = Q["t3"]
    half = lambda k: IMG[k].resize((64, 64), Image.Resampling.LANCZOS)  # noqa: E731
    return [
        # 0: exact copy of test 0's image, an unrelated question
        item([PNG["A"], PNG["K"]], "Is the endotracheal tube correctly positioned?", {"A": "Yes", "B": "No"}, "tr", 0),
        # 1: test 1's JPEG recompressed at another quality
        item([encode(IMG["B"], "JPEG", quality=50)], "Which bone is fractured in this wrist?", {"A": "Scaphoid", "B": "Lunate"}, "tr", 1),
        # 2: test 2's image resized by 0.5
        item([encode(half("C"), "PNG")], "Is there free air under the diaphragm?", {"A": "Present", "B": "Absent"}, "tr", 2),
        # 3: test 3's PNG re-encoded as JPEG
        item([JPG["D"]], "What is the cardiothoracic ratio approximately?", {"A": "0.4", "B": "0.6"}, "tr", 3),
        # 4: test 2's question with one word changed, same options, another image
        item([PNG["G"]], q2.replace("evident", "obvious"), OPTS, "tr", 4),
        # 5: test 3's question with case and punctuation changed, options shuffled
        item([PNG["H"]], q3.upper().replace("?", " ??").replace("coronary", "coronary,"),
             dict(zip("ABC", reversed(list(o3.values())))), "tr", 5),
        # 6: the template question with other options and another image: not contamination
        item([PNG["I"]], "What modality is this?", {"A": "PET", "B": "SPECT", "C": "Mammography", "D": "Fluoroscopy"}, "tr", 6),
        # 7: clean
        item([PNG["J"]], "Which cranial nerve palsy explains this gaze?", {"A": "Third", "B": "Sixth"}, "tr", 7),
        # 8: an exact copy of row 7 within train (with a null dataset_name / dataset_index)
        item([PNG["J"]], "Which cranial nerve palsy explains this gaze?", {"A": "Third", "B": "Sixth"}, None, None),
        # 9: row 7's image resized, its own question
        item([encode(half("J"), "JPEG", quality=85)], "Is the optic disc swollen?", {"A": "Papilledema", "B": "Normal"}, "tr", 9),
        # 10: an undecodable image (not crashing, counted) next to a clean one
        item([BAD_BYTES, PNG["L"]], "Which layer of the retina is detached?", {"A": "Inner", "B": "Outer"}, "tr", 10),
        # 11: clean
        item([PNG["M"], JPG["N"]], "What stage is this pressure ulcer?", {"A": "II", "B": "III", "C": "IV"}, "tr", 11),
        # 12: test 1's item: its image recompressed again, its question reworded by case, its options
        # relabelled (the answer, the option text its label names, is the same)
        item([encode(IMG["B"], "JPEG", quality=70)], Q["t1"][0].upper(), {"A": "20 weeks", "B": "12 weeks"}, "tr", 12,
             answer_label="B"),
    ]


EXPECTED_PAIRS = {  # (train row, test row or earlier train row, kind)
    (0, 0, "exact_image"), (1, 1, "near_image"), (2, 2, "near_image"), (3, 3, "near_image"),
    (12, 1, "near_image"), (12, 1, "near_item"),
    (4, 2, "same_question_text"), (5, 3, "same_question_text"),  # a question alone: reported, not contamination
    (8, 7, "train_exact_image"), (8, 7, "train_near_item"), (9, 7, "train_near_image"), (12, 1, "train_near_image"),
}


DEFAULTS = load_section("audit", REPO / "params.yaml")


def write_splits(root: Path, train=None, test=None, rows_per_batch: int = 4) -> Path:
    for split, rows in [("train", train or planted_train_rows()), ("test", test or planted_test_rows())]:
        table = pa.Table.from_pylist(rows)
        batches = [table.slice(i, rows_per_batch) for i in range(0, table.num_rows, rows_per_batch)]
        write_hf_dataset(root / "data" / "hf_bytes" / split, HF_BYTES_FEATURES, batches)
    return root


def run_audit(root: Path, **params):
    config = DEFAULTS.model_copy(update=params)
    hf = root / "data" / "hf_bytes"
    return audit(*(plan_arrow_units(hf_dataset_files(hf / split)) for split in ("train", "test")), config)


# ---------------------------------------------------------------- planted contamination

def test_the_base_images_are_unrelated():
    """Precondition of the planted test: distinct seeds are far apart in hash space."""
    hashes = np.array([perceptual_hash(PNG[k]) for k in IMG], dtype=np.uint64)
    d = hamming(hashes[:, None], hashes[None, :])
    assert d[~np.eye(len(hashes), dtype=bool)].min() > 2 * DEFAULTS.near_image_max_distance


@pytest.mark.parametrize("copy", ["jpeg_quality", "half_size", "png_to_jpeg"])
def test_re_encoded_copies_are_within_the_distance(copy):
    im = IMG["B"]
    original, other = {
        "jpeg_quality": (JPG["B"], encode(im, "JPEG", quality=40)),
        "half_size": (PNG["B"], encode(im.resize((64, 64), Image.Resampling.LANCZOS), "PNG")),
        "png_to_jpeg": (PNG["B"], JPG["B"]),
    }[copy]
    assert original != other
    d = hamming(np.uint64(perceptual_hash(original)), np.uint64(perceptual_hash(other)))
    assert d <= DEFAULTS.near_image_max_distance


def test_item_normalisation():
    assert item_key("What is  THIS?", '{"A": "CT", "B": "MRI"}') == item_key("what is this", '{"B": "ct", "A": "mri"}')
    assert item_key("What is this?", '{"A": "CT"}') != item_key("What is this?", '{"A": "PET"}')


def test_planted_contamination_is_found_exactly(tmp_path):
    result = run_audit(write_splits(tmp_path))
    pairs = result.pairs.to_pylist()
    assert {(p["train_row"], p["test_row"], p["kind"]) for p in pairs} == EXPECTED_PAIRS
    m = result.metrics
    assert m["train_vs_test"] == {"exact_image": 1, "near_image": 4, "near_item": 1, "same_question_text": 2, "any": 5,
                                  "pairs": 8, "pairs_found": 8, "test_rows_matched": 4}
    assert m["within_train"] == {"exact_image": 1, "near_image": 2, "near_item": 1, "same_question_text": 0, "any": 3,
                                 "pairs": 4}
    assert m["total"] == {"train_rows_flagged": 9, "train_rows_flagged_vs_test": 5,
                          "train_rows_flagged_within_train": 3, "pairs": 12}
    assert m["images_unhashable"] == 1 and m["rows"] == {"train": 13, "test": 6}

    flagged = {r["row"]: r["kinds"] for r in result.flagged.to_pylist()}
    assert flagged == {0: ["exact_image"], 1: ["near_image"], 2: ["near_image"], 3: ["near_image"],
                       4: ["same_question_text"], 5: ["same_question_text"], 8: ["train_exact_image", "train_near_item"],
                       9: ["train_near_image"], 12: ["near_image", "near_item", "train_near_image"]}
    # the template question with other options (6), the clean rows (7, 11) and the bad image's row (10)
    assert not {6, 7, 10, 11} & set(flagged)

    by_kind = {(p["train_row"], p["kind"]): p for p in pairs}
    assert by_kind[(0, "exact_image")]["similarity"] == 1.0
    assert by_kind[(5, "same_question_text")]["similarity"] == 1.0  # equal once normalised
    assert 0.7 <= by_kind[(4, "same_question_text")]["similarity"] < 1.0
    assert by_kind[(12, "near_item")]["similarity"] == 1.0 and by_kind[(12, "near_image")]["similarity"] > 0.92
    assert by_kind[(1, "near_image")]["test_dataset_name"] == "test_set"
    assert by_kind[(1, "near_image")]["test_dataset_index"] == 101
    assert by_kind[(9, "train_near_image")]["test_dataset_index"] == 7  # the earlier train row
    assert by_kind[(8, "train_exact_image")]["train_dataset_name"] is None
    assert by_kind[(8, "train_exact_image")]["train_dataset_index"] is None
    assert by_kind[(8, "train_exact_image")]["test_dataset_name"] == "tr"


def test_a_stricter_threshold_finds_fewer(tmp_path):
    m = run_audit(write_splits(tmp_path), near_image_max_distance=0, near_item_threshold=1.0).metrics
    assert m["train_vs_test"]["exact_image"] == 1
    assert m["train_vs_test"]["same_question_text"] == 1  # only the normalised-equal one
    assert m["train_vs_test"]["near_image"] <= 4


def test_within_train_pairs_link_each_copy_to_the_first(tmp_path):
    copies = [item([PNG["A"]], f"Unrelated question number {w}?", {"A": w, "B": "x"}, "tr", i)
              for i, w in enumerate(["alpha", "beta", "gamma", "delta", "epsilon"])]
    result = run_audit(write_splits(tmp_path, train=copies, test=[planted_test_rows()[5]]))
    pairs = {(p["train_row"], p["test_row"], p["kind"]) for p in result.pairs.to_pylist()}
    assert pairs == {(r, 0, "train_exact_image") for r in range(1, 5)}  # k copies: k-1 pairs, not k*k



def test_forked_workers_fingerprint_after_the_parent_used_its_decode_threads(tmp_path):
    """hashing._pool: the audit run in-process with num_proc=1 leaves its decode threads idle; workers
    forked by a later num_proc=2 run inherit that pool without its threads and must make their own, not
    wait forever (hash_cache_images=0: nothing comes from the inherited cache). Run in a child with a
    timeout, so a regression fails instead of hanging the suite."""
    write_splits(tmp_path, rows_per_batch=3)
    script = f"""
import sys, time
sys.path.insert(0, {str(Path(__file__).parent)!r})
from test_audit import run_audit
from pathlib import Path
root = Path({str(tmp_path)!r})
one = run_audit(root, hash_cache_images=0)  # in this process: its decode threads start
time.sleep(0.5)  # the threads go idle
from vlprep.curation.audit.run import audit
from vlprep.io.sources import hf_dataset_files, plan_arrow_units
from test_audit import DEFAULTS
units = [plan_arrow_units(hf_dataset_files(root / "data/hf_bytes" / s)) for s in ("train", "test")]
two = audit(*units, DEFAULTS.model_copy(update={{"hash_cache_images": 0}}), num_proc=2)
assert two.pairs.equals(one.pairs) and two.pairs.num_rows
"""
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60)

# ---------------------------------------------------------------- the stage: outputs and determinism

def run_stage(project: Path, **params) -> dict[str, str]:
    p = {**DEFAULTS.model_dump(), "num_proc": 1, **params}
    inputs = {"train": "raw/train", "test": "raw/test"}  # what the splits were built from (not read here)
    (project / "params.yaml").write_text(yaml.safe_dump({"audit": p, "inputs": inputs}))
    subprocess.run([sys.executable, str(REPO / "stages" / "audit.py"), "data/hf_bytes", "data/audit"], cwd=project,
                   check=True)
    outs = [project / "data/audit/pairs.parquet", project / "data/audit/flagged_train_rows.parquet",
            project / "metrics/audit/contamination.json"]
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in outs}


def test_stage_outputs_are_byte_identical_across_runs_and_num_proc(tmp_path):
    project = write_splits(tmp_path, rows_per_batch=3)
    first = run_stage(project)
    assert run_stage(project) == first
    assert run_stage(project, num_proc=2) == first  # results come back in unit order whatever num_proc
    assert run_stage(project, index_rows=2) == first  # four blocks: the same bytes
    pairs = pq.read_table(project / "data/audit/pairs.parquet")
    assert pairs.num_rows == len(EXPECTED_PAIRS)
    keys = [(r["train_row"], r["test_row"], r["kind"]) for r in pairs.to_pylist()]
    assert keys == sorted(keys, key=lambda k: (k[0], k[1], k[2].startswith("train_"), k[2]))
    assert not list((project / ".vlprep/tmp").iterdir())


def test_fixed_row_groups_make_the_bytes_independent_of_how_tables_come_cut(tmp_path):
    table = pa.table({"x": list(range(23)), "s": [f"v{i}" for i in range(23)]})
    digests = set()
    for cuts in ([23], [1] * 23, [5, 0, 7, 11], [3, 3, 17]):
        path = tmp_path / f"{len(digests)}-{len(cuts)}.parquet"
        with pq.ParquetWriter(path, table.schema) as writer:
            out, start = FixedRowGroups(writer, 4), 0
            for n in cuts:
                out.write(table.slice(start, n))
                start += n
            out.close()
        meta = pq.ParquetFile(path).metadata
        assert [meta.row_group(g).num_rows for g in range(meta.num_row_groups)] == [4, 4, 4, 4, 4, 3]
        assert pq.read_table(path).equals(table)
        digests.add(hashlib.sha256(path.read_bytes()).hexdigest())
    assert len(digests) == 1


# ---------------------------------------------------------------- bounded memory

def test_the_band_index_keeps_a_fixed_record_per_item():
    rng = np.random.default_rng(0)
    for n in (100, 10_000):
        hashes = rng.integers(0, 2**63, size=n, dtype=np.int64).astype(np.uint64)
        index = BandIndex(hamming_band_keys(hashes, 6))
        assert index.order.nbytes + index.keys.nbytes == n * index.bytes_per_item
        assert index.bytes_per_item == 7 * 12  # 7 bands x (uint64 key + int32 position)


def test_the_index_compares_only_band_sharing_candidates_and_misses_nothing():
    rng = np.random.default_rng(1)
    n, d = 5000, 6
    hashes = rng.integers(0, 2**63, size=n, dtype=np.int64).astype(np.uint64)
    # queries: each hash with up to d random bits flipped
    flips = np.zeros(n, dtype=np.uint64)
    for i in range(n):
        for bit in rng.choice(64, size=rng.integers(0, d + 1), replace=False):
            flips[i] |= np.uint64(1) << np.uint64(bit)
    queries = hashes ^ flips
    index = BandIndex(hamming_band_keys(hashes, d))
    found, compared = set(), 0
    for qi, ti in index.candidates(hamming_band_keys(queries, d), budget=4096):
        compared += len(qi)
        ok = hamming(queries[qi], hashes[ti]) <= d
        found.update(zip(qi[ok].tolist(), ti[ok].tolist()))
    assert {(i, i) for i in range(n)} <= found  # pigeonhole: every hash within d is a candidate
    assert compared < n * n / 50  # far from all pairs


def test_the_train_index_holds_only_fixed_size_arrays(tmp_path):
    index = run_audit(write_splits(tmp_path)).index
    arrays = {k: v for k, v in vars(index).items() if isinstance(v, np.ndarray)}
    for name, a in arrays.items():
        assert a.dtype != object, name
    assert index.item_signatures.shape[1:] == (2, 128) and index.item_signatures.dtype == np.uint32
    assert index.images.keys.dtype.itemsize == 16 and index.image_hash_of_group.dtype == np.uint64


# ---------------------------------------------------------------- DVC

def test_an_audit_param_reruns_the_audit_and_its_readers_only(scratch_repo):
    assert "up to date" in run(["dvc", "status"], scratch_repo).stdout
    assert json.loads((scratch_repo / "metrics/audit/contamination.json").read_text())["params"]["near_item_threshold"] == 0.7
    set_params(scratch_repo, **{"audit.near_item_threshold": 0.9})
    out = run(["dvc", "repro"], scratch_repo).stdout
    # select reads the flagged rows (to drop them when audit.drop_train_contaminated is on): it reruns in
    # about a second and, with dropping off, writes the same selection, so no target reruns.
    assert set(re.findall(r"Running stage '([^']+)'", out)) == {"audit", "select", "summary", "card", "preview"}  # products read the audit metrics
    metrics = json.loads((scratch_repo / "metrics/audit/contamination.json").read_text())
    assert metrics["params"]["near_item_threshold"] == 0.9
    assert "up to date" in run(["dvc", "status"], scratch_repo).stdout


def test_pairs_per_train_row_are_capped_but_counted(tmp_path):
    """One image in every row of both splits: pairs.parquet keeps max_pairs_per_row per train row and kind."""
    train = [item([PNG["A"]], f"Train question {w}?", {"A": w}, "tr", i) for i, w in enumerate(["one", "two", "three"])]
    test = [item([PNG["A"]], f"Test question number {i} about {w}?", {"A": f"{w}{i}"}, "te", i)
            for i, w in enumerate(["kidney"] * 15)]
    result = run_audit(write_splits(tmp_path, train=train, test=test), max_pairs_per_row=4)
    m = result.metrics["train_vs_test"]
    assert (m["exact_image"], m["pairs_found"], m["pairs"], m["test_rows_matched"]) == (3, 45, 12, 15)
    kept = {(p["train_row"], p["test_row"]) for p in result.pairs.to_pylist() if p["kind"] == "exact_image"}
    assert kept == {(r, t) for r in range(3) for t in range(4)}  # equal similarity: the first test rows


# ---------------------------------------------------------------- blocks: bounded memory, same results

def dense_rows(n: int, seed: int, name: str) -> list[dict]:
    """Rows drawing images (exact copies and re-encodes) and questions (edited copies, templates) from small
    pools, so every kind recurs across rows at any distance, within and across blocks."""
    rng = np.random.default_rng(seed)
    keys = list("ABCDEFGHIJ")
    questions = [Q[k] for k in Q]
    rows = []
    for i in range(n):
        images = []
        for k in rng.choice(keys, size=int(rng.integers(1, 3)), replace=False):
            form = int(rng.integers(0, 3))
            images.append(PNG[k] if form == 0 else JPG[k] if form == 1 else encode(IMG[k], "JPEG", quality=60))
        q, o = questions[int(rng.integers(0, len(questions)))]
        if rng.random() < 0.5:  # a new question: most rows are not near any other item
            q = f"{q} case {int(rng.integers(0, 10**6))} variant {i}"
        rows.append(item(images, q, o, name, i))
    return rows


def audit_outputs(result) -> tuple:
    m = {k: v for k, v in result.metrics.items() if k != "params"}
    return result.pairs.to_pylist(), result.flagged.to_pylist(), m


@pytest.mark.parametrize("index_rows", [1, 3, 5])
def test_blocks_change_nothing_on_the_planted_data(tmp_path, index_rows):
    root = write_splits(tmp_path, rows_per_batch=2)
    whole = run_audit(root, index_rows=10**6)
    blocked = run_audit(root, index_rows=index_rows)
    assert audit_outputs(blocked) == audit_outputs(whole)
    assert blocked.index.rows <= index_rows + 1  # a block is whole units (2 rows each) of at least index_rows
    assert {(p["train_row"], p["test_row"], p["kind"]) for p in blocked.pairs.to_pylist()} == EXPECTED_PAIRS


def test_blocks_change_nothing_on_dense_duplicates(tmp_path):
    root = write_splits(tmp_path, train=dense_rows(90, 0, "tr"), test=dense_rows(30, 1, "te"), rows_per_batch=4)
    whole = run_audit(root, index_rows=10**6, max_pairs_per_row=3)
    m = whole.metrics
    # every kind occurs within train and against test, so the comparison below covers them all
    for part in ("train_vs_test", "within_train"):
        assert all(m[part][kind] > 0 for kind in ("exact_image", "near_image", "near_item")), m[part]
    for index_rows in (4, 13, 40):
        assert audit_outputs(run_audit(root, index_rows=index_rows, max_pairs_per_row=3)) == audit_outputs(whole)
    # the perceptual hashes of repeated images, reused or computed again: the same results
    assert audit_outputs(run_audit(root, index_rows=13, max_pairs_per_row=3, hash_cache_images=0)) == audit_outputs(whole)
    assert audit_outputs(run_audit(root, index_rows=13, max_pairs_per_row=3, hash_cache_images=2)) == audit_outputs(whole)
