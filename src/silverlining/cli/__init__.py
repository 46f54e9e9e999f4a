"""The `silverlining` command: one tool, sub-commands per role."""

from __future__ import annotations

import click

from silverlining import __version__
from silverlining.cli.broker import broker, usage
from silverlining.cli.copy import copy
from silverlining.cli.market import market
from silverlining.cli.node import accounts, keys, serve
from silverlining.core.cli import core


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="silverlining")
def cli() -> None:
    """Silver Lining: an open-source reference cloud for a federated market.

    Run a provider node (serve), manage its tenants (accounts, keys), its service broker
    (broker) and metered usage (usage), check any S3 endpoint with the conformance kit
    (core), and run or use the federated market (market).
    """


cli.add_command(serve)
cli.add_command(accounts)
cli.add_command(keys)
cli.add_command(core)
cli.add_command(broker)
cli.add_command(usage)
cli.add_command(market)
cli.add_command(copy)


def main() -> None:
    cli()
