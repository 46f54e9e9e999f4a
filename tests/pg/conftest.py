"""A throw-away PostgreSQL server for the tests, and Silver Lining nodes on it.

The session fixture ``pg_server`` runs ``initdb`` into a fresh temporary directory and starts
``postgres`` on a free port of 127.0.0.1 (and a Unix socket in that directory); it is stopped
by its pid at the end of the session and the directory removed. No system service is used.
PostgreSQL refuses to run as root: when the tests run as root, the cluster belongs to the
unprivileged user ``nobody`` (the child processes switch user themselves: no su/sudo needed).

The binaries are found on PATH or under /usr/lib/postgresql/*/bin (Debian's layout;
scripts/test.sh installs the ``postgresql`` package when they are missing). If they are not
found at all the fixture fails: the PostgreSQL path is never skipped.
"""

from __future__ import annotations

import json
import os
import pwd
import re
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.conftest import BIN, RunningNode, empty_bucket, free_port

PG_USER = "silverlining"
_PG_TOOLS = ("initdb", "postgres")


def _pg_bindir() -> Path:
    on_path = shutil.which("initdb")
    if on_path is not None:
        bindir = Path(on_path).resolve().parent
        if (bindir / "postgres").exists():
            return bindir
    def version(p: Path) -> tuple[int, ...]:
        return tuple(int(x) for x in re.findall(r"\d+", p.parent.name))

    candidates = sorted(
        (p.parent for p in Path("/usr/lib/postgresql").glob("*/bin")
         if all((p / tool).exists() for tool in _PG_TOOLS)),
        key=version, reverse=True)
    if not candidates:
        pytest.fail(
            "PostgreSQL server binaries (initdb, postgres) not found on PATH or under "
            "/usr/lib/postgresql/*/bin: install them (Debian: apt-get install postgresql; "
            "scripts/test.sh does this). The PostgreSQL tests are never skipped.",
            pytrace=False)
    return candidates[0]


@dataclass
class PgServer:
    host: str
    port: int
    user: str
    admin_url: str  # libpq URL of the maintenance database

    def create_database(self, name: str | None = None) -> str:
        """A fresh, empty database; returns its SQLAlchemy URL."""
        name = name or f"sl_{uuid.uuid4().hex[:16]}"
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            # A natural-language default collation (ICU en-US: "a" < "b" < "Z"), as a
            # production database usually has: S3's byte order must come from the schema's
            # COLLATE "C" declarations, not from a C-locale cluster.
            conn.execute(f'CREATE DATABASE "{name}" TEMPLATE template0 ENCODING \'UTF8\' '
                         f"LOCALE_PROVIDER icu ICU_LOCALE 'en-US'")
            with psycopg.connect(self.admin_url.rsplit("/", 1)[0] + f"/{name}") as check:
                order = [r[0] for r in check.execute(
                    "SELECT x FROM (VALUES ('a'), ('Z'), ('b')) v(x) ORDER BY x")]
            assert order == ["a", "b", "Z"], order  # byte order would be Z, a, b
        return f"postgresql+psycopg://{self.user}@{self.host}:{self.port}/{name}"


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    bindir = _pg_bindir()
    as_root = os.geteuid() == 0
    run_as: dict[str, Any] = {}
    # /tmp itself (not pytest's tmp_path, which is private to root) so the cluster's owner
    # can reach it.
    root = Path(tempfile.mkdtemp(prefix="sl-pg-"))
    if as_root:
        nobody = pwd.getpwnam("nobody")
        os.chown(root, nobody.pw_uid, nobody.pw_gid)
        run_as = {"user": nobody.pw_uid, "group": nobody.pw_gid, "extra_groups": []}
    data = root / "data"
    env = {**os.environ, "LC_ALL": "C", "LANG": "C"}
    init = subprocess.run(
        [str(bindir / "initdb"), "-D", str(data), "-U", PG_USER, "--auth=trust",
         "--encoding=UTF8", "--locale=C", "--no-sync"],
        capture_output=True, text=True, env=env, cwd=root, **run_as)
    if init.returncode != 0:
        shutil.rmtree(root, ignore_errors=True)
        pytest.fail(f"initdb failed ({init.returncode}):\n{init.stdout}\n{init.stderr}",
                    pytrace=False)
    port = free_port()
    log_path = root / "postgres.log"
    log = open(log_path, "wb")  # noqa: SIM115 - the server owns it
    server = subprocess.Popen(
        [str(bindir / "postgres"), "-D", str(data), "-p", str(port), "-k", str(root),
         "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off",
         "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
         "-c", "max_connections=300", "-c", "shared_buffers=64MB"],
        stdout=log, stderr=subprocess.STDOUT, env=env, cwd=root, start_new_session=True,
        **run_as)
    log.close()
    admin_url = f"postgresql://{PG_USER}@127.0.0.1:{port}/postgres"
    try:
        deadline = time.monotonic() + 60
        while True:
            if server.poll() is not None:
                pytest.fail(f"postgres exited ({server.returncode}):\n"
                            f"{log_path.read_text(errors='replace')[-3000:]}", pytrace=False)
            try:
                psycopg.connect(admin_url, connect_timeout=2).close()
                break
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    pytest.fail("postgres did not accept connections in 60 s:\n"
                                f"{log_path.read_text(errors='replace')[-3000:]}",
                                pytrace=False)
                time.sleep(0.1)
        yield PgServer("127.0.0.1", port, PG_USER, admin_url)
    finally:
        if server.poll() is None:
            server.send_signal(signal.SIGINT)  # fast shutdown
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def pg_url(pg_server: PgServer) -> str:
    """A fresh database for one test."""
    return pg_server.create_database()


# --- nodes on PostgreSQL ----------------------------------------------------------------------


def pg_cli(*args: str, data_dir: Path, url: str, check: bool = True) -> Any:
    """An operator command against the node data in ``data_dir`` + the database ``url``
    (given as SILVERLINING_DATABASE_URL, as an operator would)."""
    out = subprocess.run(
        [str(BIN), *args, "--data-dir", str(data_dir), "--json"],
        check=False, capture_output=True, text=True,
        env={**os.environ, "SILVERLINING_DATABASE_URL": url},
    )
    if check:
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout)
    return out


class PgNode(RunningNode):
    """A `silverlining serve --database-url URL` child process."""

    def __init__(self, data_dir: Path, url: str, *, extra_args: tuple[str, ...] = (),
                 env: dict[str, str] | None = None) -> None:
        super().__init__(data_dir, extra_args=("--database-url", url, *extra_args), env=env)
        self.url = url

    def new_credentials(self, account_name: str) -> tuple[str, str]:
        accounts: set[str] = set()
        if self.data_dir.is_dir():
            accounts = {a["name"] for a in pg_cli("accounts", "list", data_dir=self.data_dir,
                                                  url=self.url)}
        if account_name not in accounts:
            pg_cli("accounts", "create", account_name, data_dir=self.data_dir, url=self.url)
        key = pg_cli("keys", "create", account_name, data_dir=self.data_dir, url=self.url)
        return key["access_key_id"], key["secret_access_key"]


@pytest.fixture
def make_node(tmp_path: Path) -> Iterator[Callable[..., PgNode]]:
    """Start PostgreSQL-backed nodes; all are stopped at the end of the test."""
    started: list[PgNode] = []

    def make(url: str, data_dir: Path | None = None, **kw: Any) -> PgNode:
        n = PgNode(data_dir or tmp_path / f"data{len(started)}", url, **kw)
        n.start()
        started.append(n)
        return n

    yield make
    for n in started:
        n.stop()


# The shared fixtures of tests/conftest.py, on a PostgreSQL-backed node: the generic S3 suites
# (imported into test_suites_pg.py) run against it unchanged. Every one is redefined here so
# that none of the SQLite-backed session fixtures is reused.


@pytest.fixture(scope="session")
def node(pg_server: PgServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[PgNode]:
    data_dir = tmp_path_factory.mktemp("pgnode") / "data"
    n = PgNode(data_dir, pg_server.create_database())
    n.access_key, n.secret_key = n.new_credentials("tester")
    n.start()
    yield n
    n.stop()


@pytest.fixture(scope="session")
def s3(node: PgNode) -> Any:
    return node.client(node.access_key, node.secret_key)


@pytest.fixture(scope="session")
def other_s3(node: PgNode) -> Any:
    return node.client(*node.new_credentials("other-tenant"))


@pytest.fixture
def bucket(s3: Any) -> Iterator[str]:
    name = f"t-{uuid.uuid4().hex[:20]}"
    s3.create_bucket(Bucket=name)
    yield name
    empty_bucket(s3, name)
    s3.delete_bucket(Bucket=name)
