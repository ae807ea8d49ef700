"""Engine `ray`: a stage's parts (parts.py) as Ray tasks, one per part, each writing its own part file
into the output's temporary directory; the stage process only merges their small results (counts,
rejects records) and publishes the directory. The work itself is parts.run_part, the same code the
local engine's tables go through, so the files are the same bytes.

Tasks, not Ray Data's read_parquet/write_parquet: Ray Data names files `{uuid}_{block}` and cuts them at
its own block boundaries, so its output could never be byte-identical to the local engine's. Ray is an
optional extra (`pip install -e '.[ray]'`), imported only when a stage runs with `engine: ray`."""
from __future__ import annotations

import os
import shutil
import signal
import socket
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, Sequence

from vlprep.core.failures import ClusterUnreachable, InputError, WorkerDied
from vlprep.engine.parts import Parted, PartResult, run_part

# A task's result is counts and rejects records (small): objects never hold rows, so a small store
# suffices, and setting it keeps Ray from reserving 30% of the machine's memory in /dev/shm.
OBJECT_STORE_BYTES = 256 << 20
# How long connecting to a cluster may take before the stage gives up (Ray itself retries for minutes).
CONNECT_TIMEOUT_S = 60
# How often the stage, waiting for a part, returns to Python to act on a SIGTERM (see _signals_between_waits).
WAIT_POLL_S = 0.5
# Attempts of a part whose worker process died (killed, out of memory) before the stage fails.
TASK_RETRIES = 3

# Read by Ray when it is imported and by the processes it starts: no usage reporting, no auth token
# (a token an earlier ray.init() left in ~/.ray breaks connecting to a cluster by address), and
# 127.0.0.1 kept as given (Ray otherwise rewrites it to the machine's external address).
RAY_ENV = {"RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}


def import_ray():
    for key, value in RAY_ENV.items():
        os.environ.setdefault(key, value)
    try:
        import ray
    except ImportError:
        raise InputError("engine: ray needs Ray: pip install -c requirements.lock -e '.[ray]'") from None
    return ray


def cluster_address(address: str | None) -> str | None:
    """The cluster to use: the param, else RAY_ADDRESS; None: start one in this process."""
    return address or os.environ.get("RAY_ADDRESS") or None


def _probe(address: str) -> None:
    """Fail fast when nothing listens at host:port (Ray would retry for minutes)."""
    host_port = address.split("://", 1)[-1]
    host, _, port = host_port.rpartition(":")
    if not host or not port.isdigit():
        return  # e.g. `auto`: Ray finds the address itself, and fails at once when there is none
    try:
        socket.create_connection((host, int(port)), timeout=10).close()
    except OSError as e:
        raise ClusterUnreachable(f"Ray cluster at {address} unreachable ({e.strerror or e}); "
                                 "start it, or fix verl/trl/hf_bytes ray_address or RAY_ADDRESS") from None


# stop(abandoned): disconnect (and stop an in-process cluster); `abandoned`: the refs of tasks that may
# still run because the stage is failing or interrupted, none of which may go on writing afterwards.
Stop = Callable[[Sequence], None]


def connect(address: str | None, num_cpus: int) -> Stop:
    """Connect to the cluster at `address`, or start an in-process one with num_cpus workers; returns
    the function that disconnects (and stops an in-process cluster)."""
    # ray.init replaces the stage's SIGINT and SIGTERM handlers (Ctrl-C would kill the process outright,
    # skipping the cleanup that publishes nothing): they are put back once connected.
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        return _connect(address, num_cpus)
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)


def _connect(address: str | None, num_cpus: int) -> Stop:
    ray = import_ray()
    if address is None:
        # Its own short temp dir: Ray's socket paths have a length limit, and sessions stay separate.
        temp = tempfile.mkdtemp(prefix="vlprep-ray-", dir="/tmp")
        ray.init(address="local", num_cpus=num_cpus, object_store_memory=OBJECT_STORE_BYTES,
                 include_dashboard=False, _temp_dir=temp, logging_level="warning", log_to_driver=False)

        def stop(abandoned: Sequence = ()) -> None:
            # The cluster is this process's: on a failure or Ctrl-C it is stopped whole, in order, with no
            # ray.cancel. Cancelling a task races with its completion inside Ray's core worker (a part that
            # finishes as it is cancelled aborts this process with `Check failed: it !=
            # submissible_tasks_.end()`, exit 1, seen under CPU load). So: note Ray's processes (all
            # descendants of this one), disconnect this driver and stop the node (ray.shutdown), then kill
            # whichever worker is still running its part and wait until none is left, so no part is
            # written after this returns and the caller removes the output's temporary directory.
            processes = _descendants(os.getpid()) if abandoned else []
            ray.shutdown()
            _kill_and_wait(processes)
            shutil.rmtree(temp, ignore_errors=True)

        return stop
    _probe(address)

    def too_slow(signum, frame):
        raise ClusterUnreachable(f"Ray cluster at {address}: no answer within {CONNECT_TIMEOUT_S} s; "
                                 "check the address (verl/trl/hf_bytes ray_address or RAY_ADDRESS)")

    # In the main thread (Ray sets up its driver there), bounded by an alarm: Ray's own connection
    # retries, in Python, end when the alarm's exception reaches them.
    previous = signal.signal(signal.SIGALRM, too_slow)
    signal.alarm(CONNECT_TIMEOUT_S)
    try:
        ray.init(address=address, logging_level="warning", log_to_driver=False)
    except ClusterUnreachable:
        raise
    except Exception as e:
        raise ClusterUnreachable(f"Ray cluster at {address}: cannot connect ({str(e).splitlines()[0]})") from None
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)

    def disconnect(abandoned: Sequence = ()) -> None:
        # Not our cluster: its workers can only be stopped through Ray. Only tasks not yet finished are
        # cancelled (a finished one needs nothing, and cancelling it is the race described above); force:
        # a task stuck in a write is killed with its worker, so it cannot write after the stage is gone.
        if abandoned:
            _, running = ray.wait(list(abandoned), num_returns=len(abandoned), timeout=0)
            for ref in running:
                ray.cancel(ref, force=True)
        ray.shutdown()

    return disconnect


@contextmanager
def _signals_between_waits() -> Iterator[Callable[[], None]]:
    """While the stage waits on Ray: SIGTERM is noted, and acted upon by check() (the stage's own
    handler, which raises Terminated) in Python code between two waits.

    Ray runs Python's signal handlers inside its blocking calls (ray.get, ray.wait) and turns a
    KeyboardInterrupt they raise into its own, but drops any other exception: the stage's SIGTERM
    handler raising Terminated there was lost, the stage went on waiting, and published once its
    parts were done. Ctrl-C needs nothing: Ray raises its KeyboardInterrupt from the wait."""
    noted: list[int] = []
    previous = signal.getsignal(signal.SIGTERM)

    def check() -> None:
        if noted:
            signal.signal(signal.SIGTERM, previous)
            if callable(previous):
                previous(signal.SIGTERM, None)  # raises Terminated (failures.stage_main)
            elif previous == signal.SIG_DFL:
                os.kill(os.getpid(), signal.SIGTERM)

    signal.signal(signal.SIGTERM, lambda signum, frame: noted.append(signum))
    try:
        yield check
    finally:
        signal.signal(signal.SIGTERM, previous)


def _processes() -> dict[int, tuple[int, str, str]]:
    """pid -> (parent pid, start time, state) of every process, from /proc (Linux; elsewhere: none)."""
    table = {}
    try:
        entries = list(os.scandir("/proc"))
    except OSError:
        return table
    for entry in entries:
        if not entry.name.isdigit():
            continue
        try:
            with open(os.path.join(entry.path, "stat")) as f:
                stat = f.read()
        except OSError:
            continue  # ended meanwhile
        fields = stat[stat.rindex(")") + 2:].split()  # after "pid (comm) ": state, ppid, ...
        table[int(entry.name)] = (int(fields[1]), fields[19], fields[0])
    return table


def _descendants(pid: int) -> list[tuple[int, str]]:
    """(pid, start time) of every process below `pid`: an in-process Ray's GCS, raylet and workers."""
    table = _processes()
    children: dict[int, list[int]] = {}
    for child, (parent, _, _) in table.items():
        children.setdefault(parent, []).append(child)
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append((child, table[child][1]))
            todo.append(child)
    return found


def _kill_and_wait(processes: list[tuple[int, str]], timeout_s: float = 60) -> None:
    """SIGKILL whichever of `processes` still runs (the same process: same pid and start time), until
    none does or timeout_s passed."""
    deadline = time.monotonic() + timeout_s
    while True:
        table = _processes()
        alive = [pid for pid, start in processes
                 if pid in table and table[pid][1] == start and table[pid][2] not in ("Z", "X")]
        if not alive or time.monotonic() > deadline:
            return
        for pid in alive:
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        time.sleep(0.05)


def run_parts_on_ray(output: Parted, parts: list, unit_fn, attach, address: str | None,
                     num_cpus: int) -> Callable[[Path], Iterator[PartResult]]:
    """Connect now (so an unreachable cluster fails before anything is written); the returned function
    runs every part into `directory` and yields the results in part order."""
    address = cluster_address(address)
    stop = connect(address, num_cpus)
    ray = import_ray()

    def results(directory: Path) -> Iterator[PartResult]:
        # Every path a task gets is relative to the project directory, which it makes its cwd; the
        # part files go to the output's absolute temporary directory (shared, on a multi-node cluster).
        task = ray.remote(run_part).options(num_cpus=1, max_retries=TASK_RETRIES, retry_exceptions=False)
        cwd, directory = os.getcwd(), Path(directory).resolve()
        refs = [task.remote(output.fmt, str(directory / output.fmt.name(i, len(parts))), units, unit_fn, attach,
                            output.observer, cwd) for i, units in enumerate(parts)]
        finished = False
        try:
            with _signals_between_waits() as check:
                for i, ref in enumerate(refs):
                    try:
                        while not ray.wait([ref], timeout=WAIT_POLL_S)[0]:
                            check()
                        check()
                        result = ray.get(ref)
                    except ray.exceptions.RayTaskError as e:
                        raise e.cause from None  # what the part raised (InputError: one line; a bug: its traceback)
                    except (ray.exceptions.WorkerCrashedError, ray.exceptions.NodeDiedError,
                            ray.exceptions.ObjectLostError) as e:
                        raise WorkerDied(f"part {i} of {len(parts)}: its Ray worker died {TASK_RETRIES + 1} times "
                                         f"({type(e).__name__}); nothing was published") from None
                    yield result
                check()
            finished = True
        finally:
            # Interrupted or failed: no task may go on writing into a directory about to be removed.
            stop(() if finished else refs)

    return results
