"""tests/node/test_objects.py, unchanged, against a PostgreSQL-backed node (the fixtures of
tests/pg/conftest.py replace the SQLite-backed ones)."""

from tests.node.test_objects import *  # noqa: F403
