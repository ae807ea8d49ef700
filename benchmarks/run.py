"""Benchmark the pipeline stages on realistic generated raw data (issue 8).

    python benchmarks/run.py                                 # N=10k and 100k, num_proc 1 and 2
    python benchmarks/run.py --rows 10000 --num-proc 1 --stages hf_bytes floor
    python benchmarks/run.py --rows 10000 --repeat 3 --code 1a2b3c4   # median of 3, code of a commit
    python benchmarks/run.py --profile figure --rows 4000 --num-proc 2 --stages ref_hf_bytes ref_verl ref_trl e2e_core
                                                             # dvc repro against the reference scripts

For each N it generates raw data once (reused while the generator config is unchanged), then runs the
real stage scripts as child processes in a scratch project under benchmarks/work/, each inside a fresh
wrapper process, so the wrapper's RUSAGE_CHILDREN peak RSS belongs to that one measurement alone.
"verl_resize" is verl re-encoding images to a training cap: the CPU-bound case, where num_proc shows.
"floor" is what any stage must at least do: a plain pyarrow read of the raw files plus a zstd parquet
write (and fsync, as the stages' atomic writers do) of the same bytes. "tokenizer_load" is the start-up
verl and trl pay whatever N (loading the tokenizer as they do), so their per-row part can be compared
with the floor. "ref_hf_bytes", "ref_verl", "ref_trl": the reference scripts this project replaces, run on
the same data as the measured peer of the end-to-end `dvc repro` runs ("e2e*"; benchmarks/reference.py
says how to get them: --reference-scripts DIR; skipped when absent). Results go to benchmarks/results.json,
merged with earlier results of the same data and code. The code measured is a snapshot of src/ and
stages/ (work tree or --code commit) taken at start, so edits made during a run do not mix into its numbers.
"""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pyarrow as pa
import pyarrow.parquet as pq
import yaml

import reference

REPO = Path(__file__).resolve().parent.parent
WORK = REPO / "benchmarks" / "work"
STAGES = ["floor", "tokenizer_load", "hf_bytes", "verl", "trl", "verl_resize", "audit", "audit_decode_all",
          *reference.STAGES, "e2e_copy", "e2e_core", "e2e_core_np", "e2e_core_jobs4", "e2e",
          "ray_startup", "hf_bytes@ray", "verl@ray", "trl@ray"]
# End to end: `dvc repro` of every stage in a fresh copy of the repo (new git repo, empty DVC cache, its own
# DVC state: nothing hashed before), train = the raw data, test = its first file. "core": the reference
# scripts' products (hf_bytes, verl train+test, trl train; the other targets off) plus what vlprep adds
# (audit, test split, summary, cards, preview), with the cache link type the repo configures, or DVC's
# default (copy) for "e2e_copy"; "e2e": params.yaml's targets as they are (the defaults).
# "e2e_core_jobs4": e2e_core with DVC hashing the files of a directory output in 4 threads (core.checksum_jobs;
# DVC's default is min(4, cores // 2), 1 here). Every stage's num_proc is params.yaml's (the defaults a user
# gets), except in "e2e_core_np": --num-proc for every stage.
E2E = {"e2e_copy": ("core", "copy", {}), "e2e_core": ("core", None, {}), "e2e": ("all", None, {}),
       "e2e_core_np": ("core_np", None, {}), "e2e_core_jobs4": ("core", None, {"core.checksum_jobs": "4"})}
CORE_TARGETS = {"verl": ["train", "test"], "trl": ["train"], "llamafactory": [], "swift": [], "swift_grpo": []}
# engine: ray (docs/ray.md): the same stages as Ray tasks in a Ray the stage starts with
# num_proc CPUs. "ray_startup" is the fixed cost of that: a fresh interpreter starting Ray as the stages
# do and stopping it, no data. Measured only with --engines ray.
RAY_STAGES = ("ray_startup", "hf_bytes@ray", "verl@ray", "trl@ray")
RAY_STARTUP = ("import sys; from vlprep.engine.ray_engine import connect; "
               "connect(None, int(sys.argv[1]))()")
# What verl and trl pay before their first row, whatever N: a fresh interpreter importing vlprep.prompting.tokens and
# loading the tokenizer as the stages do (AutoTokenizer: transformers import + Qwen2.5-VL's 151k-token BPE).
# Measured once per N like the floor, so the report can show the per-row part of each stage on its own.
TOKENIZER_LOAD = "import sys; from vlprep.prompting.tokens import load_tokenizer; load_tokenizer(sys.argv[1])"
SINGLE_PROCESS = ("floor", "tokenizer_load", "ray_startup")
# verl with images re-encoded to a typical training cap (256*28*28 pixels, ~2/3 of these images are
# above it): decode, resize and encode make it the CPU-bound stage, where num_proc shows. ~10 ms an
# image here, so it is measured once, at N <= VARIANT_MAX_ROWS only.
VARIANTS = {"verl_resize": ("verl", {"resize_to_max_pixels": True, "max_pixels": 256 * 28 * 28})}
VARIANT_MAX_ROWS = 10_000
# The audit decodes each distinct image once per process (audit.hash_cache_images); this benchmark's rows
# draw from a pool of images, so most uses are repeats. "audit_decode_all" turns the reuse off: the cost
# on data whose images are all distinct.
AUDIT_VARIANTS = {"audit": {}, "audit_decode_all": {"hash_cache_images": 0}}
# Output each stage writes in the scratch project (deleted after measuring, to keep disk use bounded).
OUTPUTS = {"floor": "floor_out", "hf_bytes": "data/hf_bytes/train", "verl": "data/verl/train",
           "verl_resize": "data/verl/train",
           "trl": "data/trl/train", "tokenizer_load": None, "audit": "data/audit", "audit_decode_all": "data/audit",
           "ray_startup": None,
           "hf_bytes@ray": "data/hf_bytes_ray/train", "verl@ray": "data/verl/train", "trl@ray": "data/trl/train",
           **reference.OUTPUTS,
           **{e2e: None for e2e in E2E}}
KEPT = ("hf_bytes", "ref_hf_bytes")  # the input of later stages: kept until the project is removed
# audit compares train with test; here test is the same data as train (hf_bytes/test links to hf_bytes/train):
# the worst case, every row contaminated, with the image pool's repeats as exact copies across rows.


# Raw data profiles. "scan": 1-6 images a row (mean 3.5), ~20 KB mean "scan" images. "figure" (realistic
# sizes, like journal figures): 1-3 images a row, ~80 KB mean, 1 PNG in 32 a 2-3 MB photo, and distinct
# questions (scan: the sample's five questions in turn). Both: 64-1024 px
# sides, JPEG and PNG alternating by row, only the image forms real data has, no bad rows; row groups of
# 100 rows, as `datasets` writes image datasets; 5000 rows per file.
PROFILES = {"scan": 6, "figure": 3}  # profile -> max images per row
# The rows draw their images from a pool of this many (half JPEG, half PNG): ~10 uses an image at 20k figure
# rows, like VQA-RAD or SLAKE (many questions per image). --image-pool 40000 at 20k rows: most images
# used once or twice, like PMC-VQA, where the audit decodes nearly every image.
POOL = 4096


def sample_config(rows: int, pool: int, profile: str):
    from vlprep.ingest.sample import SampleConfig

    return SampleConfig(rows=rows, shards=max(2, rows // 5000), seed=0, max_images_per_row=PROFILES[profile],
                        min_image_size=64, max_image_size=1024, bad_rows=False,
                        image_forms=("binary", "struct"), image_pool=pool, image_style=profile, row_group_size=100,
                        question_style="distinct" if profile == "figure" else "cycle")


def ensure_raw(rows: int, pool: int, profile: str) -> Path:
    from vlprep.ingest.sample import write_split

    config = sample_config(rows, pool, profile)
    out = WORK / ((f"raw-{rows}" if profile == "scan" else f"raw-{profile}-{rows}") + ("" if pool == POOL else f"-pool{pool}"))
    meta = {**dataclasses.asdict(config), "image_forms": list(config.image_forms)}
    if (out / "meta.json").is_file() and json.loads((out / "meta.json").read_text())["config"] == meta:
        return out
    shutil.rmtree(out, ignore_errors=True)
    t = time.perf_counter()
    write_split(out / "train", "train", config)
    files = sorted((out / "train").glob("*.parquet"))
    # Images counted from parquet metadata: values of the first `images` leaf column (no empty lists here).
    images = sum(pq.ParquetFile(f).metadata.row_group(g).column(0).num_values
                 for f in files for g in range(pq.ParquetFile(f).metadata.num_row_groups))
    facts = {"config": meta, "generate_s": round(time.perf_counter() - t, 1), "files": len(files),
             "bytes": sum(f.stat().st_size for f in files), "images": int(images)}
    facts["mean_image_kb"] = round(facts["bytes"] / facts["images"] / 1000, 1)  # file bytes / image: ~image size
    (out / "meta.json").write_text(json.dumps(facts, indent=1))
    print(f"generated {rows} rows in {facts['generate_s']} s: {facts}", file=sys.stderr)
    return out


def floor_child(raw_dir: str, out_dir: str) -> None:
    """The floor, run as a child: stream-read every raw file, write its batches with zstd, fsync."""
    out = Path(out_dir)
    out.mkdir(parents=True)
    t = time.perf_counter()
    written = []
    for i, path in enumerate(sorted(Path(raw_dir).rglob("*.parquet"))):
        pf = pq.ParquetFile(path, pre_buffer=False)
        # One output per input: the binary and struct image files have different schemas.
        with pq.ParquetWriter(out / f"part-{i:03d}.parquet", pf.schema_arrow, compression="zstd") as w:
            for batch in pf.iter_batches(batch_size=64):  # 64 rows: the stages' output row group size
                w.write_batch(batch)
        written.append(out / f"part-{i:03d}.parquet")
    t_write = time.perf_counter() - t
    for path in written:
        with open(path, "rb+") as f:
            os.fsync(f.fileno())
    print(json.dumps({"read_write_s": round(t_write, 2), "fsync_s": round(time.perf_counter() - t - t_write, 2)}))


def measure_child(out_json: str, cmd: list[str]) -> None:
    """Fresh wrapper process: run cmd, record its wall time, CPU time, peak RSS of the largest process
    (ru_maxrss, KiB on Linux), and the sampled peak RSS summed over the process tree (num_proc workers)."""
    def busy() -> float:
        c = psutil.cpu_times()
        return c.user + c.nice + c.system + c.irq + c.softirq

    busy0, t = busy(), time.perf_counter()
    proc = subprocess.Popen(cmd)
    parent, tree_peak, driver_peak, worker_peak = psutil.Process(proc.pid), 0, 0, 0
    own = parent.cmdline()
    while proc.poll() is None:
        try:
            procs = [parent, *parent.children(recursive=True)]
            rss = {p: p.memory_info().rss for p in procs}
            tree_peak = max(tree_peak, sum(rss.values()))
            driver_peak = max(driver_peak, rss[parent])
            # Ray names its worker processes ray::<task> (ray::run_part, ray::IDLE); local workers are forks
            # (the stage's own command line). Ray's other processes (GCS, raylet, log monitor) are neither.
            worker_peak = max([worker_peak, *(r for p, r in rss.items() if p is not parent
                                              and (p.name().startswith("ray::") or p.cmdline() == own))])
        except psutil.Error:
            pass  # a process ended while sampling
        time.sleep(0.05)
    wall = time.perf_counter() - t
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = ru.ru_utime + ru.ru_stime
    # Others' work on the machine skews wall time (cpu_s much less): CPU seconds used meanwhile by
    # every other process (and this wrapper's sampling) tells whether a number is trustworthy.
    Path(out_json).write_text(json.dumps({"rc": proc.returncode, "wall_s": wall, "cpu_s": cpu, "sys_s": ru.ru_stime, "others_cpu_s": busy() - busy0 - cpu,
                                          "maxrss_mb": ru.ru_maxrss / 1024, "tree_rss_mb": tree_peak / 2**20,
                                          "driver_rss_mb": driver_peak / 2**20, "worker_rss_mb": worker_peak / 2**20}))


PIPELINE_FILES = ("dvc.yaml", "params.yaml", ".dvc/config")


def snapshot_code(ref: str | None) -> tuple[Path, str]:
    """Copy src/ and stages/, and the pipeline files that go with them (dvc.yaml lists the modules each
    stage imports), of the work tree or of git REF, under benchmarks/work/ and run the stages from there:
    others edit the tree during a long run, and every number must belong to one code state."""
    tmp = WORK / "code.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    if ref:
        archive = subprocess.run(["git", "archive", ref, "src", "stages", *PIPELINE_FILES], cwd=REPO,
                                 capture_output=True, check=True)
        subprocess.run(["tar", "-x", "-C", str(tmp)], input=archive.stdout, check=True)
    else:
        for d in ("src", "stages"):
            shutil.copytree(REPO / d, tmp / d, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        for name in PIPELINE_FILES:
            (tmp / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(REPO / name, tmp / name)
    digest = hashlib.sha256()
    for f in sorted(p for p in tmp.rglob("*") if p.is_file()):
        digest.update(str(f.relative_to(tmp)).encode() + b"\0" + f.read_bytes())
    code = WORK / f"code-{digest.hexdigest()[:12]}"
    shutil.rmtree(code, ignore_errors=True)
    tmp.rename(code)
    return code, digest.hexdigest()[:12]


def measure(cmd: list[str], cwd: Path, code: Path, env: dict | None = None) -> dict:
    result = cwd / "measure.json"
    os.sync()  # write-back still pending from an earlier measurement would slow this one's I/O
    # PYTHONPATH comes before the editable install's path entry: the stages import the snapshot's vlprep.
    env = {**os.environ, "PYTHONPATH": str(code / "src"), **(env or {})}
    stdout = subprocess.run([sys.executable, __file__, "--measure", str(result), "--", *cmd], cwd=cwd, check=True,
                            stdout=subprocess.PIPE, text=True, env=env).stdout
    m = {k: round(v, 2) for k, v in json.loads(result.read_text()).items()}
    if m["rc"]:
        sys.exit(f"{cmd} failed with exit code {m['rc']}")
    if stdout.strip().startswith("{"):  # the floor's own split of its time
        m.update(json.loads(stdout))
    return m


def stage_cmd(code: Path, stage: str, split: str = "train") -> list[str]:
    """The command dvc.yaml runs for stage@split, with the script from the code snapshot; without the
    selection file (stage select's output), which the scratch project has no stage to write."""
    body = yaml.safe_load((code / "dvc.yaml").read_text())["stages"][stage]
    cmd = body.get("do", body)["cmd"].replace("${key}", split).replace("${item}", split).split()
    return [sys.executable, str(code / cmd[1]), *(a for a in cmd[2:] if not a.startswith("data/select/"))]


def make_project(raw: Path, tokenizer: Path, num_proc: int, code: Path) -> Path:
    """A scratch project dir: the code snapshot's params.yaml with inputs and num_proc set for this run."""
    proj = WORK / "proj"
    shutil.rmtree(proj, ignore_errors=True)
    proj.mkdir(parents=True)
    params = yaml.safe_load((code / "params.yaml").read_text())
    params["inputs"] = {"train": str(raw / "train"), "test": str(raw / "train")}
    for stage in ("hf_bytes", "verl", "trl"):
        params[stage]["num_proc"] = num_proc
        params[stage]["ray_address"] = None  # a Ray in the stage (RAY_ADDRESS is cleared for the runs)
    params["model"]["tokenizer"] = str(tokenizer)  # read by every target
    (proj / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return proj


def make_e2e_project(raw: Path, code: Path, num_proc: int, targets: str, cache_type: str | None,
                     dvc_config: dict) -> Path:
    """A fresh copy of the repo (dvc.yaml, params.yaml, .dvc/config, the code snapshot) as a new git repo,
    reading the raw data in place, with an empty DVC cache and DVC state of its own, so nothing is hashed
    or cached before `dvc repro` runs."""
    proj = WORK / "e2e"
    shutil.rmtree(proj, ignore_errors=True)
    (proj / ".dvc").mkdir(parents=True)
    for name in (".gitignore", ".dvcignore", ".dvc/.gitignore"):
        if (REPO / name).is_file():
            shutil.copy(REPO / name, proj / name)
    for name in ("dvc.yaml", ".dvc/config"):  # the code's own (its params.yaml: below)
        shutil.copy(code / name, proj / name)
    for d in ("src", "stages"):
        shutil.copytree(code / d, proj / d)
    shutil.copytree(REPO / "metrics", proj / "metrics")  # in git: summary reads a switched-off target's dir
    # data/'s folders kept in git (their .gitignore): select depends on data/curation and data/references,
    # which stay empty unless curation or a reference benchmark is switched on
    tracked = subprocess.run(["git", "ls-files", "data"], cwd=REPO, capture_output=True, text=True, check=True)
    for name in tracked.stdout.split():
        (proj / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / name, proj / name)
    params = yaml.safe_load((code / "params.yaml").read_text())
    train, test = raw / "train", sorted((raw / "train").glob("*.parquet"))[0]
    params["inputs"] = params["input_data"] = {"train": str(train), "test": str(test)}
    if targets == "core_np":
        for stage in ("hf_bytes", "verl", "trl", "audit"):
            params[stage]["num_proc"] = num_proc
    if targets.startswith("core"):
        params["targets"] = CORE_TARGETS
    (proj / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    git = ["git", "-c", "user.name=bench", "-c", "user.email=bench@localhost"]
    subprocess.run(["git", "init", "-q"], cwd=proj, check=True)
    dvc = [str(Path(sys.executable).parent / "dvc")]
    subprocess.run([*dvc, "config", "--local", "core.site_cache_dir", str(proj / ".dvc-site")], cwd=proj, check=True)
    for key, value in {**({"cache.type": cache_type} if cache_type else {}), **dvc_config}.items():
        subprocess.run([*dvc, "config", "--local", key, value], cwd=proj, check=True)
    subprocess.run(["git", "add", "-A"], cwd=proj, check=True)
    subprocess.run([*git, "commit", "-qm", "bench"], cwd=proj, check=True)
    return proj


def measure_e2e(proj: Path, code: Path) -> dict:
    """`dvc repro` in proj: wall, CPU, RSS; the stage processes' own wall times (benchmarks/hooks) and
    the rest, DVC's share; then how long a no-op `dvc status` takes and the disk used."""
    times = proj / "stage_times.jsonl"
    bin_dir = str(Path(sys.executable).parent)
    env = {"PATH": f"{bin_dir}:{os.environ['PATH']}", "VLPREP_BENCH_TIMES": str(times),
           "PYTHONPATH": f"{code / 'src'}:{REPO / 'benchmarks' / 'hooks'}"}
    t0 = time.time()
    m = measure([f"{bin_dir}/dvc", "repro", "--quiet"], proj, code, env)
    t1 = time.time()
    stages = sorted((json.loads(line) for line in times.read_text().splitlines()), key=lambda t: t["start"])
    m["stages_s"] = round(sum(t["wall_s"] for t in stages), 2)
    m["dvc_s"] = round(m["wall_s"] - m["stages_s"], 2)
    name = lambda t: " ".join([Path(t["argv"][0]).stem, *t["argv"][1:]])  # noqa: E731
    m["stage_walls"] = {name(t): round(t["wall_s"], 2) for t in stages}
    # DVC's work between stages: before a stage, it hashes the earlier stage's outputs, moves them into
    # the cache, writes the lock, and checks this stage's deps; "(after)" is the last stage's commit.
    ends = [t0, *(t["end"] for t in stages)]
    m["dvc_gaps"] = {**{name(t): round(t["start"] - end, 2) for t, end in zip(stages, ends)},
                     "(after)": round(t1 - ends[-1], 2)}
    t = time.perf_counter()
    status = subprocess.run([f"{bin_dir}/dvc", "status", "--quiet"], cwd=proj, env={**os.environ, **env})
    m["status_s"], m["status_clean"] = round(time.perf_counter() - t, 2), status.returncode == 0
    t = time.perf_counter()  # what a user pays to be told nothing changed
    subprocess.run([f"{bin_dir}/dvc", "repro", "--quiet"], cwd=proj, env={**os.environ, **env}, check=True)
    m["noop_repro_s"] = round(time.perf_counter() - t, 2)
    # du counts a hard-linked file once: workspace and cache together are what the disk holds.
    du_mb = subprocess.run(["du", "-smc", "data", ".dvc/cache"], cwd=proj, capture_output=True, text=True).stdout
    m["disk_mb"] = int(du_mb.split()[-2])
    m["data_mb"] = round(du(proj / "data") / 1e6)
    return m


def set_stage_params(proj: Path, stage: str, overrides: dict, code: Path) -> None:
    """The stage's params as make_project wrote them, with `overrides` (a variant's) on top."""
    params = yaml.safe_load((proj / "params.yaml").read_text())
    code_params = yaml.safe_load((code / "params.yaml").read_text())[stage]
    changed = {"engine", *(k for _, changes in VARIANTS.values() for k in changes), *(k for v in AUDIT_VARIANTS.values() for k in v)}
    for key in changed & set(code_params):  # undo earlier variants
        params[stage][key] = code_params[key]
    params[stage].update(overrides)
    (proj / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def du(path: Path) -> int:
    return path.stat().st_size if path.is_file() else sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def machine() -> dict:
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    git = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=REPO, capture_output=True, text=True)
    return {"nproc": os.cpu_count(), "memory_gb": round(psutil.virtual_memory().total / 2**30, 1), "cpu": cpu,
            "python": platform.python_version(), "pyarrow": pa.__version__, "repo_at_report": git.stdout.strip()}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, nargs="+", default=[10000, 100000])
    ap.add_argument("--num-proc", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--stages", nargs="+", default=[s for s in STAGES if s not in RAY_STAGES], choices=STAGES)
    ap.add_argument("--engines", nargs="+", default=["local"], choices=["local", "ray"],
                    help="ray adds ray_startup and hf_bytes/verl/trl@ray (needs the ray extra)")
    # 4096: a 1 MB parquet page (what zstd sees at once) holds ~1% repeated image bytes.
    ap.add_argument("--image-pool", type=int, default=POOL, help="distinct images the rows draw from")
    ap.add_argument("--profile", choices=PROFILES, default="scan", help="raw data: image sizes (see PROFILES)")
    ap.add_argument("--out", type=Path, help="default: benchmarks/results.json (scan), results-<profile>.json")
    ap.add_argument("--repeat", type=int, default=1, help="runs per measurement; the median is kept")
    ap.add_argument("--code", metavar="GIT_REF", help="measure src/ and stages/ of this commit; default: the work tree")
    ap.add_argument("--free-raw", action="store_true",
                    help="delete each N's raw data once floor and hf_bytes are measured (disk: 100k figure rows are 16 GB)")
    ap.add_argument("--fresh", action="store_true", help="drop earlier results from --out instead of merging")
    ap.add_argument("--reference-scripts", type=Path, default=WORK / "reference" / "data_process",
                    help="directory with the reference scripts (benchmarks/reference.py says how to get them)")
    args = ap.parse_args()
    if not (args.reference_scripts / reference.SCRIPTS["ref_hf_bytes"]).is_file():
        if set(args.stages) & set(reference.STAGES) and "--stages" in sys.argv:
            sys.exit(f"no reference scripts in {args.reference_scripts}: see benchmarks/reference.py")
        args.stages = [s for s in args.stages if s not in reference.STAGES]
    ref_python = reference.ensure_venv(WORK, REPO / "requirements.lock") if set(args.stages) & set(reference.STAGES) else None
    if "ray" in args.engines:
        args.stages = [*args.stages, *(s for s in RAY_STAGES if s not in args.stages)]
        os.environ.pop("RAY_ADDRESS", None)
    args.out = args.out or REPO / "benchmarks" / ("results.json" if args.profile == "scan" else f"results-{args.profile}.json")
    code, code_id = snapshot_code(args.code)
    print(f"measuring code {code_id} ({args.code or 'work tree'}) from {code}", file=sys.stderr)
    tokenizer = WORK / "tokenizer"
    if not (tokenizer / "tokenizer.json").is_file():
        subprocess.run([sys.executable, "-m", "vlprep.prompting.qwen_tokenizer", str(tokenizer)], check=True)
    runs, raws = [], {}
    for n in args.rows:
        raw = ensure_raw(n, args.image_pool, args.profile)
        raws[n] = json.loads((raw / "meta.json").read_text())
        in_bytes = raws[n]["bytes"]
        ref_raw = [reference.ensure_input(raw / "train")] if ref_python else []
        for d in [raw / "train", *ref_raw]:  # warm cache
            subprocess.run(["cat", *map(str, d.glob("*.parquet"))], stdout=subprocess.DEVNULL)
        for num_proc in args.num_proc:
            proj = make_project(raw, tokenizer, num_proc, code)
            for stage in [s for s in STAGES if s in args.stages]:
                if stage in SINGLE_PROCESS and num_proc != args.num_proc[0]:
                    continue  # single-process: measured once per N, listed as num_proc 1
                if stage in VARIANTS and n > VARIANT_MAX_ROWS:
                    continue
                if stage in ("verl", "trl", *AUDIT_VARIANTS, *VARIANTS) and not (proj / OUTPUTS["hf_bytes"]).exists():
                    measure(stage_cmd(code, "hf_bytes"), proj, code)  # their input
                ref_cmd = lambda s: reference.command(s, args.reference_scripts, ref_python, proj, raw / "train",
                                                      tokenizer, num_proc)
                if stage in reference.STAGES[1:] and not (proj / reference.OUTPUTS["ref_hf_bytes"]).exists():
                    measure(ref_cmd("ref_hf_bytes"), proj, code, reference.environment(proj))  # their input
                if stage in AUDIT_VARIANTS and not (proj / "data/hf_bytes/test").exists():
                    (proj / "data/hf_bytes/test").symlink_to("train")
                if stage == "floor":
                    cmd = [sys.executable, __file__, "--floor", str(raw / "train"), OUTPUTS["floor"]]
                elif stage == "ray_startup":
                    cmd = [sys.executable, "-c", RAY_STARTUP, str(num_proc)]
                elif stage in RAY_STAGES:
                    script = stage.split("@")[0]
                    set_stage_params(proj, script, {"engine": "ray"}, code)
                    cmd = stage_cmd(code, script)
                    if script == "hf_bytes":  # beside the local engine's, which verl and trl read
                        cmd[-1] = OUTPUTS[stage]
                elif stage in E2E:
                    cmd = None
                elif stage in reference.STAGES:
                    cmd = ref_cmd(stage)
                elif stage == "tokenizer_load":
                    cmd = [sys.executable, "-c", TOKENIZER_LOAD, str(tokenizer)]
                elif stage in AUDIT_VARIANTS:
                    set_stage_params(proj, "audit", {"num_proc": num_proc, **AUDIT_VARIANTS[stage]}, code)
                    cmd = stage_cmd(code, "audit")
                else:
                    script, overrides = VARIANTS.get(stage, (stage, {}))
                    set_stage_params(proj, script, overrides, code)
                    cmd = stage_cmd(code, script)
                out = proj / (OUTPUTS[stage] or "no-output")
                # Wall time varies by up to ~1.6x between identical runs here (other work on the machine,
                # write-back of the output): --repeat keeps the run with the median wall time, lists all.
                ms = []
                for _ in range(1 if stage in VARIANTS else args.repeat):
                    if stage not in KEPT and out.exists():  # hf_bytes: verl/trl read it; it replaces itself
                        shutil.rmtree(out) if out.is_dir() else out.unlink()
                    if stage in reference.STAGES:  # an empty HF cache each time; prep_to_hf_bytes saves anew
                        shutil.rmtree(out, ignore_errors=True)
                        ms.append(measure(cmd, proj, code, reference.environment(proj)))
                    elif stage in E2E:
                        e2e = make_e2e_project(raw, code, num_proc, *E2E[stage])
                        ms.append(measure_e2e(e2e, code))
                        shutil.rmtree(e2e)
                    else:
                        ms.append(measure(cmd, proj, code))
                m = sorted(ms, key=lambda x: x["wall_s"])[len(ms) // 2]
                m["wall_all"] = [x["wall_s"] for x in ms]
                metrics = proj / "metrics" / VARIANTS.get(stage, (stage.split("@")[0],))[0] / "train.json"
                rows_out = json.loads(metrics.read_text())["rows_out"] if metrics.is_file() else n
                m["when"], m["code"] = time.strftime("%Y-%m-%d %H:%M"), f"{code_id} {args.code or 'work tree'}"
                runs.append({"rows": n, "num_proc": 1 if stage in SINGLE_PROCESS else num_proc, "stage": stage, **m,
                             "rows_per_s": round(n / m["wall_s"], 1), "mb_per_s": round(in_bytes / 1e6 / m["wall_s"], 1),
                             "in_mb": round(in_bytes / 1e6, 1), "out_mb": round(du(out) / 1e6, 1) if out.exists() else 0, "rows_out": rows_out})
                print(f"{n:>7} np={num_proc} {stage:9} {m['wall_s']:8.2f} s", file=sys.stderr)
                if stage not in KEPT and out.exists():  # hf_bytes is the input of verl/trl
                    shutil.rmtree(out) if out.is_dir() else out.unlink()
                if args.free_raw and stage == "hf_bytes" and not set(args.stages) & set(E2E):
                    shutil.rmtree(raw)  # later stages read hf_bytes; ensure_raw writes it again when needed
            shutil.rmtree(proj)
    # Keep earlier results for what this invocation did not measure, so a quick run and a 100k run add
    # up, if measured on the same data and code; results of other code are kept apart, for comparison.
    other_code = []
    if args.out.is_file() and not args.fresh:
        old = json.loads(args.out.read_text())
        old_raws = {int(k): v for k, v in old["raw"].items()}
        done = {(r["rows"], r["num_proc"], r["stage"]) for r in runs}
        same_data = [r for r in old["runs"] + old.get("other_code_runs", [])
                     if old_raws[r["rows"]]["config"] == raws.get(r["rows"], old_raws[r["rows"]])["config"]]
        other_code = [r for r in same_data if r.get("code", "?").split()[0] != code_id]
        runs += [r for r in same_data if r.get("code", "?").split()[0] == code_id and (r["rows"], r["num_proc"], r["stage"]) not in done]
        raws = {**old_raws, **raws}
    runs.sort(key=lambda r: (r["rows"], r["num_proc"], STAGES.index(r["stage"])))
    report(runs, raws, args.out, other_code)


def report(runs: list[dict], raws: dict, out: Path, other_code: list[dict]) -> None:
    print(f"code {runs[0]['code']}" if runs else "no results")
    cols = ["rows", "num_proc", "stage", "wall_s", "cpu_s", "sys_s", "rows_per_s", "mb_per_s", "maxrss_mb", "tree_rss_mb",
            "driver_rss_mb", "worker_rss_mb", "dvc_s", "out_mb", "rows_out", "others_cpu_s"]
    print(" | ".join(f"{c:>11}" for c in cols) + " | wall of each repeat")
    for r in runs:
        print(" | ".join(f"{r.get(c, ''):>11}" for c in cols) + f" | {r.get('wall_all', '')}")
    get = {(r["rows"], r["num_proc"], r["stage"]): r for r in runs}
    summary = []

    def line(what: str, value: float) -> None:
        summary.append({"what": what, "value": round(value, 2)})
        print(f"{what:62} {value:7.2f}")

    ns = sorted({n for n, _, _ in get})
    print("\n-- stage time / floor time (same N)")
    for (n, p, s), r in get.items():
        if s not in SINGLE_PROCESS and s not in E2E and (n, 1, "floor") in get:
            line(f"{s} N={n} np={p}", r["wall_s"] / get[(n, 1, "floor")]["wall_s"])
    print("\n-- (stage time - tokenizer_load) / floor time: the part that grows with the data, for the stages that load it")
    for (n, p, s), r in get.items():
        if s in ("verl", "trl") and (n, 1, "floor") in get and (n, 1, "tokenizer_load") in get:
            line(f"{s} N={n} np={p}", (r["wall_s"] - get[(n, 1, "tokenizer_load")]["wall_s"]) / get[(n, 1, "floor")]["wall_s"])
    print("\n-- end-to-end `dvc repro` / floor time, and DVC's share of it (its wall time minus the stage processes')")
    for (n, p, s), r in get.items():
        if s in E2E and (n, 1, "floor") in get:
            floor = get[(n, 1, "floor")]["wall_s"]
            line(f"{s} N={n} np={p}: dvc repro / floor", r["wall_s"] / floor)
            line(f"{s} N={n} np={p}: DVC's share / floor", r["dvc_s"] / floor)
    print("\n-- the reference scripts (prep + verl + trl, train split; benchmarks/reference.py) against `dvc repro`")
    for (n, p, s), r in get.items():
        if s in E2E and all((n, p, x) in get for x in reference.STAGES):
            ref = sum(get[(n, p, x)]["wall_s"] for x in reference.STAGES)
            line(f"reference N={n} np={p}: wall s", ref)
            line(f"{s} N={n} np={p}: reference / dvc repro (speedup)", ref / r["wall_s"])
            line(f"{s} N={n} np={p}: DVC's share s", r["dvc_s"])
            line(f"{s} N={n} np={p}: no-op dvc repro s", r.get("noop_repro_s", float("nan")))
    print("\n-- num_proc=2: wall speedup over num_proc=1, and CPU seconds used relative to num_proc=1")
    for (n, p, s), r in get.items():
        if p == 1 and (n, 2, s) in get:
            line(f"{s} N={n}: speedup", r["wall_s"] / get[(n, 2, s)]["wall_s"])
            line(f"{s} N={n}: cpu_s ratio (less sensitive to other load)", get[(n, 2, s)]["cpu_s"] / r["cpu_s"])
    if len(ns) > 1:
        small, big = ns[0], ns[-1]
        print(f"\n-- scaling N={big} vs N={small}: time ratio, peak RSS ratios (largest process, process tree)")
        for (n, p, s), r in get.items():
            if n == small and (big, p, s) in get:
                b = get[(big, p, s)]
                line(f"{s} np={p}: time", b["wall_s"] / r["wall_s"])
                line(f"{s} np={p}: maxrss", b["maxrss_mb"] / r["maxrss_mb"])
                line(f"{s} np={p}: tree rss", b["tree_rss_mb"] / r["tree_rss_mb"])
    out.write_text(json.dumps({"machine": machine(), "raw": raws, "runs": runs, "summary": summary,
                               "other_code_runs": other_code}, indent=1) + "\n")
    print(f"\nwritten {out}")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--measure"]:
        measure_child(sys.argv[2], sys.argv[4:])
    elif sys.argv[1:2] == ["--floor"]:
        floor_child(sys.argv[2], sys.argv[3])
    else:
        main()
