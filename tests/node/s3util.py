"""Small helpers for S3 tests."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from botocore.exceptions import ClientError


def error_of(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[str, int]:
    """Call ``fn``; it must fail with a ClientError. Returns (code, HTTP status)."""
    with pytest.raises(ClientError) as info:
        fn(*args, **kwargs)
    err = info.value.response
    return err["Error"]["Code"], err["ResponseMetadata"]["HTTPStatusCode"]
