"""`silverlining core ...`: the conformance kit's command line."""

from __future__ import annotations

import click


@click.group()
def core() -> None:
    """Core: the conformance kit that checks any S3 endpoint is faithful."""
