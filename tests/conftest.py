"""Shared fixtures: a real node process on a free port, and clients for it."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent / "silverlining"
REGION = "us-east-1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cli(*args: str, data_dir: Path) -> Any:
    out = subprocess.run(
        [str(BIN), *args, "--data-dir", str(data_dir), "--json"],
        check=True, capture_output=True, text=True,
    )
    return json.loads(out.stdout)


class NodeProcess:
    """A `silverlining serve` child process with its own data dir."""

    def __init__(self, data_dir: Path, *, extra_args: tuple[str, ...] = (),
                 env: dict[str, str] | None = None) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.region = REGION
        self.extra_args = extra_args
        self.env = env
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = data_dir.parent / f"{data_dir.name}.log"

    def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")  # noqa: SIM115 - child process owns it
        self.proc = subprocess.Popen(
            [str(BIN), "serve", "--host", "127.0.0.1", "--port", str(self.port),
             "--data-dir", str(self.data_dir), "--no-access-log", *self.extra_args],
            stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **(self.env or {})},
            start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"node exited: {self.log_path.read_text()[-3000:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("node did not start in 30 s")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.proc = None

    def kill9(self) -> None:
        self.stop(signal.SIGKILL)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def new_credentials(self, account_name: str) -> tuple[str, str]:
        """Create an account (if needed) and a key for it: (access key id, secret)."""
        accounts: set[str] = set()
        if (self.data_dir / "meta.db").exists():
            accounts = {a["name"] for a in cli("accounts", "list", data_dir=self.data_dir)}
        if account_name not in accounts:
            cli("accounts", "create", account_name, data_dir=self.data_dir)
        key = cli("keys", "create", account_name, data_dir=self.data_dir)
        return key["access_key_id"], key["secret_access_key"]

    def client(self, access_key: str, secret_key: str, **config: Any) -> Any:
        return boto3.client(
            "s3", endpoint_url=self.endpoint, region_name=self.region,
            aws_access_key_id=access_key, aws_secret_access_key=secret_key,
            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1},
                          **config),
        )


class RunningNode(NodeProcess):
    access_key: str
    secret_key: str


@pytest.fixture(scope="session")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningNode]:
    """One node for the session, with an account `tester` whose key is access_key."""
    data_dir = tmp_path_factory.mktemp("node") / "data"
    n = RunningNode(data_dir)
    n.access_key, n.secret_key = n.new_credentials("tester")
    n.start()
    yield n
    n.stop()


@pytest.fixture(scope="session")
def s3(node: RunningNode) -> Any:
    return node.client(node.access_key, node.secret_key)


@pytest.fixture(scope="session")
def other_s3(node: RunningNode) -> Any:
    """A client of a second tenant of the same node."""
    return node.client(*node.new_credentials("other-tenant"))


@pytest.fixture
def bucket(s3: Any) -> Iterator[str]:
    """A fresh empty bucket, deleted (with whatever is left in it) afterwards."""
    name = f"t-{uuid.uuid4().hex[:20]}"
    s3.create_bucket(Bucket=name)
    yield name
    empty_bucket(s3, name)
    s3.delete_bucket(Bucket=name)


def empty_bucket(s3: Any, name: str) -> None:
    for up in s3.list_multipart_uploads(Bucket=name).get("Uploads", []):
        s3.abort_multipart_upload(Bucket=name, Key=up["Key"], UploadId=up["UploadId"])
    paginator = s3.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=name):
        keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
        if keys:
            s3.delete_objects(Bucket=name, Delete={"Objects": keys, "Quiet": True})
