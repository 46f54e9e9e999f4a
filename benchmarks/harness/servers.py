"""The servers under test: how to prepare, start, recognise as ready, describe and stop each.

Every server listens on 127.0.0.1 only, on a free port, with its data under the run's work
directory. Each is started as the leader of a new session (so of its own process group) and
stopped through that process group: SIGTERM, then SIGKILL after a grace period.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

from . import procstats
from .s3client import S3Client

BENCH_DIR = Path(__file__).resolve().parent.parent
REPO = BENCH_DIR.parent
PEERS = BENCH_DIR / ".peers"
PROJECT_VENV = REPO / ".venv"
HOST = "127.0.0.1"

ANY_ACCESS_KEY = "benchmark"
ANY_SECRET_KEY = "benchmark-secret-key"


class ServerError(Exception):
    """A server could not be prepared, started or reached."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def _output(cmd: list[str], timeout: float = 60.0) -> str:
    """stdout+stderr of a short command, or '' if it cannot run."""
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return (done.stdout + done.stderr).strip()


def _dist_version(python: Path, dist: str) -> str:
    code = f"import importlib.metadata as m; print(m.version({dist!r}))"
    return _output([str(python), "-c", code]) or "unknown"


def _python_version(python: Path) -> str:
    return _output([str(python), "--version"]).removeprefix("Python ") or "unknown"


class Server(ABC):
    """One server process under test."""

    name: str
    title: str
    speaks_s3 = True
    ready_timeout = 120.0

    def __init__(self, workdir: Path, extra_args: list[str] | None = None) -> None:
        self.workdir = workdir / self.name
        self.extra_args = extra_args or []
        self.port = free_port()
        self.endpoint = f"http://{HOST}:{self.port}"
        self.access_key = ANY_ACCESS_KEY
        self.secret_key = ANY_SECRET_KEY
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = self.workdir / "server.log"
        self.stop_note = ""

    # --- to implement --------------------------------------------------------------------
    @abstractmethod
    def command(self) -> list[str]: ...

    def environment(self) -> dict[str, str]:
        return dict(os.environ)

    def prepare(self) -> None:  # noqa: B027 - an optional hook; most servers need nothing
        """Work done before start (accounts, keys, config files)."""

    @abstractmethod
    def describe(self) -> dict[str, str]:
        """Version facts for the report: at least 'version' and 'python'."""

    async def probe(self, client: S3Client) -> bool:
        """One readiness probe: a signed ListBuckets answered 200."""
        return await client.list_buckets() == 200

    # --- lifecycle -----------------------------------------------------------------------
    @property
    def pid(self) -> int:
        if self.proc is None:
            raise ServerError(f"{self.name} is not running")
        return self.proc.pid

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.prepare()
        cmd = self.command()
        with self.log_path.open("ab") as log:
            log.write(f"$ {shlex.join(cmd)}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                cmd,
                cwd=self.workdir,
                env=self.environment(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    async def wait_ready(self, client: S3Client) -> float:
        """Poll until the server answers; return the seconds it took."""
        started = time.monotonic()
        deadline = started + self.ready_timeout
        last_error = ""
        while time.monotonic() < deadline:
            if self.proc is None or self.proc.poll() is not None:
                raise ServerError(f"{self.name} exited during start-up")
            try:
                if await asyncio.wait_for(self.probe(client), timeout=10):
                    return time.monotonic() - started
            except Exception as exc:  # any failure means "not yet"
                last_error = repr(exc)
            await asyncio.sleep(0.25)
        raise ServerError(f"{self.name} not ready after {self.ready_timeout:.0f}s ({last_error})")

    def stop(self, grace: float = 20.0) -> None:
        """Stop the server's own process group: SIGTERM, then SIGKILL after ``grace``."""
        if self.proc is None:
            return
        pgid = self.proc.pid
        if self.proc.poll() is None:
            self._signal_group(pgid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                self.stop_note = f"did not stop within {grace:.0f}s of SIGTERM; killed"
                self._signal_group(pgid, signal.SIGKILL)
                self.proc.wait(timeout=30)
        else:
            self.stop_note = f"had already exited with status {self.proc.returncode}"
        # Children that outlived their leader are still in the group: end them too.
        if procstats.session_pids(pgid):
            self._signal_group(pgid, signal.SIGKILL)
        self.proc = None

    @staticmethod
    def _signal_group(pgid: int, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, sig)

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


class SilverLining(Server):
    name = "silverlining"
    title = "Silver Lining"
    ready_timeout = 120.0

    def __init__(self, workdir: Path, extra_args: list[str] | None = None) -> None:
        super().__init__(workdir, extra_args)
        self.cli = PROJECT_VENV / "bin" / "silverlining"
        self.data_dir = self.workdir / "data"

    def prepare(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        base = [str(self.cli)]
        tail = ["--data-dir", str(self.data_dir), "--json"]
        self._run_cli([*base, "accounts", "create", "bench", *tail])
        keys = self._run_cli([*base, "keys", "create", "bench", *tail])
        access_key = _find_str(keys, "access_key_id")
        secret_key = _find_str(keys, "secret_access_key")
        if access_key is None or secret_key is None:
            raise ServerError(f"keys create printed no key pair: {json.dumps(keys)[:300]}")
        self.access_key, self.secret_key = access_key, secret_key

    @staticmethod
    def _run_cli(cmd: list[str]) -> Any:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
        if done.returncode != 0:
            raise ServerError(f"{shlex.join(cmd)} failed ({done.returncode}):\n{done.stderr}")
        try:
            return json.loads(done.stdout)
        except json.JSONDecodeError as exc:
            raise ServerError(f"{shlex.join(cmd)}: not JSON: {done.stdout[:300]!r}") from exc

    def command(self) -> list[str]:
        return [
            str(self.cli),
            "serve",
            "--host",
            HOST,
            "--port",
            str(self.port),
            "--data-dir",
            str(self.data_dir),
            *self.extra_args,
        ]

    def describe(self) -> dict[str, str]:
        python = PROJECT_VENV / "bin" / "python"
        commit = _output(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"])
        version = _dist_version(python, "silverlining")
        if commit and " " not in commit:
            version += f" (commit {commit})"
        facts = {"version": version, "python": _python_version(python)}
        if self.extra_args:
            facts["serve args"] = shlex.join(self.extra_args)
        return facts


class Moto(Server):
    name = "moto"
    title = "moto (server mode)"
    ready_timeout = 60.0

    def command(self) -> list[str]:
        return [str(PEERS / "moto" / "bin" / "moto_server"), "-H", HOST, "-p", str(self.port)]

    def describe(self) -> dict[str, str]:
        python = PEERS / "moto" / "bin" / "python"
        return {"version": _dist_version(python, "moto"), "python": _python_version(python)}


class LocalStack(Server):
    name = "localstack"
    title = "LocalStack (host mode, S3 only)"
    ready_timeout = 900.0  # the first start unpacks and compiles a lot

    def command(self) -> list[str]:
        # Through a launcher that makes its twisted gateway bind 127.0.0.1 (it binds 0.0.0.0
        # whatever GATEWAY_LISTEN says); the hypercorn gateway binds loopback but is about
        # half as fast, which would flatter us.
        launcher = BENCH_DIR / "launchers" / "localstack_loopback.py"
        return [str(PEERS / "localstack" / "bin" / "python"), str(launcher)]

    def environment(self) -> dict[str, str]:
        env = dict(os.environ)
        listen = f"{HOST}:{self.port}"
        env.update(
            SERVICES="s3",
            EAGER_SERVICE_LOADING="1",
            DISABLE_EVENTS="1",
            SKIP_SSL_CERT_DOWNLOAD="1",
            DNS_ADDRESS="0",
            GATEWAY_LISTEN=listen,
            LOCALSTACK_HOST=listen,
            FILESYSTEM_ROOT=str(self.workdir / "fs"),
        )
        return env

    def describe(self) -> dict[str, str]:
        python = PEERS / "localstack" / "bin" / "python"
        return {
            "version": _dist_version(python, "localstack-core"),
            "python": _python_version(python),
            "gateway": "twisted (default), bound to 127.0.0.1",
        }


class Nginx(Server):
    """nginx serving static files: the loopback ceiling for GET. Objects are files under
    ``root/<bucket>/<key>``, so the same path-style URLs work; signatures are sent and
    ignored."""

    name = "nginx"
    title = "nginx static file (ceiling)"
    speaks_s3 = False
    ready_timeout = 30.0

    def __init__(self, workdir: Path, extra_args: list[str] | None = None) -> None:
        super().__init__(workdir, extra_args)
        self.root = self.workdir / "root"
        self.binary = shutil.which("nginx") or "/usr/sbin/nginx"

    def publish(self, bucket: str, key: str, body: bytes) -> None:
        path = self.root / bucket / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(body)

    def prepare(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        temp = self.workdir / "temp"
        temp.mkdir(exist_ok=True)
        # The fastest configuration tried for GETs on this loopback, so the ceiling is a real
        # one: with sendfile the data reaches the client as page fragments that cost it more
        # to receive (the Python client got ~25% less, wrk ~35% less); one worker leaves the
        # other core to the client, and matches the node's single process.
        config = f"""\
# Generated by benchmarks/run.py: a static file server on loopback only.
daemon off;
master_process on;
worker_processes 1;
user root;
pid {self.workdir}/nginx.pid;
error_log {self.workdir}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    sendfile off;
    output_buffers 1 8m;
    keepalive_timeout 60;
    keepalive_requests 1000000;
    types {{ }}
    default_type application/octet-stream;
    client_body_temp_path {temp}/body;
    proxy_temp_path {temp}/proxy;
    fastcgi_temp_path {temp}/fastcgi;
    uwsgi_temp_path {temp}/uwsgi;
    scgi_temp_path {temp}/scgi;
    server {{
        listen {HOST}:{self.port};
        root {self.root};
    }}
}}
"""
        (self.workdir / "nginx.conf").write_text(config)

    def command(self) -> list[str]:
        conf = self.workdir / "nginx.conf"
        # -e: the error log before the config is read (else /var/log/nginx/error.log).
        return [
            self.binary,
            "-p",
            str(self.workdir),
            "-c",
            str(conf),
            "-e",
            str(self.workdir / "error.log"),
        ]

    async def probe(self, client: S3Client) -> bool:
        async with client.session.get(f"{self.endpoint}/") as resp:
            await resp.read()
            return resp.status < 500

    def describe(self) -> dict[str, str]:
        version = _output([self.binary, "-v"]).removeprefix("nginx version: ")
        return {
            "version": version or "unknown",
            "python": "-",
            "config": "1 worker, sendfile off, output_buffers 1 8m, access log off",
        }


SERVERS: dict[str, type[Server]] = {
    cls.name: cls for cls in (SilverLining, LocalStack, Moto, Nginx)
}


def _find_str(data: Any, field: str) -> str | None:
    """The first string value named ``field`` anywhere in a JSON document."""
    if isinstance(data, dict):
        if isinstance(data.get(field), str):
            return str(data[field])
        data = list(data.values())
    if isinstance(data, list):
        for value in data:
            found = _find_str(value, field)
            if found is not None:
                return found
    return None


def client_python() -> str:
    return sys.version.split()[0]
