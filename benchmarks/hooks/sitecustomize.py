"""Benchmark hook, active only when benchmarks/run.py puts this folder on PYTHONPATH and sets
VLPREP_BENCH_TIMES: every pipeline stage process (a stages/ script or `-m vlprep.…`) appends its wall time,
from process start (interpreter start-up and imports included) to exit, as one JSON line. The end-to-end
`dvc repro` measurement subtracts their sum from its wall time: the rest is DVC's own work."""
import atexit
import json
import os
import sys
import time

OUT = os.environ.get("VLPREP_BENCH_TIMES")


def _record() -> None:
    import psutil

    argv = sys.argv
    if not argv or not ("stages/" in argv[0] or "vlprep" in argv[0]):
        return  # dvc itself, git, …
    me = psutil.Process()
    cpu = me.cpu_times()
    start, end = me.create_time(), time.time()  # start/end: where DVC's own work falls between stages
    line = {"argv": argv, "wall_s": end - start, "cpu_s": cpu.user + cpu.system, "start": start, "end": end}
    with open(OUT, "a") as f:
        f.write(json.dumps(line) + "\n")


if OUT:
    atexit.register(_record)
