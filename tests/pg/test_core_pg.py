"""Core (tests/core/test_core_node.py, unchanged: s3-full and the fault proxy) against a
PostgreSQL-backed node."""

from tests.core.test_core_node import *  # noqa: F403
