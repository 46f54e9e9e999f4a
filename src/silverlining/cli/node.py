"""Operator commands of a provider node: serve, accounts, keys."""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click
from rich.console import Console
from rich.table import Table
from sqlalchemy.exc import SQLAlchemyError

from silverlining.node import faults
from silverlining.node.domain.accounts import AccountError
from silverlining.node.domain.limits import Limits
from silverlining.node.runtime import Node, NodeConfig

F = TypeVar("F", bound=Callable[..., Any])
DEFAULT_DATA_DIR = "./silverlining-data"


def data_dir_option(fn: F) -> F:
    return click.option(
        "--data-dir",
        type=click.Path(file_okay=False, path_type=Path),
        default=DEFAULT_DATA_DIR,
        show_default=True,
        envvar="SILVERLINING_DATA_DIR",
        help="The node's data directory (metadata database, node key, object files).",
    )(fn)


def json_option(fn: F) -> F:
    return click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")(fn)


@contextmanager
def open_node(data_dir: Path, *, create: bool = False) -> Iterator[Node]:
    # The metadata database `serve --database-url` uses: operator commands read the same
    # environment variable (SILVERLINING_DATABASE_URL), so they act on the shared database.
    database_url = os.environ.get("SILVERLINING_DATABASE_URL") or None
    if database_url is None and not create and not (data_dir / "meta.db").exists():
        raise click.ClickException(
            f"no node data in {data_dir} (start a node with `silverlining serve --data-dir "
            f"{data_dir}` or create an account there first)"
        )
    if database_url is not None and not create and not data_dir.is_dir():
        raise click.ClickException(
            f"no node data in {data_dir} (the node key that encrypts secrets lives there: "
            f"use the --data-dir of `silverlining serve`)"
        )
    try:
        node = Node(NodeConfig(data_dir=data_dir, database_url=database_url))
    except (RuntimeError, ImportError, SQLAlchemyError) as exc:
        raise click.ClickException(f"cannot open node data in {data_dir}: {exc}") from None
    try:
        yield node
    except AccountError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        node.close()


def _emit(as_json: bool, data: Any, human: Callable[[], None]) -> None:
    if as_json:
        click.echo(json.dumps(data, indent=2, sort_keys=True))
    else:
        human()


# --- serve ----------------------------------------------------------------------------------


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=9000, show_default=True, type=click.IntRange(0, 65535))
@data_dir_option
@click.option("--region", default="us-east-1", show_default=True,
              help="The region this node reports for its buckets.")
@click.option("--base-domain", "base_domains", multiple=True, default=("localhost",),
              show_default=True,
              help="Domain for virtual-hosted-style addressing (BUCKET.DOMAIN). Repeatable.")
@click.option("--database-url", default=None, envvar="SILVERLINING_DATABASE_URL",
              help="SQLAlchemy URL of a shared metadata database (default: SQLite in the data "
                   "dir).")
@click.option("--log-level", default="info", show_default=True,
              type=click.Choice(["debug", "info", "warning", "error"]))
@click.option("--access-log/--no-access-log", default=True, show_default=True,
              help="Log one line per request (never query strings or secrets).")
@click.option("--max-object-size", type=click.IntRange(min=1), default=None,
              help="Largest object in bytes (default 5 TiB, S3's limit).")
@click.option("--header-timeout", type=click.FloatRange(min=0.1), default=20.0,
              show_default=True, help="Seconds a client may take to send request headers.")
@click.option("--body-timeout", type=click.FloatRange(min=0.1), default=30.0,
              show_default=True, help="Seconds a request body may stall before it fails.")
@click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path),
              default=None, envvar="SILVERLINING_CONFIG",
              help="The node's configuration file: public endpoint, jurisdiction, plans and "
                   "prices (default: <data-dir>/config.toml if it exists).")
@click.option("--metering-period", type=click.IntRange(min=1), default=3600,
              show_default=True,
              help="Seconds per usage record. Fixed for a data directory once set; shorter "
                   "only for tests.")
@click.pass_context
def serve(ctx: click.Context, host: str, port: int, data_dir: Path, region: str,
          base_domains: tuple[str, ...], database_url: str | None, log_level: str,
          access_log: bool, max_object_size: int | None, header_timeout: float,
          body_timeout: float, config_path: Path | None, metering_period: int) -> None:
    """Run a provider node: S3, the service broker API (/v2/) and the federation API
    (/federation/) on one HTTP port, on the embedded default storage."""
    import uvicorn

    from silverlining.node.app import NodeApp
    from silverlining.node.config import ConfigError, NodeFileConfig, load_config
    from silverlining.node.store.usage import PeriodMismatch

    logging.basicConfig(level=log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        if config_path is None and (data_dir / "config.toml").is_file():
            config_path = data_dir / "config.toml"
        file_config = load_config(config_path) if config_path else NodeFileConfig()
    except ConfigError as exc:
        _fail(str(exc))
    explicit_region = ctx.get_parameter_source("region") not in (
        click.core.ParameterSource.DEFAULT, click.core.ParameterSource.DEFAULT_MAP)
    if not explicit_region and file_config.node.region:
        region = file_config.node.region
    try:
        limits = Limits()
        if max_object_size is not None:
            limits = replace(limits, max_object_size=max_object_size,
                             max_put_size=min(limits.max_put_size, max_object_size),
                             max_part_size=min(limits.max_part_size, max_object_size))
        node = Node(NodeConfig(data_dir=data_dir, region=region, base_domains=base_domains,
                               database_url=database_url, limits=limits,
                               header_timeout=header_timeout, body_timeout=body_timeout,
                               file_config=file_config, endpoint=_endpoint(host, port),
                               metering_period=metering_period))
    except ConfigError as exc:
        _fail(str(exc))
    except Exception as exc:  # a clear message, not a traceback
        raise click.ClickException(f"cannot open node data in {data_dir}: {exc}") from None
    try:
        node.start_services()
    except PeriodMismatch as exc:
        node.close()
        _fail(f"{data_dir} meters in periods of {exc.stored_ms // 1000} s; "
              f"--metering-period {exc.wanted_ms // 1000} would break its usage series "
              f"(use --metering-period {exc.stored_ms // 1000}, or a new data directory)")
    except OSError as exc:
        node.close()
        raise click.ClickException(
            f"cannot start metering in {data_dir / 'metering'}: {exc.strerror}") from None
    if not file_config.node.public_endpoint and host in _WILDCARD_HOSTS:
        logging.getLogger("silverlining.node").warning(
            "no public_endpoint in the configuration: bindings will hand out %s, which "
            "clients cannot reach; set [node] public_endpoint", node.offering.endpoint)
    removed, freed = node.sweep()
    if removed:
        logging.getLogger("silverlining.node").info(
            "swept %d leftover file(s) from an interrupted run (%d bytes freed)", removed, freed)
    admin = node.accounts.ensure_admin()
    if admin is not None:
        click.echo("Created account 'admin' with this access key (the secret is shown only "
                   "once; keep it safe):")
        click.echo(f"  access key id:     {admin.access_key_id}")
        click.echo(f"  secret access key: {admin.secret_access_key}")
        click.echo(f"Make more with: silverlining accounts create NAME --data-dir {data_dir} "
                   f"&& silverlining keys create NAME --data-dir {data_dir}")
    click.echo(f"Silver Lining node: S3 endpoint http://{host}:{port} (region {region}, "
               f"data in {data_dir})", err=False)
    from silverlining.node.domain import md5lanes

    click.echo(f"Hashing of uploads: {md5lanes.describe()}")
    if node.broker.auth.configured():
        click.echo(f"Service broker API at {node.offering.endpoint}/v2/ ("
                   f"{len(node.offering.plans)} plan(s)); usage records at /federation/usage")
    else:
        click.echo(f"Service broker API at {node.offering.endpoint}/v2/ is closed until you "
                   f"set its credentials: silverlining broker set-credentials USERNAME "
                   f"--data-dir {data_dir}")
    sys.stdout.flush()
    _raise_fd_limit()
    from silverlining.node.protocol.http import S3HttpProtocol

    app = NodeApp(node, access_log=access_log)
    faults.arm()
    config = uvicorn.Config(
        app, host=host, port=port, loop="uvloop",
        http=S3HttpProtocol.with_timeout(header_timeout), lifespan="on",
        access_log=False, server_header=False, log_level=log_level,
        timeout_keep_alive=30, backlog=2048, proxy_headers=False,
    )
    uvicorn.Server(config).run()


#: Listening on these, HOST:PORT is no address a client can use.
_WILDCARD_HOSTS = ("0.0.0.0", "::", "")  # noqa: S104


def _endpoint(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _fail(message: str) -> NoReturn:
    """A configuration problem: one line on stderr, exit status 2, no traceback."""
    click.echo(f"error: {message}", err=True)
    sys.exit(2)


def _raise_fd_limit() -> None:
    # A multipart object's GET holds one open file per part until it is sent.
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


# --- accounts -------------------------------------------------------------------------------


@click.group()
def accounts() -> None:
    """Manage the node's accounts (tenants). Works while the node runs."""


def _account_json(a: Any) -> dict[str, Any]:
    return {"name": a.name, "canonical_id": a.canonical_id, "created_at": a.created_at,
            "quota_bytes": a.quota_bytes, "quota_objects": a.quota_objects,
            "bytes_used": a.bytes_used, "objects_used": a.objects_used}


@accounts.command("create")
@click.argument("name")
@data_dir_option
@json_option
def accounts_create(name: str, data_dir: Path, as_json: bool) -> None:
    """Create account NAME."""
    with open_node(data_dir, create=True) as node:
        acct = node.accounts.create(name)
    _emit(as_json, _account_json(acct), lambda: click.echo(
        f"Created account {acct.name!r}. Give it a key: silverlining keys create {acct.name} "
        f"--data-dir {data_dir}"))


@accounts.command("list")
@data_dir_option
@json_option
def accounts_list(data_dir: Path, as_json: bool) -> None:
    """List accounts with their usage and quotas."""
    with open_node(data_dir) as node:
        items = node.accounts.all()

    def human() -> None:
        table = Table("name", "objects", "bytes", "quota (bytes)", "quota (objects)")
        for a in items:
            table.add_row(a.name, str(a.objects_used), str(a.bytes_used),
                          _opt(a.quota_bytes), _opt(a.quota_objects))
        Console().print(table)

    _emit(as_json, [_account_json(a) for a in items], human)


def _opt(v: int | None) -> str:
    return "-" if v is None else str(v)


@accounts.command("delete")
@click.argument("name")
@click.option("--purge", is_flag=True, help="Also delete every bucket and object it owns.")
@data_dir_option
@json_option
def accounts_delete(name: str, purge: bool, data_dir: Path, as_json: bool) -> None:
    """Delete account NAME and revoke its keys."""
    with open_node(data_dir) as node:
        freed = node.accounts.delete(name, purge=purge)
    _emit(as_json, {"deleted": name, "blobs_freed": freed},
          lambda: click.echo(f"Deleted account {name!r}."))


@accounts.command("set-quota")
@click.argument("name")
@click.option("--max-bytes", type=click.IntRange(min=0), default=None,
              help="Most bytes the account may store (omit for no limit).")
@click.option("--max-objects", type=click.IntRange(min=0), default=None,
              help="Most objects the account may store (omit for no limit).")
@data_dir_option
@json_option
def accounts_set_quota(name: str, max_bytes: int | None, max_objects: int | None,
                       data_dir: Path, as_json: bool) -> None:
    """Set (or clear) account NAME's storage quotas. Writes beyond them get QuotaExceeded."""
    with open_node(data_dir) as node:
        acct = node.accounts.set_quota(name, max_bytes, max_objects)
    _emit(as_json, _account_json(acct), lambda: click.echo(
        f"Quota of {name!r}: bytes {_opt(acct.quota_bytes)}, objects {_opt(acct.quota_objects)}"))


# --- keys -----------------------------------------------------------------------------------


@click.group()
def keys() -> None:
    """Manage access keys. Works while the node runs; revocation is immediate."""


@keys.command("create")
@click.argument("account")
@data_dir_option
@json_option
def keys_create(account: str, data_dir: Path, as_json: bool) -> None:
    """Create an access key for ACCOUNT (the secret is shown only once)."""
    with open_node(data_dir, create=True) as node:
        key = node.accounts.create_key(account)

    def human() -> None:
        click.echo(f"Access key for {account!r} (the secret is shown only once):")
        click.echo(f"  access key id:     {key.access_key_id}")
        click.echo(f"  secret access key: {key.secret_access_key}")

    _emit(as_json, {"access_key_id": key.access_key_id,
                    "secret_access_key": key.secret_access_key, "account": account}, human)


@keys.command("list")
@click.argument("account")
@data_dir_option
@json_option
def keys_list(account: str, data_dir: Path, as_json: bool) -> None:
    """List ACCOUNT's access keys (ids only; secrets are never shown again)."""
    with open_node(data_dir) as node:
        items = node.accounts.list_keys(account)

    def human() -> None:
        table = Table("access key id", "status", "created")
        for k in items:
            table.add_row(k.access_key_id, "active" if k.active else "revoked",
                          _when(k.created_at))
        Console().print(table)

    _emit(as_json, [{"access_key_id": k.access_key_id, "account": k.account_name,
                     "created_at": k.created_at, "revoked_at": k.revoked_at,
                     "status": "active" if k.active else "revoked"} for k in items], human)


@keys.command("revoke")
@click.argument("key_id")
@data_dir_option
@json_option
def keys_revoke(key_id: str, data_dir: Path, as_json: bool) -> None:
    """Revoke access key KEY_ID; requests signed with it are refused from now on."""
    with open_node(data_dir) as node:
        key = node.accounts.revoke_key(key_id)
    _emit(as_json, {"access_key_id": key.access_key_id, "status": "revoked"},
          lambda: click.echo(f"Revoked {key.access_key_id}."))


def _when(ts: float) -> str:
    import datetime as dt

    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ")


