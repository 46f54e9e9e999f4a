"""tests/node/test_multipart.py, unchanged, against a PostgreSQL-backed node (the fixtures of
tests/pg/conftest.py replace the SQLite-backed ones)."""

from tests.node.test_multipart import *  # noqa: F403
