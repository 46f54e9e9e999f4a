"""Crash points, for proving the durability contract.

``SILVERLINING_CRASH_AT=name`` (or ``name:n``) makes a serving node kill itself with SIGKILL
the first (or n-th) time execution reaches ``crashpoint(name)`` once it has started serving
(:func:`arm` is called just before it accepts requests) — exactly what ``kill -9`` at that
instant would do. Unset (always, in production), a crash point costs one dict lookup.

Points, in the order a write reaches them: ``blob.written`` (after each chunk is written to
the temp file), ``blob.fsynced``, ``blob.renamed``, ``blob.dir_synced``, ``blob.linked``
(a copy's hard link), ``meta.before_commit``, ``meta.committed``, ``blob.deleted`` (after
each replaced or deleted blob is unlinked).
"""

from __future__ import annotations

import os
import signal


def _parse(spec: str | None) -> dict[str, int]:
    if not spec:
        return {}
    name, _, count = spec.partition(":")
    return {name: int(count) if count else 1}


#: point name -> hits left before the crash; empty when no crash is armed.
_armed: dict[str, int] = {}


def arm() -> None:
    """Arm the crash point named in the environment, if any."""
    _armed.clear()
    _armed.update(_parse(os.environ.get("SILVERLINING_CRASH_AT")))


def crashpoint(name: str) -> None:
    if not _armed or name not in _armed:
        return
    _armed[name] -= 1
    if _armed[name] <= 0:
        os.kill(os.getpid(), signal.SIGKILL)
