"""`silverlining core ...`: the conformance kit's command line.

Exit statuses: ``check`` 0 when the level passed (with ``--only``: every selected check
passed), 1 when it did not, 2 for bad usage or an endpoint that cannot be checked; ``verify``
0 for a valid report, 1 for an invalid one, 2 for an unreadable file or bad usage.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any, NoReturn

import click
from rich.console import Console
from rich.table import Table
from rich.text import Text

from silverlining.core import CORE_VERSION
from silverlining.core.console import LiveProgress, print_results
from silverlining.core.context import ADDRESSING_STYLES, Target, TargetError
from silverlining.core.rawhttp import Credentials
from silverlining.core.registry import LEVELS, Level, load_checks
from silverlining.core.report import Report, Status
from silverlining.core.runner import DEFAULT_WORKERS, execute, plan
from silverlining.core.signing import (
    KeyFileError,
    NotAReport,
    fingerprint,
    generate_key,
    load_private_key,
    parse_public_key,
    public_key_text,
    sign_document,
    verify_document,
)

LEVEL_CHOICE = click.Choice([str(level) for level in LEVELS])


class UsageProblem(click.ClickException):
    """Bad usage or an endpoint that cannot be checked: one line on stderr, exit status 2."""

    exit_code = 2

    def show(self, file: Any = None) -> None:
        click.echo(f"error: {self.format_message()}", err=True)


def _fail(message: str) -> NoReturn:
    raise UsageProblem(message)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(CORE_VERSION, prog_name="Silver Lining Core", message="%(prog)s %(version)s")
def core() -> None:
    """Core: the conformance kit that checks any S3 endpoint is faithful.

    Run the checks of a level against an endpoint (`check`), list them (`list`), make a
    signing key (`keygen`) and verify a signed report (`verify`). See docs/core.md.
    """


def _writable_path(path: str) -> None:
    if path == "-":
        return
    if Path(path).expanduser().is_dir():
        _fail(f"cannot write the report to {path}: it is a directory")
    parent = Path(path).expanduser().resolve().parent
    if not parent.is_dir():
        _fail(f"cannot write the report to {path}: {parent} is not a directory")
    if not os.access(parent, os.W_OK):
        _fail(f"cannot write the report to {path}: {parent} is not writable")


@core.command()
@click.option(
    "--endpoint", required=True, metavar="URL", help="S3 endpoint, e.g. http://127.0.0.1:9000."
)
@click.option(
    "--access-key",
    required=True,
    envvar="AWS_ACCESS_KEY_ID",
    show_envvar=True,
    help="Access key id of the account under test.",
)
@click.option(
    "--secret-key",
    required=True,
    envvar="AWS_SECRET_ACCESS_KEY",
    show_envvar=True,
    help="Its secret access key.",
)
@click.option(
    "--alt-access-key",
    envvar="CORE_ALT_ACCESS_KEY_ID",
    show_envvar=True,
    help="Access key id of a second account: enables the tenant-isolation checks.",
)
@click.option(
    "--alt-secret-key",
    envvar="CORE_ALT_SECRET_ACCESS_KEY",
    show_envvar=True,
    help="The second account's secret access key.",
)
@click.option(
    "--region",
    default="us-east-1",
    show_default=True,
    envvar="AWS_REGION",
    help="Region to sign for and create buckets in.",
)
@click.option(
    "--level",
    "level_name",
    type=LEVEL_CHOICE,
    default=str(Level.S3_FULL),
    show_default=True,
    help="Level to certify; each level includes the ones below.",
)
@click.option(
    "--json", "json_path", metavar="FILE", help="Write the JSON report to FILE ('-': stdout)."
)
@click.option(
    "--sign-with",
    "key_path",
    metavar="KEYFILE",
    type=click.Path(dir_okay=False),
    help="Sign the JSON report with this Ed25519 key (see `core keygen`).",
)
@click.option(
    "--addressing",
    type=click.Choice(ADDRESSING_STYLES),
    default="path",
    show_default=True,
    help="Bucket addressing style for the SDK requests.",
)
@click.option(
    "--only",
    "only",
    multiple=True,
    metavar="PATTERN",
    help="Run only checks whose id matches (shell pattern, repeatable). "
    "A partial run certifies nothing.",
)
@click.option(
    "--concurrency",
    type=click.IntRange(1, 32),
    default=DEFAULT_WORKERS,
    show_default=True,
    help="Checks run at once.",
)
@click.option(
    "--timeout",
    type=click.FloatRange(1, 600),
    default=30.0,
    show_default=True,
    help="Seconds to wait for any one answer.",
)
@click.option(
    "--ca-bundle",
    type=click.Path(exists=True, dir_okay=False),
    help="CA certificates to trust for an https endpoint.",
)
def check(
    endpoint: str,
    access_key: str,
    secret_key: str,
    alt_access_key: str | None,
    alt_secret_key: str | None,
    region: str,
    level_name: str,
    json_path: str | None,
    key_path: str | None,
    addressing: str,
    only: tuple[str, ...],
    concurrency: int,
    timeout: float,
    ca_bundle: str | None,
) -> None:
    """Run the checks of a level against an S3 endpoint and report the verdict.

    Without --alt-access-key/--alt-secret-key the tenant-isolation checks are skipped, and a
    skipped check is never counted as passed: s3-full cannot be claimed without them.
    """
    if bool(alt_access_key) != bool(alt_secret_key):
        _fail("give both --alt-access-key and --alt-secret-key, or neither")
    alt = Credentials(alt_access_key, alt_secret_key) if alt_access_key and alt_secret_key else None
    if alt is not None and alt.access_key == access_key:
        _fail("the alternate account must be another account, not the same access key")
    try:
        target = Target(
            endpoint=endpoint,
            credentials=Credentials(access_key, secret_key),
            region=region,
            alt_credentials=alt,
            addressing=addressing,
            ca_bundle=ca_bundle,
            timeout=timeout,
        )
        run_plan = plan(Level(level_name), only)
    except ValueError as error:
        _fail(str(error))
    key = None
    if key_path:
        if not json_path:
            _fail("--sign-with needs --json FILE: the signature is part of the JSON report")
        try:
            key = load_private_key(Path(key_path))
        except KeyFileError as error:
            _fail(str(error))
    if json_path:
        _writable_path(json_path)

    console = Console(stderr=json_path == "-", highlight=False)
    header = Text.assemble(
        ("Silver Lining Core ", "bold"),
        (CORE_VERSION, "bold"),
        f"  level {run_plan.level}, {len(run_plan.checks)} checks against {target.base_url}",
        f" (region {target.region}, {addressing}-style)",
    )
    console.print(header)
    if alt is None and any(c.needs_alt for c in run_plan.checks):
        console.print(
            Text(
                "No alternate account given: tenant-isolation checks will be skipped, "
                f"so {run_plan.level} cannot be passed. Add --alt-access-key/--alt-secret-key.",
                style="yellow",
            )
        )
    try:
        with LiveProgress(console, len(run_plan.checks)) as progress:
            report = execute(target, run_plan, workers=concurrency, observer=progress)
    except TargetError as error:
        _fail(str(error))
    except KeyboardInterrupt:
        console.print(Text("interrupted; checks in flight cleaned up", style="yellow"))
        sys.exit(130)

    print_results(console, report)
    if json_path:
        _write_report(report, json_path, key, console)
    if run_plan.selection is not None:
        passed = all(r.status == Status.PASSED for r in report.results)
    else:
        passed = report.verdict.passed
    sys.exit(0 if passed else 1)


def _write_report(report: Report, path: str, key: Any, console: Console) -> None:
    document = report.to_dict()
    if key is not None:
        document = sign_document(document, key)
    text = json.dumps(document, indent=2, ensure_ascii=False) + "\n"
    if path == "-":
        sys.stdout.write(text)
        return
    try:
        Path(path).expanduser().write_text(text, encoding="utf-8")
    except OSError as error:
        _fail(f"cannot write the report to {path}: {error.strerror}")
    signed = f", signed by {document['signer']['fingerprint']}" if key is not None else ""
    console.print(Text(f"Report written to {path}{signed}", style="dim"))


@core.command("list")
@click.option(
    "--level", "level_name", type=LEVEL_CHOICE, help="Only the checks this level requires."
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.option("--markdown", is_flag=True, help="Print the Markdown table docs/core.md carries.")
def list_checks(level_name: str | None, as_json: bool, markdown: bool) -> None:
    """List every check: its id, its level and the behaviour it proves."""
    if as_json and markdown:
        _fail("choose one of --json and --markdown")
    registry = load_checks()
    checks = registry.for_level(Level(level_name)) if level_name else registry.all()
    if as_json:
        rows = [
            {
                "id": c.id,
                "level": str(c.level),
                "statement": c.statement,
                "needs_alternate_account": c.needs_alt,
            }
            for c in checks
        ]
        click.echo(json.dumps({"core_version": CORE_VERSION, "checks": rows}, indent=2))
        return
    counts = [(level, len(registry.for_level(level))) for level in LEVELS]
    if markdown:
        click.echo("| Check | Level | Behaviour it proves |")
        click.echo("|---|---|---|")
        for item in checks:
            statement = item.statement.replace("|", "\\|")
            click.echo(f"| `{item.id}` | {item.level} | {statement} |")
        click.echo()
        for level, count in counts:
            click.echo(f"- `{level}`: {count} checks")
        return
    console = Console(highlight=False)
    table = Table(title=f"Silver Lining Core {CORE_VERSION}: {len(checks)} checks")
    table.add_column("Check", style="bold", no_wrap=True)
    table.add_column("Level", no_wrap=True)
    table.add_column("Behaviour it proves")
    for item in checks:
        statement = item.statement + (" [needs a second account]" if item.needs_alt else "")
        table.add_row(Text(item.id), Text(str(item.level)), Text(statement))
    console.print(table)
    for level, count in counts:
        console.print(Text(f"{level}: {count} checks (its own and those of lower levels)"))


@core.command()
@click.argument("keyfile", type=click.Path(dir_okay=False))
@click.option("--force", is_flag=True, help="Replace KEYFILE if it exists.")
def keygen(keyfile: str, force: bool) -> None:
    """Create an Ed25519 signing key in KEYFILE (PEM, mode 0600) and print its public key."""
    try:
        key = generate_key(Path(keyfile), overwrite=force)
    except KeyFileError as error:
        _fail(str(error))
    public = key.public_key()
    click.echo(f"public key:  {public_key_text(public)}")
    click.echo(f"fingerprint: {fingerprint(public)}")
    click.echo(f"Private key written to {keyfile} (mode 0600); keep it secret.", err=True)


def _expected_signer(value: str) -> Any:
    if value.startswith("SHA256:"):
        return value
    path = Path(value)
    text = value
    if path.is_file():
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            _fail(f"cannot read {value}: {error}")
    if "PRIVATE KEY" in text:
        _fail(f"{value} is a private key: give --signer the public key or its fingerprint")
    try:
        return parse_public_key(text)
    except ValueError as error:
        _fail(f"--signer must be a public key, a PEM file or a SHA256: fingerprint ({error})")


@core.command()
@click.argument("report_path", metavar="REPORT.json", type=click.Path(dir_okay=False))
@click.option(
    "--signer",
    metavar="KEY|FINGERPRINT",
    help="Require this signer: a public key (as keygen prints it), a PEM public key "
    "file, or a SHA256: fingerprint.",
)
def verify(report_path: str, signer: str | None) -> None:
    """Check a report's signature and that its results match their hash and verdict."""
    expected = _expected_signer(signer) if signer else None
    try:
        document = json.loads(Path(report_path).read_text(encoding="utf-8"))
    except OSError as error:
        _fail(f"cannot read {report_path}: {error.strerror}")
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        _fail(f"{report_path} is not JSON: {error}")
    try:
        result = verify_document(document, expected_signer=expected)
    except NotAReport as error:
        _fail(f"{report_path}: {error}")
    console = Console(highlight=False)
    verdict = document.get("verdict") if isinstance(document.get("verdict"), dict) else {}
    facts = [
        ("signed by", result.fingerprint or "(unsigned)"),
        ("signed at", result.signed_at or "-"),
        ("endpoint", str(document.get("endpoint"))),
        ("core version", str(document.get("core_version"))),
        ("level", str(document.get("level"))),
        ("verdict", "PASSED" if verdict.get("passed") else "NOT PASSED"),
        ("certified", str(verdict.get("certified") or "none")),
        ("run", f"{document.get('started_at')} .. {document.get('finished_at')}"),
    ]
    if result.valid:
        console.print(Text("VALID report", style="bold green"))
    else:
        console.print(Text("INVALID report", style="bold red"))
        for problem in result.problems:
            console.print(Text(f"  - {problem}"), soft_wrap=True)
        console.print(Text("What the report claims (not to be trusted):", style="dim"))
    for label, value in facts:
        console.print(Text.assemble((f"  {label:<13}", "bold"), value), soft_wrap=True)
    sys.exit(0 if result.valid else 1)
