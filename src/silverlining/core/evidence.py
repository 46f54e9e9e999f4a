"""What a failed check shows: the request, what was expected, and what came back.

Checks signal their outcome with exceptions: :class:`CheckFailed` carries :class:`Evidence`,
:class:`CheckSkipped` a reason. The last HTTP request sent on the current thread is recorded
(:func:`record_request`) so that evidence can name the exact request without every check
having to describe it by hand.
"""

from __future__ import annotations

import hashlib
import re
import threading
from dataclasses import dataclass
from typing import Any

#: Evidence strings longer than this are cut, so a report stays readable and bounded.
MAX_EVIDENCE_CHARS = 2000


@dataclass(frozen=True)
class Evidence:
    """Why a check failed, in terms a provider's engineer can reproduce."""

    request: str
    expected: str
    got: str

    def to_dict(self) -> dict[str, str]:
        return {"request": self.request, "expected": self.expected, "got": self.got}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Evidence:
        return cls(str(data["request"]), str(data["expected"]), str(data["got"]))


class CheckFailed(Exception):
    """The provider did not behave as the check's statement requires."""

    def __init__(self, evidence: Evidence) -> None:
        super().__init__(f"expected {evidence.expected}; got {evidence.got}")
        self.evidence = evidence


class CheckSkipped(Exception):
    """The check could not be run (e.g. no alternate account); it proves nothing."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def clip(text: str, limit: int = MAX_EVIDENCE_CHARS) -> str:
    """``text`` cut to ``limit`` characters, saying how much was cut."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... [{len(text) - limit} more characters]"


def show_bytes(data: bytes, limit: int = 48) -> str:
    """A short, unambiguous description of a byte string for evidence."""
    if len(data) <= limit:
        return repr(data)
    digest = hashlib.sha256(data).hexdigest()[:16]
    return f"{len(data)} bytes (sha256 {digest}..., starting {data[:16]!r})"


def first_difference(got: bytes, expected: bytes) -> str:
    """Where two byte strings first differ, for evidence."""
    for offset, (a, b) in enumerate(zip(got, expected, strict=False)):
        if a != b:
            return f"first difference at byte {offset}: got {a:#04x}, expected {b:#04x}"
    return f"lengths differ: got {len(got)} bytes, expected {len(expected)}"


_recent = threading.local()

# Headers that say nothing about the behaviour under test, or that change on every request.
_HIDDEN_HEADERS = frozenset(
    {
        "authorization",
        "x-amz-date",
        "user-agent",
        "amz-sdk-invocation-id",
        "amz-sdk-request",
        "accept-encoding",
        "host",
        "content-length",
        "expect",
        "x-amz-security-token",
    }
)


# A presigned URL names the access key id; reports are public, so it is left out.
_CREDENTIAL = re.compile(r"(X-Amz-Credential=)[^%/&]+", re.IGNORECASE)


def record_request(method: str, url: str, headers: dict[str, str], body_note: str = "") -> None:
    """Remember the request just sent on this thread, for evidence."""
    shown = []
    for name, value in headers.items():
        lower = name.lower()
        if lower in _HIDDEN_HEADERS:
            continue
        if lower == "x-amz-content-sha256" and len(value) == 64:
            continue  # a plain payload hash; the body note says what was sent
        shown.append(f"{name}: {value}")
    line = method + " " + _CREDENTIAL.sub(r"\1<access-key-id>", url)
    if shown:
        line += " [" + "; ".join(shown) + "]"
    if body_note:
        line += f" ({body_note})"
    _recent.request = clip(line, 600)


def last_request() -> str:
    """The last request recorded on this thread, or a placeholder."""
    return str(getattr(_recent, "request", "(no request sent yet)"))


def forget_requests() -> None:
    """Clear this thread's record, so one check's evidence never names another's request."""
    _recent.request = "(no request sent yet)"
