"""The `vlprep` command: `vlprep --help` lists the pipeline's stages and what each writes (from dvc.yaml);
`vlprep show SPLIT` prints a few output rows as text for a quick look in a terminal. The pipeline itself
runs with `dvc repro`."""
from __future__ import annotations

import argparse
import io
import re
import sys
import textwrap
from pathlib import Path

import yaml

# What each stage is for; its outputs are read from dvc.yaml.
STAGES = {
    "raw": "the built-in offline sample of raw parquet, with some bad rows",
    "hf_bytes": "raw parquet -> a datasets.load_from_disk directory per split, image bytes embedded, "
                "with a dataset card (README.md)",
    "tokenizer": "the Qwen2.5-VL tokenizer, built offline",
    "verl": "hf_bytes -> verl RL parquet (prompt, images, reward_model, extra_info with token counts)",
    "trl": "hf_bytes -> TRL SFT parquet (messages, images, rendered text, token counts)",
    "select": "the rows verl and trl leave out: contaminated train rows (audit.drop_train_contaminated), "
              "rows outside the seeded subset (subset)",
    "llamafactory": "hf_bytes -> LLaMA-Factory sharegpt SFT parquet (messages, images, token counts)",
    "llamafactory_info": "LLaMA-Factory's dataset_info.json naming every llamafactory split (vlprep_<split>)",
    "swift": "hf_bytes -> ms-swift SFT parquet (messages, images, token counts)",
    "swift_grpo": "hf_bytes -> ms-swift GRPO parquet (prompt messages, images, solution and reward columns)",
    "card": "dataset cards next to the verl and trl split directories",
    "preview": "a self-contained HTML page with sampled rows and dropped rows",
    "export": "Hub-ready folders (off by default: export.products in params.yaml)",
}
SIDE = "every data stage also writes metrics/<stage>/<split>.json, plots/<stage>/<split>/ and " \
       "data/rejects/<stage>/<split>.parquet"


def find_dvc_yaml() -> Path | None:
    for base in (Path.cwd(), Path(__file__).resolve().parents[2]):
        if (base / "dvc.yaml").is_file():
            return base / "dvc.yaml"
    return None


def stage_lines() -> list[str]:
    path = find_dvc_yaml()
    stages = yaml.safe_load(path.read_text()).get("stages", {}) if path else {}
    params = path.parent / "params.yaml" if path else None
    params = yaml.safe_load(params.read_text()) if params and params.is_file() else {}

    def resolve(match: re.Match) -> str:  # ${tokenizer.out} -> its value in params.yaml
        value = params
        for part in match.group(1).split("."):
            value = value.get(part, {}) if isinstance(value, dict) else {}
        return value if isinstance(value, str) else match.group(0)

    lines = []
    for name in stages or STAGES:
        body = stages.get(name, {})
        body = body.get("do", body)
        outs = [next(iter(o)) if isinstance(o, dict) else o for o in body.get("outs", [])]
        foreach = str(stages.get(name, {}).get("foreach", ""))
        var = "<product>" if "products" in foreach else "<split>" if foreach else ""
        lines += textwrap.wrap(f"{name + ('@' + var if var else ''):<18} {STAGES.get(name, '')}", 100,
                               initial_indent="  ", subsequent_indent=" " * 21)
        if outs:
            writes = ", ".join(re.sub(r"\$\{([\w.]+)\}", resolve, o.replace("${key}", var).replace("${item}", var))
                               for o in outs)
            lines += textwrap.wrap(f"writes {writes}", 100, initial_indent=" " * 21, subsequent_indent=" " * 21)
    return lines


def epilog() -> str:
    return "\n".join(["pipeline stages (run them with `dvc repro`; defined in dvc.yaml):", *stage_lines(),
                      "", textwrap.fill(SIDE, 100), "",
                      "examples:", "  dvc repro && vlprep show train", "  vlprep show test --target verl -n 5"])


def image_summary(data: bytes) -> str:
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as im:
            return f"{im.format} {im.width}x{im.height}"
    except Exception:  # shown, not validated
        return f"{len(data)} bytes"


def show(split: str, target: str, n: int, root: Path) -> int:
    import pyarrow.parquet as pq

    from vlprep.products.preview import trl_preview_row, verl_preview_row
    from vlprep.io.sources import split_files

    path = root / "data" / target / split  # its parts: part-00000.parquet, ...
    if not path.is_dir():
        print(f"vlprep show: {path} does not exist; run `dvc repro` first"
              + (" (and add the split to trl.splits)" if target == "trl" else ""), file=sys.stderr)
        return 1
    row_fn = verl_preview_row if target == "verl" else trl_preview_row
    shown = 0
    files = [pq.ParquetFile(f) for f in split_files(path)]
    total = sum(pf.metadata.num_rows for pf in files)
    batches = (b for pf in files for b in pf.iter_batches(batch_size=max(1, min(n, 64))))
    for batch in batches:
        for row in batch.to_pylist():
            if shown == n:
                break
            r = row_fn(shown, row)
            print(f"=== {target} {split} row {shown} of {total}: {r.dataset_name} #{r.dataset_index}")
            print(f"images ({len(r.images)}): " + ", ".join(image_summary(b) for b in r.images))
            print(f"question: {r.question}")
            print("options:")
            for label, text in r.options.items():
                print(f"  {'*' if label == r.answer_label else ' '} {label}. {text}")
            print(f"answer: {r.answer_label}. {r.answer}")
            print("tokens: " + ", ".join(f"{k}={v}" for k, v in r.tokens.items()))
            print("--- " + ("prompt (user turn)" if target == "verl" else "text"))
            print(r.model_input.rstrip("\n"))
            print()
            shown += 1
        if shown == n:
            break
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="vlprep", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Multiple-choice visual-QA parquet -> HF datasets, verl and TRL training data (a DVC pipeline).",
        epilog=epilog())
    sub = ap.add_subparsers(dest="command", metavar="COMMAND")
    sp = sub.add_parser("show", help="print a few output rows as text (prompt, options, answer, token counts)")
    sp.add_argument("split")
    sp.add_argument("--target", choices=["verl", "trl"], default="verl", help="which output (default: verl)")
    sp.add_argument("-n", type=int, default=3, help="rows to print (default: 3)")
    sp.add_argument("--root", type=Path, default=Path("."), help="the project directory (default: .)")
    sub.add_parser("stages", help="list the pipeline stages and what each writes")
    args = ap.parse_args(argv)
    if args.command == "show":
        return show(args.split, args.target, args.n, args.root)
    if args.command == "stages":
        print(epilog())
        return 0
    ap.print_help()
    return 0


if __name__ == "__main__":
    sys.exit(main())
