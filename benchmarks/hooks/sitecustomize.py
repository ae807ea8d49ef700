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
# Process start by this clock: psutil's create_time adds the boot time, which Linux gives in whole
# seconds, so its starts were off from time.time() by up to a second, each stage's the same way (stage
# walls too long, DVC's share too short by up to a second a stage). site imports this module before
# anything else runs: the interpreter's first milliseconds are all it misses.
START = time.time()


def _record() -> None:
    import psutil

    argv = sys.argv
    if not argv or not ("stages/" in argv[0] or "vlprep" in argv[0]):
        return  # dvc itself, git, …
    me = psutil.Process()
    cpu = me.cpu_times()
    start, end = START, time.time()  # start/end: where DVC's own work falls between stages
    line = {"argv": argv, "wall_s": end - start, "cpu_s": cpu.user + cpu.system, "start": start, "end": end}
    with open(OUT, "a") as f:
        f.write(json.dumps(line) + "\n")


if OUT:
    atexit.register(_record)
