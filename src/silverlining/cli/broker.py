"""Operator commands for selling a node through a market: the broker's credentials, the
service instances it provisioned, and metered usage."""

from __future__ import annotations

import secrets
import sys
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from silverlining.cli.node import _emit, _when, data_dir_option, json_option, open_node
from silverlining.node.domain.broker import hash_password, validate_username
from silverlining.node.domain.usage import byte_hours, iso_ms, now_ms, parse_moment
from silverlining.node.store.accounts import NotFound

MIN_PASSWORD = 16


@click.group()
def broker() -> None:
    """The service broker (Open Service Broker API at /v2/) a market provisions through."""


@broker.command("set-credentials")
@click.argument("username")
@click.option("--password-stdin", is_flag=True,
              help="Read the password from the first line of standard input (at least "
                   f"{MIN_PASSWORD} characters) instead of generating one.")
@data_dir_option
@json_option
def set_credentials(username: str, password_stdin: bool, data_dir: Path, as_json: bool) -> None:
    """Set the HTTP Basic credentials of the broker and federation APIs.

    Only a salted scrypt hash is stored. Without --password-stdin a strong password is
    generated and printed once. Takes effect on the running node's next request.
    """
    try:
        validate_username(username)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    generated = not password_stdin
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
        if len(password) < MIN_PASSWORD:
            raise click.ClickException(
                f"the password must be at least {MIN_PASSWORD} characters (or omit "
                "--password-stdin to have one generated)")
    else:
        password = secrets.token_urlsafe(32)
    with open_node(data_dir, create=True) as node:
        node.broker_repo.set_credentials(username, hash_password(password))
    data: dict[str, Any] = {"username": username}
    if generated:
        data["password"] = password

    def human() -> None:
        click.echo(f"Broker credentials set for {username!r}.")
        if generated:
            click.echo(f"  password (shown only once; give it to the market): {password}")

    _emit(as_json, data, human)


@broker.command("show")
@data_dir_option
@json_option
def show(data_dir: Path, as_json: bool) -> None:
    """Show the broker's username (never the password) and its catalog."""
    with open_node(data_dir) as node:
        creds = node.broker_repo.get_credentials()
        offering = node.offering
    data = {"username": None if creds is None else creds[0], "configured": creds is not None,
            "service_id": offering.service_id, "endpoint": offering.endpoint,
            "plans": [{"id": p.id, "name": p.name} for p in offering.plans]}

    def human() -> None:
        if creds is None:
            click.echo("No broker credentials set (silverlining broker set-credentials USER).")
        else:
            click.echo(f"Broker username: {creds[0]}")
        click.echo(f"Service id: {offering.service_id}; plans: "
                   + ", ".join(p.name for p in offering.plans))

    _emit(as_json, data, human)


@broker.command("instances")
@data_dir_option
@json_option
def instances(data_dir: Path, as_json: bool) -> None:
    """List the service instances (tenants) the broker provisioned, including deprovisioned
    ones (kept so their usage stays queryable)."""
    with open_node(data_dir) as node:
        items = node.broker_repo.list_instances()
        names = {p.id: p.name for p in node.offering.plans}
        bindings = {i.instance_id: node.broker_repo.count_bindings(i.instance_id)
                    for i in items}

    def human() -> None:
        table = Table("instance id", "account", "plan", "state", "bindings", "created")
        for i in items:
            table.add_row(i.instance_id, i.account_name, names.get(i.plan_id, i.plan_id),
                          i.state, str(bindings[i.instance_id]), _when(i.created_at))
        Console().print(table)

    _emit(as_json, [{"instance_id": i.instance_id, "account": i.account_name,
                     "plan_id": i.plan_id, "state": i.state,
                     "bindings": bindings[i.instance_id], "created_at": i.created_at,
                     "deleted_at": i.deleted_at} for i in items], human)


@click.group()
def usage() -> None:
    """Metered usage: requests, bytes in and out, stored byte-time."""


@usage.command("show")
@click.argument("account")
@click.option("--since", default=None,
              help="Start (ISO 8601, e.g. 2024-05-01T00:00:00Z, or epoch seconds); default "
                   "24 hours before --until.")
@click.option("--until", default=None, help="End (exclusive); default now.")
@data_dir_option
@json_option
def usage_show(account: str, since: str | None, until: str | None, data_dir: Path,
               as_json: bool) -> None:
    """Show ACCOUNT's usage per metering period (ACCOUNT: an account name, or a service
    instance id; deprovisioned tenants too)."""
    until_ms = _moment(until, "--until") if until else now_ms()
    since_ms = _moment(since, "--since") if since else until_ms - 24 * 3_600_000
    if since_ms > until_ms:
        raise click.ClickException("--since is after --until")
    with open_node(data_dir) as node:
        account_id, name, instance_id = _resolve(node, account)
        node.fold_usage()
        state = node.usage.state()
        records = node.usage.account_records(account_id, since_ms, until_ms)
    data = {
        "account": name, "account_id": account_id, "instance_id": instance_id,
        "period_seconds": None if state is None else state.period_ms // 1000,
        "closed_until": (None if state is None or state.folded_until_ms is None
                         else iso_ms(state.folded_until_ms)),
        "records": [r.to_json() for r in records],
    }

    def human() -> None:
        if not records:
            click.echo(f"No usage recorded for {name!r} in that interval.")
            return
        table = Table("period start (UTC)", "closed", "reads", "writes", "bytes in",
                      "bytes out", "byte-hours", "stored bytes (end)",
                      title=f"usage of {name}" + (f" (instance {instance_id})"
                                                  if instance_id else ""))
        for r in records:
            table.add_row(iso_ms(r.period_start_ms), "yes" if r.closed else "open",
                          str(r.requests_read), str(r.requests_write), str(r.bytes_in),
                          str(r.bytes_out), byte_hours(r.stored_byte_ms),
                          str(r.stored_bytes_end))
        table.add_row("total", "", str(sum(r.requests_read for r in records)),
                      str(sum(r.requests_write for r in records)),
                      str(sum(r.bytes_in for r in records)),
                      str(sum(r.bytes_out for r in records)),
                      byte_hours(sum(r.stored_byte_ms for r in records)), "")
        Console().print(table)

    _emit(as_json, data, human)


def _resolve(node: Any, account: str) -> tuple[int, str, str | None]:
    """(account id, account name, instance id) of an account name or instance id."""
    instances = node.broker_repo.list_instances()
    try:
        acct = node.account_repo.get(account)
    except NotFound:
        for i in instances:
            if account in (i.account_name, i.instance_id):
                return i.account_id, i.account_name, i.instance_id
        raise click.ClickException(
            f"no account or service instance {account!r} (see `silverlining accounts list` "
            "and `silverlining broker instances`)") from None
    instance = next((i.instance_id for i in instances if i.account_id == acct.id), None)
    return acct.id, acct.name, instance


def _moment(text: str, option: str) -> int:
    try:
        return parse_moment(text)
    except ValueError:
        raise click.ClickException(
            f"{option} must be ISO 8601 (2024-05-01T00:00:00Z) or epoch seconds") from None
