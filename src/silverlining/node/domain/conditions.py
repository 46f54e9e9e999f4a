"""Conditional requests (RFC 9110 as S3 applies them) and byte ranges.

https://docs.aws.amazon.com/AmazonS3/latest/userguide/conditional-requests.html
"""

from __future__ import annotations

from dataclasses import dataclass

from silverlining.node import errors
from silverlining.node.domain.model import ObjectRecord


@dataclass(frozen=True, slots=True)
class Conditions:
    if_match: str | None = None
    if_none_match: str | None = None
    if_modified_since: float | None = None
    if_unmodified_since: float | None = None

    def __bool__(self) -> bool:
        return any(
            v is not None
            for v in (self.if_match, self.if_none_match, self.if_modified_since,
                      self.if_unmodified_since)
        )


#: No conditions (the default of every conditional operation).
NO_CONDITIONS = Conditions()


def etag_matches(header: str, etag: str) -> bool:
    """True if ``etag`` (quoted) is in the comma-separated list ``header`` (or it is '*')."""
    bare = etag.strip('"')
    for raw in header.split(","):
        item = raw.strip()
        item = item.removeprefix("W/")
        if item == "*" or item.strip('"') == bare:
            return True
    return False


def _seconds(ts: float) -> int:
    # HTTP dates have one-second resolution.
    return int(ts)


def check_read(cond: Conditions, rec: ObjectRecord) -> None:
    """For GET and HEAD: raise PreconditionFailed (412) or NotModified (304) as S3 does."""
    if not cond:
        return
    lm = _seconds(rec.last_modified)
    if cond.if_match is not None:
        if not etag_matches(cond.if_match, rec.etag):
            raise errors.PreconditionFailed(Condition="If-Match")
    elif cond.if_unmodified_since is not None and lm > cond.if_unmodified_since:
        raise errors.PreconditionFailed(Condition="If-Unmodified-Since")
    if cond.if_none_match is not None:
        if etag_matches(cond.if_none_match, rec.etag):
            raise errors.NotModified()
    elif cond.if_modified_since is not None and lm <= cond.if_modified_since:
        raise errors.NotModified()


def check_copy_source(cond: Conditions, rec: ObjectRecord) -> None:
    """x-amz-copy-source-if-*: every failure is 412 PreconditionFailed."""
    if not cond:
        return
    lm = _seconds(rec.last_modified)
    if cond.if_match is not None:
        if not etag_matches(cond.if_match, rec.etag):
            raise errors.PreconditionFailed(Condition="x-amz-copy-source-If-Match")
    elif cond.if_unmodified_since is not None and lm > cond.if_unmodified_since:
        raise errors.PreconditionFailed(Condition="x-amz-copy-source-If-Unmodified-Since")
    if cond.if_none_match is not None:
        if etag_matches(cond.if_none_match, rec.etag):
            raise errors.PreconditionFailed(Condition="x-amz-copy-source-If-None-Match")
    elif cond.if_modified_since is not None and lm <= cond.if_modified_since:
        raise errors.PreconditionFailed(Condition="x-amz-copy-source-If-Modified-Since")


def check_write(cond: Conditions, existing: ObjectRecord | None) -> None:
    """Conditional writes (PutObject / CompleteMultipartUpload with If-Match / If-None-Match)."""
    if (
        cond.if_none_match is not None
        and existing is not None
        and (cond.if_none_match.strip() == "*" or etag_matches(cond.if_none_match, existing.etag))
    ):
        raise errors.PreconditionFailed(Condition="If-None-Match")
    if cond.if_match is not None:
        if existing is None:
            raise errors.NoSuchKey()
        if not etag_matches(cond.if_match, existing.etag):
            raise errors.PreconditionFailed(Condition="If-Match")


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """The inclusive (first, last) byte range a Range header asks for, or None for the whole
    object. Syntactically invalid or multi-range headers are ignored (whole object), as S3
    does; a valid but unsatisfiable range raises InvalidRange (416)."""
    if header is None:
        return None
    spec = header.strip()
    if not spec.startswith("bytes="):
        return None
    spec = spec[6:].strip()
    if "," in spec or "-" not in spec:
        return None
    first_s, _, last_s = spec.partition("-")
    first_s, last_s = first_s.strip(), last_s.strip()
    try:
        if first_s == "":
            if not last_s.isdigit():
                return None
            n = int(last_s)
            if n == 0 or size == 0:
                raise errors.InvalidRange(RangeRequested=header, ActualObjectSize=str(size))
            return max(size - n, 0), size - 1
        if not first_s.isdigit() or (last_s and not last_s.isdigit()):
            return None
        first = int(first_s)
        last = int(last_s) if last_s else size - 1
    except ValueError:
        return None
    if last_s and last < first:
        return None
    if first >= size:
        raise errors.InvalidRange(RangeRequested=header, ActualObjectSize=str(size))
    return first, min(last, size - 1)
