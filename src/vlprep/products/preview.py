"""The preview page (data/preview/index.html): a seeded sample of output rows per split and target, and of
dropped rows per reason, as one self-contained HTML file (images inline as data: URIs, no script, no
network: its Content-Security-Policy forbids any fetch). Pure: rows in, the same HTML bytes out."""
from __future__ import annotations

import base64
import html
import io
import json
import random
from dataclasses import dataclass, field

# Formats every browser shows from a data: URI, by their magic bytes; anything else is converted to PNG.
MIME = [(b"\xff\xd8\xff", "image/jpeg"), (b"\x89PNG\r\n\x1a\n", "image/png"), (b"GIF8", "image/gif"),
        (b"BM", "image/bmp")]


# Larger images are shown as a thumbnail of this side, so the page stays small with real data.
MAX_SIDE = 384


def data_uri(data: bytes) -> str:
    """The image as a data: URI: as it is if a browser shows it and it is small, else a PNG
    (re-encoded deterministically, downscaled to MAX_SIDE)."""
    from PIL import Image

    mime = next((m for magic, m in MIME if data.startswith(magic)), None)
    if mime is None and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        mime = "image/webp"
    with Image.open(io.BytesIO(data)) as im:
        large = max(im.size) > MAX_SIDE
        if mime is None or large:
            im = im.convert("RGBA" if "A" in im.getbands() else "RGB")
            im.thumbnail((MAX_SIDE, MAX_SIDE))
            out = io.BytesIO()
            im.save(out, "PNG")
            data, mime = out.getvalue(), "image/png"
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def sample_positions(total: int, k: int, seed: int, *labels: str) -> list[int]:
    """k row positions out of total, sorted, from a generator seeded by the seed and the labels (split,
    target...), so one section's sample does not change when another section is added."""
    rng = random.Random("/".join([str(seed), *labels]))
    return sorted(rng.sample(range(total), min(k, total)))


@dataclass
class PreviewRow:
    position: int  # row number in the output file
    images: list[bytes]
    question: str
    options: dict[str, str]
    answer_label: str
    answer: str | None
    dataset_name: str | None
    dataset_index: int | None
    model_input: str  # the prompt's user content, the rendered `text` or the string messages
    tokens: dict[str, int]  # name -> count


@dataclass
class TargetSample:
    split: str
    target: str  # a target of core/targets.py
    file: str
    rows_total: int
    rows: list[PreviewRow]
    shown_as: str = "prompt"  # TargetInfo.shown_as: which column is the model input


@dataclass
class RejectSample:
    stage: str
    split: str
    reason: str
    meaning: str
    count: int  # rows dropped for this reason
    rows: list[dict]  # sampled rejects records (source, row, dataset_name, dataset_index, detail)


@dataclass
class Preview:
    title: str
    samples: list[TargetSample]
    rejects: list[RejectSample]
    notes: list[str] = field(default_factory=list)


def _model_input(shown_as: str, row: dict) -> str:
    if shown_as == "prompt":
        return row["prompt"][0]["content"]
    if shown_as == "text":
        return row["text"]
    return "\n\n".join(f"[{m['role']}]\n{m['content']}" for m in row["messages"])


def preview_row(shown_as: str, position: int, row: dict) -> PreviewRow:
    """One output row of any target as the page shows it; `shown_as` is the target's TargetInfo.shown_as.
    verl keeps the source columns in extra_info, the others at the top level."""
    info = row.get("extra_info") or row
    tokens = {k: row.get(k, info.get(k)) for k in ("prompt_tokens", "image_tokens", "total_tokens")
              if k in row or k in info}
    if "total_tokens" not in tokens:
        tokens["total"] = tokens["prompt_tokens"] + tokens["image_tokens"]
    options = json.loads(info["options"]) if info["options"] else {}  # null: an open or yes/no question
    return PreviewRow(position, [im["bytes"] for im in row["images"]], info["question"], options,
                      info["answer_label"], info["answer"], info["dataset_name"], info["dataset_index"],
                      _model_input(shown_as, row), tokens)


# What the model reads, per TargetInfo.shown_as.
INPUT_LABELS = {
    "prompt": "prompt (user turn; each &lt;image&gt; is replaced by an image)",
    "text": "text (chat template, one image pad per image)",
    "messages": "messages (each &lt;image&gt; is replaced by an image)",
}


def read_rows(files: list, positions: list[int]) -> list[dict]:
    """The rows at these positions (counted across the parquet files in order), reading only the row
    groups that hold them."""
    import pyarrow.parquet as pq

    rows, start, wanted = [], 0, iter(positions)
    nxt = next(wanted, None)
    for pf in map(pq.ParquetFile, files):
        for g in range(pf.metadata.num_row_groups):
            n = pf.metadata.row_group(g).num_rows
            if nxt is not None and nxt < start + n:
                table = pf.read_row_group(g)
                while nxt is not None and nxt < start + n:
                    rows.append(table.slice(nxt - start, 1).to_pylist()[0])
                    nxt = next(wanted, None)
            start += n
    return rows


def target_sample(target: str, shown_as: str, split: str, where: str, files: list, k: int, seed: int) -> TargetSample:
    """k seeded rows of one target's split (its parquet `files`, shown as `where`)."""
    import pyarrow.parquet as pq

    total = sum(pq.ParquetFile(f).metadata.num_rows for f in files)
    positions = sample_positions(total, k, seed, target, split)
    rows = [preview_row(shown_as, pos, row) for pos, row in zip(positions, read_rows(files, positions))]
    return TargetSample(split, target, where, total, rows, shown_as)


def reject_samples(stage: str, split: str, records: list[dict], k: int, seed: int, meanings: dict) -> list[RejectSample]:
    """Up to k seeded records per reason of one stage's rejects file (no image bytes: small)."""
    by_reason: dict[str, list[dict]] = {}
    for r in records:
        by_reason.setdefault(r["reason"], []).append(r)
    groups = []
    for reason in sorted(by_reason):
        rows = by_reason[reason]
        picked = sample_positions(len(rows), k, seed, "rejects", stage, split, reason)
        groups.append(RejectSample(stage, split, reason, meanings.get(reason, ""), len(rows), [rows[i] for i in picked]))
    return groups


CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:24px;color:#1d2430;background:#f6f7f9}
h1{font-size:22px;margin:0 0 4px} h2{font-size:18px;margin:28px 0 8px;border-bottom:2px solid #c9d1dc}
h3{font-size:15px;margin:18px 0 6px;color:#34506e}
nav a{margin-right:12px} .note{color:#5b6675}
article.row{background:#fff;border:1px solid #d7dde5;border-radius:6px;padding:12px;margin:10px 0}
.meta{color:#5b6675;font-size:12px} .imgs{display:flex;flex-wrap:wrap;gap:6px;margin:8px 0}
.imgs img{max-height:160px;max-width:240px;border:1px solid #ccd;background:#eee}
ol.options{list-style:none;padding-left:0;margin:6px 0} ol.options li{padding:2px 6px}
ol.options li.correct{background:#dff3e2;font-weight:600}
pre{white-space:pre-wrap;word-break:break-word;background:#f0f2f5;border:1px solid #dde2e8;padding:8px;
font-size:12px;max-height:320px;overflow:auto}
table{border-collapse:collapse;background:#fff} td,th{border:1px solid #d7dde5;padding:3px 8px;text-align:left;
vertical-align:top;font-size:13px} .tokens span{display:inline-block;margin-right:10px}
"""


def _e(value) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _row_html(s: TargetSample, r: PreviewRow) -> str:
    imgs = "".join(f'<img class="qimg" alt="image {i + 1} of row {r.position}" src="{data_uri(b)}">'
                   for i, b in enumerate(r.images))
    options = "".join(f'<li class="{"correct" if k == r.answer_label else ""}"><b>{_e(k)}.</b> {_e(v)}</li>'
                      for k, v in r.options.items())
    tokens = "".join(f"<span>{_e(k)}: <b>{v}</b></span>" for k, v in r.tokens.items())
    label = f"{_e(s.target)} {INPUT_LABELS[s.shown_as]}"
    return (f'<article class="row" data-split="{_e(s.split)}" data-target="{_e(s.target)}" '
            f'data-images="{len(r.images)}">'
            f'<div class="meta">row {r.position} of {_e(s.file)} · {_e(r.dataset_name)} #{_e(r.dataset_index)} · '
            f"{len(r.images)} image(s)</div>"
            f'<div class="imgs">{imgs}</div>'
            f'<div class="question"><b>Question:</b> {_e(r.question)}</div>'
            f'<ol class="options">{options}</ol>'
            f'<div class="answer"><b>Correct answer:</b> {_e(r.answer_label)}. {_e(r.answer)}</div>'
            f'<div class="tokens">{tokens}</div>'
            f"<details open><summary>{label}</summary><pre>{_e(r.model_input)}</pre></details>"
            "</article>")


def _rejects_html(group: RejectSample) -> str:
    rows = "".join(
        f'<tr class="reject"><td>{_e(r["source"])}</td><td>{_e(r["row"])}</td><td>{_e(r["dataset_name"])}</td>'
        f'<td>{_e(r["dataset_index"])}</td><td>{_e(r["detail"])}</td></tr>' for r in group.rows)
    return (f'<h3 id="rej-{_e(group.stage)}-{_e(group.split)}-{_e(group.reason)}">{_e(group.stage)} · '
            f"{_e(group.split)} · <code>{_e(group.reason)}</code>: {group.count} row(s)</h3>"
            f'<p class="note">{_e(group.meaning)}</p>'
            f'<table class="rejects" data-stage="{_e(group.stage)}" data-split="{_e(group.split)}" '
            f'data-reason="{_e(group.reason)}"><tr><th>source</th><th>row</th><th>dataset_name</th>'
            f"<th>dataset_index</th><th>detail</th></tr>{rows}</table>")


def render_preview(p: Preview) -> str:
    nav = "".join(f'<a href="#{_e(s.target)}-{_e(s.split)}">{_e(s.target)} · {_e(s.split)}</a>' for s in p.samples)
    body = [f"<h1>{_e(p.title)}</h1>", *(f'<p class="note">{_e(n)}</p>' for n in p.notes),
            f'<nav>{nav}<a href="#rejects">dropped rows</a></nav>']
    for s in p.samples:
        body.append(f'<section class="sample" id="{_e(s.target)}-{_e(s.split)}">'
                    f"<h2>{_e(s.target)} · {_e(s.split)}: {len(s.rows)} of {s.rows_total} rows "
                    f"(<code>{_e(s.file)}</code>)</h2>" + "".join(_row_html(s, r) for r in s.rows) + "</section>")
    body.append('<section id="rejects"><h2>Dropped rows: a sample per stage, split and reason</h2>')
    if not p.rejects:
        body.append('<p class="note">No row was dropped.</p>')
    body += [_rejects_html(g) for g in p.rejects]
    body.append("</section>")
    csp = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f'<meta http-equiv="Content-Security-Policy" content="{csp}">'
            f"<title>{_e(p.title)}</title><style>{CSS}</style></head>\n<body>\n"
            + "\n".join(body) + "\n</body></html>\n")
