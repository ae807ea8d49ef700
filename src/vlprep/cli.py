"""The `vlprep` command. `vlprep --help` lists the pipeline's stages and what each writes; `vlprep show
SPLIT` prints a few output rows as text; `vlprep paths` prints what trainer configs name by path; `vlprep
clean` removes the files of targets and splits the params no longer build; `vlprep deps` checks or
writes dvc.yaml. The pipeline itself runs with `dvc repro`."""
from __future__ import annotations

import argparse
import io
import shutil
import sys
import textwrap
from pathlib import Path

SIDE = ("every data stage also writes metrics/<stage>/<split>.json, plots/<stage>/<split>/ and "
        "data/rejects/<stage>/<split>.parquet")


def stage_lines() -> list[str]:
    from vlprep.pipeline import stages

    lines = []
    for stage in stages():
        var = ("" if not stage.foreach else "<product>" if "products" in stage.foreach else
               "<name>" if "references" in stage.foreach else "<split>")
        lines += textwrap.wrap(f"{stage.name + ('@' + var if var else ''):<18} {stage.comment}", 100,
                               initial_indent="  ", subsequent_indent=" " * 21)
        outs = [o.replace("${key}", var).replace("${item}", var) for o in stage.outs + stage.metrics
                if not o.startswith("metrics/") and not o.startswith("data/rejects/")]
        if outs:
            lines += textwrap.wrap(f"writes {', '.join(outs)}", 100, initial_indent=" " * 21, subsequent_indent=" " * 21)
    return lines


def epilog() -> str:
    return "\n".join(["pipeline stages (run them with `dvc repro`; dvc.yaml is generated from src/vlprep/pipeline.py):",
                      *stage_lines(), "", textwrap.fill(SIDE, 100), "",
                      "examples:", "  dvc repro && vlprep show train", "  vlprep show test --target verl -n 5",
                      "  vlprep paths"])


def image_summary(data: bytes) -> str:
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as im:
            return f"{im.format} {im.width}x{im.height}"
    except Exception:  # shown, not validated
        return f"{len(data)} bytes"


def built(root: Path) -> dict[str, list[str]]:
    from vlprep.core.params import load_targets

    return load_targets(root / "params.yaml")


def show(split: str, target: str, n: int, root: Path) -> int:
    import pyarrow.parquet as pq

    from vlprep.core import paths
    from vlprep.core.targets import TARGETS
    from vlprep.io.sources import split_files
    from vlprep.products.preview import preview_row

    if split not in built(root)[target]:
        print(f"vlprep show: params.yaml does not build {target}[{split}]: add {split} to targets.{target} "
              f"and run `dvc repro`", file=sys.stderr)
        return 1
    path = root / paths.output_dir(target, split)
    if not path.is_dir():
        print(f"vlprep show: {path} does not exist; run `dvc repro` first", file=sys.stderr)
        return 1
    shown_as = TARGETS[target].shown_as
    files = [pq.ParquetFile(f) for f in split_files(path)]
    total = sum(pf.metadata.num_rows for pf in files)
    rows = (row for pf in files for b in pf.iter_batches(batch_size=max(1, min(n, 64))) for row in b.to_pylist())
    for shown, row in zip(range(n), rows):
        r = preview_row(shown_as, shown, row)
        print(f"=== {target} {split} row {shown} of {total}: {r.dataset_name} #{r.dataset_index}")
        print(f"images ({len(r.images)}): " + ", ".join(image_summary(b) for b in r.images))
        print(f"question: {r.question}")
        print("options:")
        for label, text in r.options.items():
            print(f"  {'*' if label == r.answer_label else ' '} {label}. {text}")
        print(f"answer: {r.answer_label}. {r.answer}")
        print("tokens: " + ", ".join(f"{k}={v}" for k, v in r.tokens.items()))
        print(f"--- {shown_as}")
        print(r.model_input.rstrip("\n"))
        print()
    return 0


def trainer_paths(root: Path) -> dict[str, Path]:
    """What trainer configs name by path: the reward files (verl's custom_reward_function.path, ms-swift's
    --external_plugins), the tokenizer, LLaMA-Factory's dataset_dir."""
    import vlprep.scoring as scoring
    from vlprep.core.params import load_section

    package = Path(scoring.__file__).resolve().parent
    return {"reward": package / "reward.py", "swift_reward": package / "swift_reward.py",
            "tokenizer": (root / load_section("tokenizer", root / "params.yaml").out).resolve(),
            "llamafactory_dataset_dir": (root / "data").resolve()}


def stale_outputs(root: Path) -> list[Path]:
    """Files of targets and splits the params no longer build (left behind: DVC does not remove them), and
    of curation and reference stages the params no longer have."""
    from vlprep.core import paths
    from vlprep.core.params import load_section
    from vlprep.core.targets import TARGETS

    targets = built(root)
    targets["curation"] = list(load_section("curation", root / "params.yaml").rollouts)
    references = list(load_section("audit", root / "params.yaml").references)
    stale = []
    for target, outputs in [*((t, (paths.DATA / t, paths.REJECTS / t, paths.METRICS / t, paths.PLOTS / t))
                                for t in TARGETS),
                            ("curation", (paths.CURATION_DIR, paths.METRICS / "curation", paths.PLOTS / "curation")),
                            ("references", (paths.REFERENCES_DIR, paths.METRICS / "references"))]:
        wanted = references if target == "references" else targets[target]
        for where in outputs:
            for p in sorted((root / where).glob("[!.]*")):  # not DVC's .gitignore
                split = p.name.removesuffix(".parquet").removesuffix(".problems").removesuffix(".json")
                if split not in wanted:
                    stale.append(p)
    return stale


def clean(root: Path, dry_run: bool) -> int:
    for path in stale_outputs(root):
        print(("would remove " if dry_run else "removed ") + str(path.relative_to(root)))
        if not dry_run:
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    return 0


def deps(check: bool) -> int:
    from vlprep import pipeline

    if not check:
        pipeline.write()
        return 0
    problems = pipeline.check()
    for p in problems:
        print(f"vlprep deps: {p}", file=sys.stderr)
    return 1 if problems else 0


def main(argv: list[str] | None = None) -> int:
    from vlprep.core.targets import TARGETS

    ap = argparse.ArgumentParser(
        prog="vlprep", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Visual-QA data -> HF datasets and verl / TRL / LLaMA-Factory / ms-swift training data (a DVC pipeline).",
        epilog=epilog())
    sub = ap.add_subparsers(dest="command", metavar="COMMAND")
    sp = sub.add_parser("show", help="print a few output rows as text (prompt, options, answer, token counts)")
    sp.add_argument("split")
    sp.add_argument("--target", choices=list(TARGETS), default="verl", help="which output (default: verl)")
    sp.add_argument("-n", type=int, default=3, help="rows to print (default: 3)")
    sp.add_argument("--root", type=Path, default=Path("."), help="the project directory (default: .)")
    pp = sub.add_parser("paths", help="print the absolute paths trainer configs name (reward files, tokenizer)")
    pp.add_argument("--root", type=Path, default=Path("."))
    cp = sub.add_parser("clean", help="remove the files of targets and splits the params no longer build")
    cp.add_argument("--dry-run", action="store_true", help="list them only")
    cp.add_argument("--root", type=Path, default=Path("."))
    dp = sub.add_parser("deps", help="check (--check) or write (--write) dvc.yaml from src/vlprep/pipeline.py")
    mode = dp.add_mutually_exclusive_group(required=True)
    mode.add_argument("--check", action="store_true")
    mode.add_argument("--write", action="store_true")
    sub.add_parser("stages", help="list the pipeline stages and what each writes")
    args = ap.parse_args(argv)
    if args.command == "show":
        return show(args.split, args.target, args.n, args.root)
    if args.command == "paths":
        for name, path in trainer_paths(args.root).items():
            print(f"{name}: {path}")
        return 0
    if args.command == "clean":
        return clean(args.root, args.dry_run)
    if args.command == "deps":
        return deps(args.check)
    if args.command == "stages":
        print(epilog())
        return 0
    ap.print_help()
    return 0


if __name__ == "__main__":
    sys.exit(main())
