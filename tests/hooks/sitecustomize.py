"""Test hook, active only when a test puts this folder on PYTHONPATH and sets VLPREP_TEST_STALL_MARKER:
after the first table a stage writes to its output, the process touches the marker file and waits
forever. A test then knows, without guessing a delay, that the stage is mid-write, and kills it."""
import os

MARKER = os.environ.get("VLPREP_TEST_STALL_MARKER")
# "arrow-stream": the save_to_disk shards (hf_bytes); else a substring of the parquet output's path.
TARGET = os.environ.get("VLPREP_TEST_STALL_ON", "")


def _stall_after(write):
    def wrapped(self, *args, **kwargs):
        write(self, *args, **kwargs)
        where = str(getattr(self, "where", "arrow-stream"))
        if TARGET in where:
            open(MARKER, "w").close()
            while True:
                os.pause()

    return wrapped


if MARKER:
    import pyarrow.ipc as ipc
    import pyarrow.parquet as pq

    pq.ParquetWriter.write_table = _stall_after(pq.ParquetWriter.write_table)
    ipc.RecordBatchStreamWriter.write_table = _stall_after(ipc.RecordBatchStreamWriter.write_table)
