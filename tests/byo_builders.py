"""Small files in the exact schema and file type of each public medical VQA set a preset reads, with
their known quirks (generated here: no downloads). Each builder writes under `root` and returns the
inputs.<split> entry that reads it, and the expected outcome per row id (KEPT or a drop reason)."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from builders import jpeg, png, row, write_raw

KEPT = "kept"


def _image_files(folder: Path, names) -> None:
    for i, name in enumerate(names):
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(png(30 + i, 20) if name.endswith(".png") else jpeg(30 + i, 20))


def pmc_vqa(root: Path) -> tuple[dict, dict]:
    """train.csv (Figure_path, Question, Answer, Choice A..D with their own "A:" prefix, Answer_label)."""
    d = root / "pmc_vqa"
    _image_files(d / "images", ["PMC1_Fig1.jpg", "PMC2_Fig2.jpg", "PMC3_Fig1.jpg"])
    header = ["Figure_path", "Question", "Answer", "Choice A", "Choice B", "Choice C", "Choice D", "Answer_label"]
    rows = {
        "good": ["PMC1_Fig1.jpg", "What is the modality?", "MRI", " A:CT", " B:MRI", " C:X-ray", " D:PET", "B"],
        "quoted_newline": ["PMC2_Fig2.jpg", 'Which "region",\nin the image?', "Left", "A: Left", "B: Right", "C: Both", "D: None", "A"],
        "three_choices": ["PMC3_Fig1.jpg", "How many lesions?", "Two", " A:One", " B:Two", " C:Three", "", "B"],
        # the ~31 quirky rows of the real file: a label that is no choice, an answer that is another choice
        "label_not_a_choice": ["PMC1_Fig1.jpg", "Which stain?", "HE", " A:HE", " B:PAS", " C:IHC", " D:Gram", "E"],
        "answer_is_other_choice": ["PMC1_Fig1.jpg", "Which organ?", "Liver", " A:Liver", " B:Kidney", " C:Lung", " D:Heart", "B"],
        "missing_figure": ["PMC9_Fig9.jpg", "What is shown?", "CT", " A:CT", " B:MRI", " C:US", " D:PET", "A"],
    }
    expected = {"good": KEPT, "quoted_newline": KEPT, "three_choices": KEPT,
                "label_not_a_choice": "answer_label_not_in_options",
                "answer_is_other_choice": "answer_conflicts_with_label", "missing_figure": "image_file_missing"}
    with open(d / "train.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows.values())
    return {"path": str(d / "train.csv"), "preset": "pmc_vqa", "image_root": str(d / "images"), "name": "pmc_vqa"}, \
        dict(zip([r[1] for r in rows.values()], expected.values()))


def slake(root: Path) -> tuple[dict, dict]:
    """train.json: a JSON array (img_name under imgs/, bilingual q_lang, answer_type OPEN/CLOSED)."""
    d = root / "slake"
    _image_files(d / "imgs", ["xmlab1/source.jpg", "xmlab2/source.jpg"])
    items = [
        ("What modality is used?", "MRI", "en", "OPEN", "xmlab1/source.jpg", KEPT),
        ("Is the lung healthy?", "No", "en", "CLOSED", "xmlab1/source.jpg", KEPT),
        ("Does the picture contain liver?", "Yes", "en", "CLOSED", "xmlab2/source.jpg", KEPT),
        ("Which side is the lesion on?", "Left", "en", "CLOSED", "xmlab2/source.jpg", KEPT),  # CLOSED, not yes/no
        ("这张图片是什么模态?", "核磁共振", "zh", "OPEN", "xmlab2/source.jpg", KEPT),
        ("What organ is abnormal?", "", "en", "OPEN", "xmlab1/source.jpg", "answer_missing"),
        ("Where is it?", "Chest", "en", "OPEN", "../../outside.jpg", "image_path_outside_root"),
    ]
    records = [{"img_id": i, "img_name": img, "question": q, "answer": a, "q_lang": lang, "location": "Lung",
                "modality": "MRI", "answer_type": t, "base_type": "vqa", "content_type": "Modality",
                "triple": ["vhead", "_", "_"], "qid": 1000 + i} for i, (q, a, lang, t, img, _) in enumerate(items)]
    (d / "train.json").write_text(json.dumps(records, ensure_ascii=False, indent=1), encoding="utf-8")
    return {"path": str(d / "train.json"), "preset": "slake", "image_root": str(d / "imgs"), "name": "slake"}, \
        {q: e for q, *_, e in items}


def _hf_vqa_parquet(d: Path, items) -> None:
    """The HF parquet layout of VQA-RAD and PathVQA: image {bytes, path}, question, answer."""
    d.mkdir(parents=True, exist_ok=True)
    image_t = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    schema = pa.schema([("image", image_t), ("question", pa.string()), ("answer", pa.string())])
    rows = [{"image": img, "question": q, "answer": a} for q, a, img, _ in items]
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), d / "train-00000-of-00001.parquet", row_group_size=3)


def vqa_rad(root: Path) -> tuple[dict, dict]:
    d = root / "vqa_rad"
    items = [
        ("is there evidence of an aortic aneurysm?", "yes", {"bytes": jpeg(), "path": "synpic1.jpg"}, KEPT),
        ("is the liver normal?", "no", {"bytes": png(), "path": None}, KEPT),
        ("what imaging modality was used?", "ct", {"bytes": jpeg(), "path": "synpic2.jpg"}, KEPT),
        ("is the liver normal?", "no", {"bytes": png(), "path": None}, KEPT),  # near-duplicate questions: kept
        ("where is the mass?", "left lobe", {"bytes": None, "path": None}, "image_null"),
    ]
    _hf_vqa_parquet(d / "data", items)
    return {"path": str(d / "data"), "preset": "vqa_rad", "name": "vqa_rad"}, {q + a: e for q, a, _, e in items}


def path_vqa(root: Path) -> tuple[dict, dict]:
    d = root / "path_vqa"
    items = [
        ("does this image show fibrosis?", "yes", {"bytes": png(), "path": None}, KEPT),
        ("what is present?", "granulomas", {"bytes": jpeg(), "path": None}, KEPT),
        ("is this a lymph node?", "no", {"bytes": jpeg(), "path": None}, KEPT),
        ("how is the specimen stained?", "with hematoxylin", None, "no_image"),
        ("what does this show?", "necrosis", {"bytes": b"\xff\xd8\xff\xe0broken", "path": None}, "image_corrupt"),
    ]
    _hf_vqa_parquet(d / "data", items)
    return {"path": str(d / "data/train-00000-of-00001.parquet"), "preset": "path_vqa"}, {q + a: e for q, a, _, e in items}


def omnimedvqa(root: Path) -> tuple[dict, dict]:
    """QA_information/Open-access/<dataset>.json arrays; option_C / option_D absent for 2-3 choices."""
    d = root / "OmniMedVQA"
    _image_files(d, ["Images/ACRIMA/Im001.png", "Images/ACRIMA/Im002.png"])
    items = [
        ({"option_A": "Glaucoma", "option_B": "Normal", "option_C": "Cataract", "option_D": "AMD"}, "Cataract", KEPT),
        ({"option_A": "Yes", "option_B": "No"}, "No", KEPT),  # two options only: keys C, D absent
        ({"option_A": "CT", "option_B": "MR", "option_C": "X-ray"}, "MR", KEPT),
        ({"option_A": "CT", "option_B": "MR", "option_C": "X-ray"}, "Ultrasound", "answer_not_in_options"),
        ({"option_A": "Same", "option_B": "Same"}, "Same", "answer_not_in_options"),  # which one? never guessed
    ]
    records = [{"dataset": "ACRIMA", "question_id": f"ACRIMA_{i:04d}", "question_type": "Disease Diagnosis",
                "question": f"Q{i}: what is shown in this fundus image?", "gt_answer": a,
                "image_path": f"Images/ACRIMA/Im00{1 + i % 2}.png", **opts, "modality_type": "Fundus Photography"}
               for i, (opts, a, _) in enumerate(items)]
    (d / "QA_information/Open-access").mkdir(parents=True)
    (d / "QA_information/Open-access/ACRIMA.json").write_text(json.dumps(records, indent=2))
    return {"path": str(d / "QA_information/Open-access"), "preset": "omnimedvqa", "image_root": str(d)}, \
        {r["question"]: e for r, (_, _, e) in zip(records, items)}


def medxpertqa(root: Path) -> tuple[dict, dict]:
    """MM/test.jsonl: question text with "Answer Choices: (A) ... (E) ...", options dict, label, images."""
    d = root / "MedXpertQA"
    _image_files(d / "images", ["MM-0-a.jpeg", "MM-0-b.jpeg", "MM-1-a.jpeg"])
    opts = {"A": "Aortic dissection", "B": "Pneumothorax", "C": "Pulmonary embolism", "D": "Pericarditis", "E": "Costochondritis"}
    choices = " ".join(f"({k}) {v}" for k, v in opts.items())
    items = [
        ("MM-0", ["MM-0-a.jpeg", "MM-0-b.jpeg"], "C", KEPT),
        ("MM-1", ["MM-1-a.jpeg"], "A", KEPT),
        ("MM-2", ["MM-1-a.jpeg"], "F", "answer_label_not_in_options"),
    ]
    lines = [json.dumps({"id": i, "question": f"A 54-year-old man ({i}) has chest pain. What is the diagnosis?\n"
                         f"Answer Choices: {choices}", "options": opts, "label": label, "images": imgs,
                         "medical_task": "Diagnosis", "body_system": "Cardiovascular", "question_type": "Reasoning"})
             for i, imgs, label, _ in items]
    (d / "MM").mkdir(parents=True)
    (d / "MM/test.jsonl").write_text("\n".join(lines) + "\n")
    return {"path": str(d / "MM/test.jsonl"), "preset": "medxpertqa", "image_root": str(d / "images"), "name": "medxpertqa"}, \
        {i: e for i, _, _, e in items}


def reference(root: Path) -> tuple[dict, dict]:
    d = root / "reference"
    rows = [row(hash="ref-good", dataset_name=None, dataset_index=1), row(hash="ref-other", dataset_index=2),
            row(hash="ref-bad-label", answer_label="Z", dataset_index=3)]
    write_raw(d / "a.parquet", rows)
    return {"path": str(d), "preset": "reference", "name": "my_reference"}, \
        {"ref-good": KEPT, "ref-other": KEPT, "ref-bad-label": "answer_label_not_in_options"}


BUILDERS = {"reference": reference, "pmc_vqa": pmc_vqa, "slake": slake, "vqa_rad": vqa_rad,
            "path_vqa": path_vqa, "omnimedvqa": omnimedvqa, "medxpertqa": medxpertqa}

# The column of an hf_bytes row the `expected` keys refer to.
ROW_KEY = {"reference": lambda r: r["hash"], "pmc_vqa": lambda r: r["question"], "slake": lambda r: r["question"],
           "vqa_rad": lambda r: r["question"] + r["answer"], "path_vqa": lambda r: r["question"] + r["answer"],
           "omnimedvqa": lambda r: r["question"], "medxpertqa": lambda r: r["hash"]}
