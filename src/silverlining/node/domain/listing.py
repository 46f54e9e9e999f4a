"""Listing objects with prefix, delimiter and pagination, in UTF-8 byte order.

Python's str ordering is by code point, which is the same order as UTF-8 bytes, so keys
compare the same here as in the database.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from silverlining.node.domain.model import ListEntry
from silverlining.node.store.objects import ObjectRepository

#: Highest code point: appending it to a common prefix seeks past (almost) every key under it.
_MAX_CHAR = "\U0010ffff"
_BATCH = 1000


@dataclass(slots=True)
class ListingPage:
    entries: list[ListEntry] = field(default_factory=list)
    common_prefixes: list[str] = field(default_factory=list)
    truncated: bool = False
    #: The last key or common prefix returned (where the next page starts after).
    last: str | None = None


def list_page(
    repo: ObjectRepository,
    bucket: str,
    *,
    prefix: str = "",
    delimiter: str = "",
    after: str = "",
    max_keys: int = 1000,
) -> ListingPage:
    page = ListingPage()
    if max_keys <= 0:
        return page
    cursor, inclusive = after, False
    if prefix > cursor:
        cursor, inclusive = prefix, True
    skip: str | None = None
    if delimiter and after.startswith(prefix):
        i = after.find(delimiter, len(prefix))
        if i >= 0 and after == after[: i + len(delimiter)]:
            skip = after  # resuming after a common prefix: skip everything under it
    count = 0
    while True:
        # Without a delimiter every row is an entry: the rows still wanted plus one (to tell
        # whether the page is truncated) are enough, where a full batch after a full page
        # used to be read only to look at its first row. With one, rows fold into prefixes.
        limit = _BATCH if delimiter else min(max_keys - count + 1, _BATCH + 1)
        batch = repo.scan(bucket, cursor, inclusive, limit)
        if not batch:
            return page
        for entry in batch:
            key = entry.key
            if not key.startswith(prefix):
                return page
            if skip is not None and key.startswith(skip):
                continue
            item: str | ListEntry = entry
            if delimiter:
                i = key.find(delimiter, len(prefix))
                if i >= 0:
                    item = key[: i + len(delimiter)]
            if count >= max_keys:
                page.truncated = True
                return page
            if isinstance(item, str):
                page.common_prefixes.append(item)
                page.last = skip = item
            else:
                page.entries.append(item)
                page.last = key
            count += 1
        cursor, inclusive = batch[-1].key, False
        if skip is not None and batch[-1].key.startswith(skip):
            cursor = max(cursor, skip + _MAX_CHAR)
