"""Named column mappings for public medical VQA schemas: `inputs.<split>: [{path: ..., preset: NAME}]`.

A preset is only a mapping (the keys of params.ColumnMapping) plus the file format its source ships in.
Each names its source and licence note (check the licence yourself before training on or redistributing
the data; notes reflect the dataset cards at the time of writing) and the quirks the mapping handles.
tests/test_presets.py builds a small file in each exact schema and file type, quirks included.
docs/inputs.md#presets summarises this file in a table."""
from __future__ import annotations

PRESETS: dict[str, dict] = {
    # The pipeline's own raw schema (docs/formats.md §1): what a plain string `inputs.<split>` reads.
    "reference": {
        "format": "parquet",
        "source": "docs/formats.md §1 (this project's raw schema)",
        "licence": "yours",
        "columns": {
            "images": "images", "question": "question", "options": "options", "answer_label": "answer_label",
            "answer": "answer", "reasoning": "reasoning", "dataset_name": "dataset_name",
            "dataset_index": "dataset_index", "hash": "hash", "misc": "misc",
            "optional": ["answer", "reasoning", "dataset_name", "dataset_index", "hash", "misc"],
        },
    },
    # PMC-VQA: train.csv / test.csv + an image folder (image_root: the folder holding Figure_path files).
    # Quirks: `Choice A`..`Choice D` values carry their own prefix (" A:Tumor"), stripped when it is the
    # column's own letter; about 31 of the 177k train rows have an Answer_label that is not among the
    # choices (dropped: answer_label_not_in_options) or an Answer text equal to another choice's text
    # (dropped: answer_conflicts_with_label). Answer_label is the truth otherwise; no index column.
    "pmc_vqa": {
        "format": "csv",
        "source": "https://huggingface.co/datasets/xmcmic/PMC-VQA (github.com/xiaoman-zhang/PMC-VQA)",
        "licence": "CC BY-SA 4.0 (dataset card); figures from PubMed Central open-access articles",
        "columns": {
            "image": "Figure_path", "question": "Question",
            "option_columns": {"A": "Choice A", "B": "Choice B", "C": "Choice C", "D": "Choice D"},
            "strip_option_prefix": True, "answer_label": "Answer_label", "answer": "Answer",
            "answer_conflict": "drop",
        },
    },
    # SLAKE (original release): train.json / validate.json / test.json, each a JSON array, + imgs/
    # (image_root: the imgs folder; img_name is e.g. "xmlab102/source.jpg"). Open-ended and closed
    # (mostly yes/no) questions, no options: question_type open / yesno. Quirks: bilingual (q_lang "en" /
    # "zh"; both kept, q_lang in misc); "CLOSED" answers are not always yes/no ("Left", "CT").
    "slake": {
        "format": "json",
        "source": "https://www.med-vqa.com/slake (HF mirror: BoKelvin/SLAKE)",
        "licence": "see the release's terms (research use); HF mirrors' cards differ",
        "columns": {
            "image": "img_name", "question": "question", "answer": "answer", "dataset_index": "qid",
            "misc": ["q_lang", "answer_type", "content_type", "modality", "location"],
            "optional": ["content_type", "modality", "location"],
        },
    },
    # VQA-RAD as the HF parquet (image struct with bytes, question, answer). Open and yes/no questions,
    # no options, no index or reasoning. Quirk: many questions per image, near-duplicate questions.
    "vqa_rad": {
        "format": "parquet",
        "source": "https://huggingface.co/datasets/flaviagiammarino/vqa-rad (original: osf.io/89kps)",
        "licence": "CC0 1.0",
        "columns": {"image": "image", "question": "question", "answer": "answer"},
    },
    # PathVQA as the HF parquet (same shape as VQA-RAD). About half yes/no. Quirk: answers are
    # lower-case; open answers are short phrases.
    "path_vqa": {
        "format": "parquet",
        "source": "https://huggingface.co/datasets/flaviagiammarino/path-vqa",
        "licence": "MIT (dataset card); images from pathology textbooks and PEIR",
        "columns": {"image": "image", "question": "question", "answer": "answer"},
    },
    # OmniMedVQA: QA_information/Open-access/<dataset>.json, each a JSON array, + Images/ (image_root: the
    # OmniMedVQA folder, as image_path is "Images/<dataset>/..."). Quirks: option_C / option_D are absent
    # for 2- and 3-choice items (missing keys = no option); the answer is given as text (gt_answer),
    # mapped to its option's letter (no match: answer_not_in_options); question_id is a string (-> hash).
    "omnimedvqa": {
        "format": "json",
        "source": "https://huggingface.co/datasets/foreverbeliever/OmniMedVQA",
        "licence": "open-access part only; each of its source datasets keeps its own licence",
        "columns": {
            "image": "image_path", "question": "question",
            "option_columns": {"A": "option_A", "B": "option_B", "C": "option_C", "D": "option_D"},
            "answer": "gt_answer", "dataset_name": "dataset", "hash": "question_id",
            "misc": ["question_type", "modality_type"],
            "optional": ["option_C", "option_D", "modality_type", "question_type"],
        },
    },
    # MedXpertQA MM: MM/test.jsonl, MM/dev.jsonl + images/ (image_root: that folder). Options as a dict
    # (A-E), label a letter, images a list of file names. Quirks: the question text repeats the choices
    # ("Answer Choices: (A) ... (E) ...") - removed, since the prompt lists the options itself; id is a
    # string ("MM-12") (-> hash).
    "medxpertqa": {
        "format": "jsonl",
        "source": "https://huggingface.co/datasets/TsinghuaC3I/MedXpertQA (MM subset)",
        "licence": "MIT",
        "columns": {
            "images": "images", "question": "question", "options": "options", "answer_label": "label",
            "strip_question_options": True, "hash": "id",
            "misc": ["medical_task", "body_system", "question_type"],
            "optional": ["medical_task", "body_system", "question_type"],
        },
    },
}
