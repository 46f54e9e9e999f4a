"""``silverlining copy SRC DST``: the copy engine on its own, between any two S3 endpoints."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import click
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn

from silverlining import transfer

_LOCATION = re.compile(r"^s3://([^@/]*)@(https?://[^/]+)/?$")


def _location(text: str, what: str) -> tuple[str, str]:
    match = _LOCATION.match(text)
    if match is None:
        raise click.BadParameter(f"{text!r}: write s3://BUCKET@http(s)://HOST[:PORT] "
                                 "(s3://@URL for every bucket)", param_hint=what)
    return match.group(1), match.group(2)


def _endpoint(url: str, key: str | None, secret: str | None, region: str,
              side: str) -> transfer.Endpoint:
    if not key or not secret:
        raise click.UsageError(f"the {side} needs credentials: --{side}-access-key and "
                               f"--{side}-secret-key (or {side.upper()}_AWS_ACCESS_KEY_ID and "
                               f"{side.upper()}_AWS_SECRET_ACCESS_KEY)")
    return transfer.Endpoint(url, key, secret, region)


@click.command("copy")
@click.argument("source")
@click.argument("target")
@click.option("--src-access-key", envvar="SRC_AWS_ACCESS_KEY_ID")
@click.option("--src-secret-key", envvar="SRC_AWS_SECRET_ACCESS_KEY")
@click.option("--src-region", default="us-east-1", show_default=True)
@click.option("--dst-access-key", envvar="DST_AWS_ACCESS_KEY_ID")
@click.option("--dst-secret-key", envvar="DST_AWS_SECRET_ACCESS_KEY")
@click.option("--dst-region", default="us-east-1", show_default=True)
@click.option("--workers", type=click.IntRange(1, 64), default=8, show_default=True)
@click.option("--journal", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Remember what is copied here: a rerun resumes and copies only changes.")
@click.option("--delete", "delete_extra", is_flag=True,
              help="Also delete target objects that are not in the source.")
def copy(source: str, target: str, src_access_key: str | None, src_secret_key: str | None,
         src_region: str, dst_access_key: str | None, dst_secret_key: str | None,
         dst_region: str, workers: int, journal: Path | None, delete_extra: bool) -> None:
    """Copy objects between two S3 endpoints: streamed, parallel, each verified on the target.

    SOURCE and TARGET are s3://BUCKET@ENDPOINT, e.g. s3://photos@https://s3.a.example;
    s3://@ENDPOINT copies every bucket of the source account to same-named buckets.
    Keys, bytes, content headers, user metadata and tags are kept.
    """
    src_bucket, src_url = _location(source, "SOURCE")
    dst_bucket, dst_url = _location(target, "TARGET")
    if bool(src_bucket) != bool(dst_bucket):
        raise click.UsageError("give a bucket on both sides, or on neither (every bucket)")
    src = _endpoint(src_url, src_access_key, src_secret_key, src_region, "src")
    dst = _endpoint(dst_url, dst_access_key, dst_secret_key, dst_region, "dst")
    log: transfer.Journal = (transfer.FileJournal(journal) if journal
                             else transfer.MemoryJournal())
    console = Console(stderr=True)
    columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn())
    with Progress(*columns, console=console, disable=not sys.stderr.isatty()) as bar:
        task = bar.add_task("copying", total=None)

        def show(p: transfer.Progress) -> None:
            bar.update(task, total=p.bytes_total, completed=p.bytes_copied + p.bytes_skipped,
                       description=f"{p.objects_copied} copied, {p.objects_skipped} there")

        progress = transfer.Progress(on_change=show)
        try:
            if src_bucket:
                transfer.copy_bucket(src, dst, src_bucket, dst_bucket, journal=log,
                                     workers=workers, progress=progress,
                                     delete_extra=delete_extra)
            else:
                transfer.copy_all(src, dst, journal=log, workers=workers, progress=progress,
                                  delete_extra=delete_extra)
        except transfer.CopyError as error:
            click.echo(f"Error: {error}", err=True)
            click.echo("What was copied is kept" + (f" in {journal}; rerun to resume."
                                                    if journal else "."), err=True)
            sys.exit(1)
        finally:
            if isinstance(log, transfer.FileJournal):
                log.close()
    click.echo(f"{progress.objects_copied} object(s) copied and verified "
               f"({progress.bytes_copied} bytes), {progress.objects_skipped} already there"
               + (f", {progress.objects_deleted} deleted" if delete_extra else "") + ".")
