"""Test hook, active only when a test puts this folder on PYTHONPATH and sets VLPREP_TEST_STALL_MARKER:
after the first table a stage writes to its output, the process touches the marker file and waits, until
the file VLPREP_TEST_STALL_RESUME exists (if set) or forever. A test then knows, without guessing a
delay, that the stage is mid-write, and can kill it, interrupt it, or change its inputs and let it go on.
The marker holds the stalled process's id (a Ray worker's, with engine: ray)."""
import os
import time

MARKER = os.environ.get("VLPREP_TEST_STALL_MARKER")
RESUME = os.environ.get("VLPREP_TEST_STALL_RESUME")
# "arrow-stream": the save_to_disk shards (hf_bytes); else a substring of the parquet output's path.
TARGET = os.environ.get("VLPREP_TEST_STALL_ON", "")


def _stall_after(write):
    def wrapped(self, *args, **kwargs):
        write(self, *args, **kwargs)
        where = str(getattr(self, "where", "arrow-stream"))
        if TARGET in where and not os.path.exists(MARKER):
            with open(MARKER, "w") as f:
                f.write(str(os.getpid()))  # which process stalled (a Ray worker, for a test to kill)
            while not (RESUME and os.path.exists(RESUME)):
                time.sleep(0.02)  # signals (SIGINT, SIGTERM) interrupt the sleep

    return wrapped


if MARKER:
    import pyarrow.ipc as ipc
    import pyarrow.parquet as pq

    pq.ParquetWriter.write_table = _stall_after(pq.ParquetWriter.write_table)
    ipc.RecordBatchStreamWriter.write_table = _stall_after(ipc.RecordBatchStreamWriter.write_table)
