"""The metering contract: the S3 front reports every authenticated request here.

``record`` is called once per request, after the response has been sent (or the client
went away), on the event loop thread: it must be cheap and must not block. What it records
must survive ``kill -9`` once ``record`` returns (see the implementation's docs).
"""

from __future__ import annotations

from typing import Protocol


class Meter(Protocol):
    def record(self, account_id: int, operation: str, bytes_in: int, bytes_out: int) -> None:
        """``operation`` is the S3 operation name (e.g. "GetObject"); ``bytes_in`` the
        payload bytes received, ``bytes_out`` the response body bytes sent."""


class NullMeter:
    """Counts nothing (a node without metering configured)."""

    def record(self, account_id: int, operation: str, bytes_in: int, bytes_out: int) -> None:
        return None
