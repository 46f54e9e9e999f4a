"""``python -m silverlining.core``: the Core command line on its own."""

from silverlining.core.cli import core

core(prog_name="silverlining core")
