"""``silverlining market ...``: run the market (serve) and use it (everything else, a client of
its JSON API: ``--market URL`` / ``SILVERLINING_MARKET_URL`` and ``--token`` /
``SILVERLINING_MARKET_TOKEN``)."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click
from rich.console import Console
from rich.table import Table

from silverlining.market.client import DEFAULT_URL, ApiError, MarketClient

F = TypeVar("F", bound=Callable[..., Any])
DEFAULT_DATA_DIR = "./market-data"


def _fail(message: str, code: int = 1) -> NoReturn:
    click.echo(f"Error: {message}", err=True)
    sys.exit(code)


def client_options(fn: F) -> F:
    fn = click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")(fn)
    fn = click.option("--token", envvar="SILVERLINING_MARKET_TOKEN", default=None,
                      help="Your market token (env SILVERLINING_MARKET_TOKEN).")(fn)
    return click.option("--market", "market_url", envvar="SILVERLINING_MARKET_URL",
                        default=DEFAULT_URL, show_default=True,
                        help="The market's URL (env SILVERLINING_MARKET_URL).")(fn)


def _call(market_url: str, token: str | None, method: str, path: str, *,
          body: Any = None, params: dict[str, Any] | None = None, text: bool = False) -> Any:
    if not token:
        _fail("no token: pass --token or set SILVERLINING_MARKET_TOKEN", 2)
    client = MarketClient(market_url, token)
    try:
        return client.call(method, path, body=body, params=params, text=text)
    except ApiError as error:
        if error.status is None:
            _fail(str(error), 2)
        order = error.body.get("order")
        if isinstance(order, dict) and order.get("attempts"):
            _print_attempts(order["attempts"], err=True)
        _fail(str(error))
    finally:
        client.close()


def _emit(as_json: bool, data: Any, human: Callable[[], None]) -> None:
    if as_json:
        click.echo(json.dumps(data, indent=2, sort_keys=True))
    else:
        human()


def _console(err: bool = False) -> Console:
    return Console(stderr=err, highlight=False, soft_wrap=True)


def _table(title: str | None, columns: list[str], rows: list[list[Any]]) -> None:
    table = Table(title=title, show_lines=False)
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*("" if v is None else str(v) for v in row))
    _console().print(table)


@click.group()
def market() -> None:
    """The federated market: run it (serve), onboard providers, compare offers, buy."""


# --- serve ------------------------------------------------------------------------------------

@market.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535))
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path),
              default=DEFAULT_DATA_DIR, show_default=True, envvar="SILVERLINING_MARKET_DATA_DIR",
              help="Database (SQLite default), market key and signing key.")
@click.option("--database-url", default=None, envvar="SILVERLINING_MARKET_DATABASE_URL",
              help="PostgreSQL instead of SQLite, e.g. postgresql://user:pw@host/market.")
@click.option("--listing-level", type=click.Choice(["s3-basic", "s3-full"]),
              default="s3-basic", show_default=True,
              help="The Core level a provider must be certified at to be listed.")
@click.option("--recertify-interval", type=click.FloatRange(min=1), default=86_400.0,
              show_default=True, help="Seconds between re-certifications of each provider.")
@click.option("--refresh-interval", type=click.FloatRange(min=1), default=3_600.0,
              show_default=True, help="Seconds between reads of each provider's catalog.")
@click.option("--collect-interval", type=click.FloatRange(min=1), default=300.0,
              show_default=True, help="Seconds between collections of usage records.")
@click.option("--probe-interval", type=click.FloatRange(min=0.5), default=300.0,
              show_default=True, help="Seconds between probes of each provider.")
@click.option("--move-workers", type=click.IntRange(1, 64), default=8, show_default=True,
              help="Objects (or parts) each move copies at a time.")
@click.option("--fee-percent", default="5", show_default=True,
              help="The market's fee on every priced usage line, in percent.")
@click.option("--broker-timeout", type=click.FloatRange(min=0.1), default=30.0,
              show_default=True, help="Seconds a provider's broker may take to answer.")
@click.option("--core-workers", type=click.IntRange(1, 64), default=8, show_default=True,
              help="Core checks run in parallel during certification.")
@click.option("--log-level", default="info", show_default=True,
              type=click.Choice(["critical", "error", "warning", "info", "debug"]))
def serve(host: str, port: int, data_dir: Path, database_url: str | None, listing_level: str,
          recertify_interval: float, refresh_interval: float, collect_interval: float,
          probe_interval: float, move_workers: int, fee_percent: str, broker_timeout: float,
          core_workers: int, log_level: str) -> None:
    """Run the market: JSON API under /api/v1/, OSB broker under /v2/."""
    import uvicorn
    from sqlalchemy.exc import SQLAlchemyError

    from silverlining.market.accounts import ensure_admin
    from silverlining.market.server import create_app
    from silverlining.market.state import MarketState, Settings
    from silverlining.market.store import StoreError
    from silverlining.market.vault import VaultError

    settings = Settings(
        data_dir=data_dir, database_url=database_url, listing_level=listing_level,
        recertify_interval=recertify_interval, refresh_interval=refresh_interval,
        collect_interval=collect_interval, probe_interval=probe_interval,
        move_workers=move_workers, fee_percent=fee_percent,
        broker_timeout=broker_timeout, core_workers=core_workers)
    try:
        fee = Decimal(fee_percent)
    except ArithmeticError:
        fee = Decimal(-1)
    if not fee.is_finite() or not 0 <= fee < 100:
        _fail("--fee-percent is a number from 0 to 100 (exclusive)", 2)
    try:
        state = MarketState.open(settings)
        token = ensure_admin(state)
    except (StoreError, VaultError, SQLAlchemyError, OSError, ImportError) as error:
        _fail(f"cannot open the market's data: {str(error).splitlines()[0]}", 2)
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(message)s")
    click.echo(f"Silver Lining market on http://{host}:{port}  (data: {data_dir}"
               + (", database: PostgreSQL" if database_url else "") + ")")
    if token is not None:
        click.echo("First start: created the account 'admin'. Its token, shown this once "
                   "(keep it secret):")
        click.echo(f"  {token}")
        click.echo(f"  export SILVERLINING_MARKET_URL=http://{host}:{port} "
                   "SILVERLINING_MARKET_TOKEN=<that token>")
    sys.stdout.flush()
    app = create_app(state)
    try:
        uvicorn.run(app, host=host, port=port, log_level=log_level, access_log=False,
                    server_header=False)
    finally:
        state.close()


# --- accounts and tokens ---------------------------------------------------------------------

@market.group("accounts")
def accounts_group() -> None:
    """Market accounts (admin): buyers, provider operators, admins."""


@accounts_group.command("create")
@click.argument("name")
@click.option("--role", type=click.Choice(["buyer", "provider", "admin"]), default="buyer",
              show_default=True)
@client_options
def accounts_create(name: str, role: str, market_url: str, token: str | None,
                    as_json: bool) -> None:
    """Create an account; prints its token once."""
    out = _call(market_url, token, "POST", "/accounts", body={"name": name, "role": role})
    _emit(as_json, out, lambda: click.echo(
        f"Created {role} account {name!r}. Its token (shown this once):\n  {out['token']}"))


@accounts_group.command("list")
@client_options
def accounts_list(market_url: str, token: str | None, as_json: bool) -> None:
    out = _call(market_url, token, "GET", "/accounts")
    _emit(as_json, out, lambda: _table("Accounts", ["name", "role", "created"], [
        [a["name"], a["role"], a["created_at"]] for a in out]))


@market.group("tokens")
def tokens_group() -> None:
    """API tokens (admin)."""


@tokens_group.command("create")
@click.argument("account")
@client_options
def tokens_create(account: str, market_url: str, token: str | None, as_json: bool) -> None:
    """Another token for ACCOUNT; printed once."""
    out = _call(market_url, token, "POST", f"/accounts/{account}/tokens")
    _emit(as_json, out, lambda: click.echo(f"{out['token']}\n(token id {out['token_id']})"))


@tokens_group.command("revoke")
@click.argument("token_id")
@client_options
def tokens_revoke(token_id: str, market_url: str, token: str | None, as_json: bool) -> None:
    out = _call(market_url, token, "DELETE", f"/tokens/{token_id}")
    _emit(as_json, out, lambda: click.echo(f"Revoked token {token_id}."))


# --- providers --------------------------------------------------------------------------------

@market.group("providers")
def providers_group() -> None:
    """Providers: onboard, certify, list, delist."""


def _print_certification(cert: dict[str, Any], provider: dict[str, Any]) -> None:
    console = _console()
    if cert["passed"]:
        console.print(f"[green]{provider['name']} is listed[/green]: Core certified "
                      f"{cert['certified']} ({cert['finished_at']}).")
    else:
        console.print(f"[red]{provider['name']} is {provider['status']}[/red]: "
                      f"{provider.get('status_reason') or cert.get('error')}")
    if cert["failed"]:
        _table("Checks that did not pass", ["check", "status", "statement", "reason"], [
            [f["id"], f["status"], f["statement"], (f.get("reason") or "")[:160]]
            for f in cert["failed"]])


@providers_group.command("add")
@click.argument("name")
@click.option("--broker-url", required=True, help="The provider's broker (node) URL.")
@click.option("--broker-user", required=True)
@click.option("--broker-password", default=None, help="Or --broker-password-stdin.")
@click.option("--broker-password-stdin", is_flag=True, help="Read the password from stdin.")
@client_options
def providers_add(name: str, broker_url: str, broker_user: str, broker_password: str | None,
                  broker_password_stdin: bool, market_url: str, token: str | None,
                  as_json: bool) -> None:
    """Onboard a provider: certify it with Core; it is listed only if it passes."""
    if broker_password_stdin:
        broker_password = sys.stdin.readline().rstrip("\n")
    if not broker_password:
        _fail("give --broker-password or --broker-password-stdin", 2)
    if not as_json:
        click.echo(f"Certifying {name} (Core s3-full through a throw-away tenant)...")
    out = _call(market_url, token, "POST", "/providers", body={
        "name": name, "broker_url": broker_url, "broker_user": broker_user,
        "broker_password": broker_password})
    _emit(as_json, out, lambda: _print_certification(out["certification"], out["provider"]))
    if not out["certification"]["passed"]:
        sys.exit(1)


@providers_group.command("list")
@client_options
def providers_list(market_url: str, token: str | None, as_json: bool) -> None:
    """Every provider with its certification level, report time and status."""
    out = _call(market_url, token, "GET", "/providers")
    _emit(as_json, out, lambda: _table("Providers", [
        "name", "status", "level", "certified at", "region", "jurisdiction", "endpoint",
        "note"], [[p["name"], p["status"], p["level"], p["certified_at"], p["region"],
                   p["jurisdiction"], p["endpoint"], (p["status_reason"] or "")[:80]]
                  for p in out]))


@providers_group.command("show")
@click.argument("name")
@client_options
def providers_show(name: str, market_url: str, token: str | None, as_json: bool) -> None:
    out = _call(market_url, token, "GET", f"/providers/{name}")

    def human() -> None:
        for key in ("name", "status", "status_reason", "level", "certified_at", "broker_url",
                    "endpoint", "region", "jurisdiction", "catalog_at", "catalog_error",
                    "health"):
            if out.get(key) is not None:
                click.echo(f"{key.replace('_', ' '):>15}: {out[key]}")
        measured = out.get("measured")
        if measured:
            click.echo(f"{'availability':>15}: {measured['availability']}% over the last "
                       f"{measured['probes']} probes; latency p50 "
                       f"{measured['latency_p50_ms']} ms, p99 {measured['latency_p99_ms']} ms")
        else:
            click.echo(f"{'availability':>15}: not probed yet")
        _table("Certifications", ["id", "finished", "certified", "passed", "failed checks"], [
            [c["id"], c["finished_at"], c["certified"], "yes" if c["passed"] else "no",
             ", ".join(f["id"] for f in c["failed"])[:100] or c.get("error")]
            for c in out["certifications"]])

    _emit(as_json, out, human)


@providers_group.command("recertify")
@click.argument("name")
@client_options
def providers_recertify(name: str, market_url: str, token: str | None, as_json: bool) -> None:
    """Run Core against NAME now; list or delist it on the outcome."""
    out = _call(market_url, token, "POST", f"/providers/{name}/recertify")
    _emit(as_json, out, lambda: _print_certification(out["certification"], out["provider"]))
    if not out["certification"]["passed"]:
        sys.exit(1)


@providers_group.command("refresh")
@click.argument("name")
@client_options
def providers_refresh(name: str, market_url: str, token: str | None, as_json: bool) -> None:
    """Read NAME's catalog (plans and prices) now."""
    out = _call(market_url, token, "POST", f"/providers/{name}/refresh")
    _emit(as_json, out, lambda: click.echo(f"Catalog of {name} read at {out['catalog_at']}."))


@providers_group.command("delist")
@click.argument("name")
@click.option("--reason", required=True)
@client_options
def providers_delist(name: str, reason: str, market_url: str, token: str | None,
                     as_json: bool) -> None:
    """Take NAME off the market (its subscriptions keep working, flagged)."""
    out = _call(market_url, token, "POST", f"/providers/{name}/delist", body={"reason": reason})
    _emit(as_json, out, lambda: click.echo(f"{name} is {out['status']}."))


@market.command("report")
@click.argument("certification_id")
@client_options
def report(certification_id: str, market_url: str, token: str | None, as_json: bool) -> None:
    """Print a certification's signed Core report (check it with `silverlining core verify`)."""
    out = _call(market_url, token, "GET", f"/certifications/{certification_id}/report")
    click.echo(json.dumps(out, indent=2, ensure_ascii=False))


# --- offers and buying ------------------------------------------------------------------------

def profile_options(fn: F) -> F:
    for option in reversed([
        click.option("--region", default=None),
        click.option("--jurisdiction", default=None, help="e.g. DE, FR, US."),
        click.option("--min-level", type=click.Choice(["s3-basic", "s3-full"]), default=None),
        click.option("--currency", default=None, help="Only offers priced in it (EUR, USD)."),
        click.option("--max-price-gb-month", type=Decimal, default=None),
        click.option("--max-price-egress-gb", type=Decimal, default=None),
        click.option("--min-availability", type=Decimal, default=None,
                     help="Measured availability in percent (probes), e.g. 99.9."),
        click.option("--expect-gb", type=Decimal, default=Decimal(0), show_default=True,
                     help="GB you expect to store (monthly average)."),
        click.option("--expect-egress-gb", type=Decimal, default=Decimal(0),
                     show_default=True, help="GB you expect to download per month."),
        click.option("--expect-requests", type=click.IntRange(min=0), default=0,
                     show_default=True, help="Requests you expect per month."),
        click.option("--write-share", type=Decimal, default=Decimal("0.2"), show_default=True,
                     help="The share of those requests that are writes (PUT, LIST, ...)."),
    ]):
        fn = option(fn)
    return fn


def _profile(kw: dict[str, Any]) -> dict[str, Any]:
    out = {k: kw.pop(k) for k in ("region", "jurisdiction", "min_level", "currency",
                                  "max_price_gb_month", "max_price_egress_gb",
                                  "min_availability", "expect_gb",
                                  "expect_egress_gb", "expect_requests", "write_share")}
    return {k: str(v) if isinstance(v, Decimal) else v for k, v in out.items()}


def _money(prices: dict[str, str], key: str) -> str:
    return f"{prices[key]} {prices['currency']}"


@market.command()
@profile_options
@click.option("--provider", default=None)
@click.option("--sort", type=click.Choice(["estimate", "price_gb_month", "price_egress_gb",
                                           "provider", "region", "level"]),
              default="estimate", show_default=True)
@client_options
def offers(provider: str | None, sort: str, market_url: str, token: str | None, as_json: bool,
           **kw: Any) -> None:
    """Every plan of every listed provider, with what your usage profile would cost."""
    params = {**_profile(kw), "provider": provider, "sort": sort}
    out = _call(market_url, token, "GET", "/offers", params=params)
    _emit(as_json, out, lambda: _table("Offers", [
        "provider", "plan", "region", "jurisdiction", "level", "GB-month", "egress GB",
        "1k writes", "1k reads", "availability", "p50 / p99 ms", "expected / month"], [
        [o["provider"], o["plan"], o["region"], o["jurisdiction"], o["level"],
         _money(o["prices"], "gb_month"), _money(o["prices"], "egress_gb"),
         o["prices"]["write_1k"], o["prices"]["read_1k"], _availability(o),
         _latency(o), f"{o['expected_monthly_cost']} {o['prices']['currency']}"]
        for o in out]))


def _availability(o: dict[str, Any]) -> str:
    if o.get("availability") is None:
        return "not probed"
    return f"{o['availability']}%" + (" DEGRADED" if o.get("health") == "degraded" else "")


def _latency(o: dict[str, Any]) -> str:
    if o.get("latency_p50_ms") is None:
        return "-"
    return f"{o['latency_p50_ms']} / {o['latency_p99_ms']}"


def _print_attempts(attempts: list[dict[str, Any]], err: bool = False) -> None:
    console = _console(err)
    for a in attempts:
        style = {"provisioned": "green", "failed": "red"}.get(a["outcome"], "yellow")
        console.print(f"  [{style}]{a['outcome']}[/{style}] {a['provider']} ({a['plan']}, "
                      f"expected {a['expected_monthly_cost']}/month)"
                      + (f": {a['error']}" if a.get("error") else ""))


@market.command()
@click.argument("service", type=click.Choice(["object-storage"]))
@profile_options
@click.option("--policy", type=click.Choice(["cheapest", "spread"]), default="cheapest",
              show_default=True)
@click.option("--copies", type=click.IntRange(1, 10), default=1, show_default=True,
              help="With --policy spread: subscriptions on this many distinct providers.")
@click.option("--preview", is_flag=True, help="Show the ranked offers; buy nothing.")
@client_options
def buy(service: str, policy: str, copies: int, preview: bool, market_url: str,
        token: str | None, as_json: bool, **kw: Any) -> None:
    """Buy SERVICE from the best matching offer(s); prints the endpoint and keys."""
    body = {"service": service, **_profile(kw), "policy": policy, "copies": copies}
    body = {k: v for k, v in body.items() if v is not None}
    if preview:
        out = _call(market_url, token, "POST", "/orders/preview", body=body)
        _emit(as_json, out, lambda: _table("Candidates, best first", [
            "provider", "plan", "region", "level", "expected / month"], [
            [o["provider"], o["plan"], o["region"], o["level"],
             f"{o['expected_monthly_cost']} {o['prices']['currency']}"]
            for o in out["candidates"]]))
        return
    out = _call(market_url, token, "POST", "/orders", body=body)

    def human() -> None:
        click.echo(f"Order {out['id']}: {out['message']}")
        _print_attempts(out["attempts"])
        for sub in out["subscriptions"]:
            click.echo(f"\nSubscription {sub['id']} at {sub['provider']} ({sub['plan']}, "
                       f"{sub['region']})")
            click.echo(f"  endpoint:          {sub['endpoint']}")
            click.echo(f"  access key id:     {sub['access_key_id']}")
            click.echo(f"  secret access key: {sub['secret_access_key']}")
            p = sub["prices"]
            click.echo(f"  prices (fixed):    {p['gb_month']} {p['currency']}/GB-month, "
                       f"{p['egress_gb']}/GB egress, {p['write_1k']}/1k writes, "
                       f"{p['read_1k']}/1k reads")
        click.echo("\nUse it with any S3 client, e.g.:\n  aws --endpoint-url "
                   f"{out['subscriptions'][0]['endpoint']} s3 ls")

    _emit(as_json, out, human)


@market.command()
@click.option("--all", "everyone", is_flag=True, help="Admin: every buyer's.")
@client_options
def subscriptions(everyone: bool, market_url: str, token: str | None, as_json: bool) -> None:
    """Your subscriptions."""
    out = _call(market_url, token, "GET", "/subscriptions",
                params={"all": "true" if everyone else None})
    _emit(as_json, out, lambda: _table("Subscriptions", [
        "id", "provider", "plan", "status", "flags", "endpoint", "access key id", "created"], [
        [s["id"], s["provider"], s["plan"], s["status"], ",".join(s["flags"]),
         s["endpoint"], s["access_key_id"], s["created_at"]] for s in out]))


@market.command()
@click.argument("subscription_id")
@click.option("--reveal", is_flag=True, help="Include the secret access key.")
@client_options
def subscription(subscription_id: str, reveal: bool, market_url: str, token: str | None,
                 as_json: bool) -> None:
    """One subscription, its endpoint and keys."""
    out = _call(market_url, token, "GET", f"/subscriptions/{subscription_id}",
                params={"reveal": "true" if reveal else None})

    def human() -> None:
        for key, value in out.items():
            click.echo(f"{key.replace('_', ' '):>18}: {value}")

    _emit(as_json, out, human)


@market.command()
@click.argument("subscription_id")
@click.option("--yes", is_flag=True, help="Do not ask: the provider deletes the data.")
@client_options
def cancel(subscription_id: str, yes: bool, market_url: str, token: str | None,
           as_json: bool) -> None:
    """Cancel a subscription: the provider DELETES every bucket and object in it."""
    if not yes:
        if not sys.stdin.isatty():
            _fail("cancelling deletes the subscription's data at the provider; "
                  "confirm with --yes", 2)
        click.confirm(f"Cancel {subscription_id}? The provider will delete all of its "
                      "buckets and objects", abort=True)
    out = _call(market_url, token, "DELETE", f"/subscriptions/{subscription_id}")
    _emit(as_json, out, lambda: click.echo(
        f"Cancelled {subscription_id} at {out['provider']}; its data is deleted."))


@market.command()
@click.option("--limit", type=click.IntRange(1, 1000), default=100, show_default=True)
@click.option("--after", type=click.IntRange(min=0), default=0, help="Entries after this seq.")
@client_options
def audit(limit: int, after: int, market_url: str, token: str | None, as_json: bool) -> None:
    """The market's audit log (admin): every state change."""
    out = _call(market_url, token, "GET", "/audit", params={"limit": limit, "after": after})
    _emit(as_json, out, lambda: _table("Audit log", ["seq", "at", "actor", "action", "subject",
                                                     "detail"], [
        [e["seq"], e["at"], e["actor"], e["action"], e["subject"],
         json.dumps(e["detail"], sort_keys=True)[:120]] for e in out]))


# --- billing ----------------------------------------------------------------------------------

@market.command()
@client_options
def collect(market_url: str, token: str | None, as_json: bool) -> None:
    """Collect the providers' signed usage records now (admin; the schedule does it too)."""
    out = _call(market_url, token, "POST", "/billing/collect")

    def human() -> None:
        click.echo(f"{out['subscriptions']} subscription(s), {out['batches']} signed batch(es): "
                   f"{out['records_new']} new record(s), {out['records_known']} known, "
                   f"{out['disputes']} dispute(s)")
        for error in out["errors"]:
            click.echo(f"  not collected: {error}", err=True)

    _emit(as_json, out, human)


@market.command()
@client_options
def disputes(market_url: str, token: str | None, as_json: bool) -> None:
    """Usage the market refused (admin): bad signatures, changed closed hours."""
    out = _call(market_url, token, "GET", "/billing/disputes")
    _emit(as_json, out, lambda: _table("Disputes", ["at", "provider", "kind", "subscription",
                                                    "detail"], [
        [d["at"], d["provider"], d["kind"], d["subscription_id"], d["detail"][:120]]
        for d in out]))


@market.group()
def ledger() -> None:
    """The double-entry ledger (admin)."""


@ledger.command("verify")
@client_options
def ledger_verify(market_url: str, token: str | None, as_json: bool) -> None:
    """Prove the ledger: balanced transactions, each record priced once and right."""
    out = _call(market_url, token, "GET", "/billing/ledger/verify")

    def human() -> None:
        state = "[green]balanced[/green]" if out["ok"] else "[red]NOT balanced[/red]"
        _console().print(f"Ledger {state}: {out['transactions']} transactions, "
                         f"{out['entries']} entries, sum {out['total_micro']} micro-units")
        for problem in out["problems"]:
            click.echo(f"  {problem}")

    _emit(as_json, out, human)
    if not out["ok"]:
        sys.exit(1)


@market.command()
@click.argument("subscription_id")
@client_options
def usage(subscription_id: str, market_url: str, token: str | None, as_json: bool) -> None:
    """A subscription's raw signed usage records beside the priced lines; the signatures are
    checked here, on your machine, against the node's public key."""
    from silverlining.market.billing import verify_batch

    out = _call(market_url, token, "GET", f"/subscriptions/{subscription_id}/usage")
    key = out["node_public_key"]
    verified = {bid: bool(key) and verify_batch(doc, key) for bid, doc in out["batches"].items()}
    out["signatures_verified"] = verified

    def human() -> None:
        click.echo(f"Subscription {subscription_id} at {out['provider']}; node key {key}")
        ok = all(verified.values())
        click.echo(f"{len(verified)} signed batch(es): "
                   + ("all signatures verify" if ok else "SOME SIGNATURES DO NOT VERIFY"))
        rows = []
        for rec in out["records"]:
            raw = rec["record"]
            for line in rec["lines"] or [{"usage_type": "-", "quantity": "0", "unit": "",
                                          "amount": "0"}]:
                rows.append([rec["period_start"], raw["requests_read"], raw["requests_write"],
                             raw["bytes_out"], raw["stored_byte_ms"], line["usage_type"],
                             f"{line['quantity']} {line['unit']}", line["amount"],
                             "yes" if verified.get(rec["batch_id"]) else "NO"])
        _table("Usage (raw record | priced line)", [
            "period", "reads", "writes", "bytes out", "byte-ms", "line", "quantity", "amount",
            "signed"], rows)
        click.echo(f"Total {out['total']} {out['prices']['currency']}")

    _emit(as_json, out, human)


@market.command()
@click.option("--create", is_flag=True, help="Invoice a period now (--from, --to).")
@click.option("--from", "start", default=None, help="Period start, ISO 8601.")
@click.option("--to", "end", default=None, help="Period end (exclusive), ISO 8601.")
@click.option("--account", default=None, help="Admin: the buyer to invoice.")
@click.option("--monthly", "month", default=None, metavar="YYYY-MM",
              help="Admin: make the month's invoices for every buyer that has none yet.")
@client_options
def invoices(create: bool, start: str | None, end: str | None, account: str | None,
             month: str | None, market_url: str, token: str | None, as_json: bool) -> None:
    """Your invoices (monthly, and on demand with --create --from --to)."""
    if month:
        made = _call(market_url, token, "POST", "/invoices/monthly", params={"month": month})
        _emit(as_json, made, lambda: click.echo(
            f"{made['created']} monthly invoice(s) made for {made['month']}."))
        return
    if create:
        if not start or not end:
            _fail("--create needs --from and --to", 2)
        out = _call(market_url, token, "POST", "/invoices",
                    body={"start": start, "end": end, "account": account})
    else:
        out = _call(market_url, token, "GET", "/invoices")
    _emit(as_json, out, lambda: _table("Invoices", [
        "id", "account", "period start", "period end", "kind", "total", "due"], [
        [i["id"], i["account"], i["period_start"], i["period_end"], i["kind"],
         f"{i['total']} {i['currency']}", f"{i['amount_due']} {i['currency']}"] for i in out]))


@market.command()
@click.argument("invoice_id")
@click.option("--format", "fmt", type=click.Choice(["table", "json", "csv"]), default="table",
              show_default=True, help="csv: FinOps FOCUS columns; --json is --format json.")
@client_options
def invoice(invoice_id: str, fmt: str, market_url: str, token: str | None,
            as_json: bool) -> None:
    """One invoice, itemised by subscription and usage type."""
    fmt = "json" if as_json else fmt
    if fmt == "csv":
        click.echo(_call(market_url, token, "GET", f"/invoices/{invoice_id}",
                         params={"format": "csv"}, text=True), nl=False)
        return
    out = _call(market_url, token, "GET", f"/invoices/{invoice_id}")
    if fmt == "json":
        click.echo(json.dumps(out, indent=2, sort_keys=True))
        return
    click.echo(f"Invoice {out['id']} for {out['account']}: {out['period_start']} to "
               f"{out['period_end']} ({out['kind']})")
    _table(None, ["subscription", "provider", "usage", "quantity", "unit price", "amount"], [
        [x["subscription_id"][:8], x["provider"], x["usage_type"],
         f"{x['pricing_quantity'][:14]} {x['pricing_unit']}", x["unit_price"], x["amount"]]
        for x in out["lines"]])
    click.echo(f"Total {out['total']} {out['currency']}; amount due {out['amount_due']} "
               f"{out['currency']}")


@market.command()
@click.argument("provider")
@click.option("--from", "start", required=True, help="Period start, ISO 8601.")
@click.option("--to", "end", required=True, help="Period end (exclusive), ISO 8601.")
@client_options
def statement(provider: str, start: str, end: str, market_url: str, token: str | None,
              as_json: bool) -> None:
    """What the market owes PROVIDER for a period (admin or its operator)."""
    out = _call(market_url, token, "GET", f"/providers/{provider}/statement",
                params={"start": start, "end": end})

    def human() -> None:
        for currency, part in out["currencies"].items():
            _table(f"{provider}: {out['period_start']} to {out['period_end']}", [
                "subscription", "usage", "quantity", "credited"], [
                [x["subscription_id"][:8], x["usage_type"],
                 f"{x['pricing_quantity'][:14]} {x['pricing_unit']}", x["amount"]]
                for x in part["lines"]])
            click.echo(f"Owed {part['owed']} {currency} (market fee {part['market_fee']})")

    _emit(as_json, out, human)


@market.group()
def budget() -> None:
    """Your monthly budget and its alerts."""


@budget.command("set")
@click.argument("amount", type=Decimal)
@click.option("--currency", default="EUR", show_default=True)
@click.option("--alerts", default="50,80,100", show_default=True,
              help="Alert thresholds, percent of the budget.")
@client_options
def budget_set(amount: Decimal, currency: str, alerts: str, market_url: str, token: str | None,
               as_json: bool) -> None:
    """Set the monthly budget: alerts at the thresholds, new orders refused at 100%."""
    try:
        marks = [int(x) for x in alerts.split(",") if x.strip()]
    except ValueError:
        _fail("--alerts is a comma-separated list of percentages, e.g. 50,80,100", 2)
    out = _call(market_url, token, "PUT", "/budget",
                body={"amount": str(amount), "currency": currency, "thresholds": marks})
    _emit(as_json, out, lambda: _print_budget(out))


@budget.command("show")
@client_options
def budget_show(market_url: str, token: str | None, as_json: bool) -> None:
    out = _call(market_url, token, "GET", "/budget")
    _emit(as_json, out, lambda: _print_budget(out))


def _print_budget(out: dict[str, Any]) -> None:
    if out["budget"] is None:
        click.echo(f"No budget. Charged in {out['month']}: {out['spend']}")
    else:
        click.echo(f"Budget {out['budget']} {out['currency']} per month; charged in "
                   f"{out['month']}: {out['spend']} ({out['percent_used']}%)"
                   + ("; NEW ORDERS BLOCKED" if out["blocked"] else ""))
    for alert in out["alerts"]:
        click.echo(f"  alert: {alert['threshold']}% reached at {alert['at']} "
                   f"({alert['spend']} of {alert['budget']})")


# --- moves ------------------------------------------------------------------------------------

@market.command()
@click.argument("subscription_id")
@click.option("--to-provider", default=None, help="Move to this provider (its cheapest plan).")
@profile_options
@click.option("--policy", type=click.Choice(["cheapest"]), default=None,
              help="Or: the cheapest other offer matching the constraints.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation of the quoted cost.")
@click.option("--detach", is_flag=True, help="Start the move and return; follow it with "
              "`market moves`.")
@client_options
def move(subscription_id: str, to_provider: str | None, policy: str | None, yes: bool,
         detach: bool, market_url: str, token: str | None, as_json: bool, **kw: Any) -> None:
    """Move a subscription to another provider: copy everything, verify, then switch.

    The old subscription keeps working until the switch; if the move fails it is left
    untouched. Shows the quoted cost (the source's egress) and asks first.
    """
    if (to_provider is None) == (policy is None):
        _fail("give --to-provider NAME or --policy cheapest (with constraints)", 2)
    body: dict[str, Any] = {"subscription_id": subscription_id}
    if to_provider is not None:
        body["to_provider"] = to_provider
    else:
        profile = {k: v for k, v in _profile(kw).items() if v is not None}
        body["order"] = {**profile, "policy": "cheapest"}
    q = _call(market_url, token, "POST", "/moves/quote", body=body)
    target = q["target_offer"]
    if not as_json:
        click.echo(f"Move {subscription_id} from {q['source_provider']} to "
                   f"{target['provider']} ({target['plan']}, {target['region']}):")
        click.echo(f"  {q['objects']} object(s), {q['bytes']} bytes to copy")
        click.echo(f"  quoted cost: {q['egress_cost']} {q['currency']} of egress at "
                   f"{q['source_provider']} ({q['egress_price_gb']} per GB)")
    if not yes:
        if not sys.stdin.isatty():
            _fail("confirm the quoted cost with --yes", 2)
        click.confirm("Start the move?", abort=True)
    started = _call(market_url, token, "POST", "/moves", body=body)
    if detach:
        _emit(as_json, started, lambda: click.echo(f"Move {started['id']} started."))
        return
    final = _follow(market_url, token, started["id"], quiet=as_json)
    _emit(as_json, final, lambda: _print_move_end(final))
    if final["state"] != "done":
        sys.exit(1)


def _follow(market_url: str, token: str | None, move_id: str, quiet: bool) -> Any:
    import time

    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn

    columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn())
    with Progress(*columns, console=_console(True), disable=quiet) as bar:
        task = bar.add_task("copying", total=None)
        while True:
            state = _call(market_url, token, "GET", f"/moves/{move_id}")
            p = state["progress"]
            if p.get("bytes_total"):
                bar.update(task, total=p["bytes_total"],
                           completed=p.get("bytes_copied", 0) + p.get("bytes_skipped", 0),
                           description=f"{state['state']}: {p.get('objects_copied', 0)} copied"
                                       f", {p.get('objects_skipped', 0)} already there")
            else:
                bar.update(task, description=state["state"])
            if state["state"] in ("done", "failed"):
                return state
            time.sleep(0.5)


def _print_move_end(state: dict[str, Any]) -> None:
    if state["state"] == "done":
        p = state["progress"]
        click.echo(f"Move {state['id']} done: {p.get('objects_copied', 0)} object(s) copied "
                   f"and verified; now at {state['target_provider']} as subscription "
                   f"{state['target_subscription_id']} (see `market subscription "
                   f"{state['target_subscription_id']} --reveal`). The old tenant at "
                   f"{state['source_provider']} is deprovisioned.")
    else:
        click.echo(f"Move {state['id']} failed: {state['error']}. The subscription at "
                   f"{state['source_provider']} is untouched.", err=True)


@market.command()
@client_options
def moves(market_url: str, token: str | None, as_json: bool) -> None:
    """Your moves and the state of each."""
    out = _call(market_url, token, "GET", "/moves")
    _emit(as_json, out, lambda: _table("Moves", [
        "id", "from", "to", "state", "copied", "bytes", "error", "started"], [
        [m["id"], m["source_provider"], m["target_provider"], m["state"],
         m["progress"].get("objects_copied", 0), m["progress"].get("bytes_copied", 0),
         (m["error"] or "")[:80], m["created_at"]] for m in out]))
