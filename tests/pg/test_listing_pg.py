"""tests/node/test_listing.py, unchanged, against a PostgreSQL-backed node (the fixtures of
tests/pg/conftest.py replace the SQLite-backed ones)."""

from tests.node.test_listing import *  # noqa: F403
