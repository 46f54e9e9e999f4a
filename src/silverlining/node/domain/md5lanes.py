"""MD5 (and SHA-256) for every concurrent upload, side by side in SIMD lanes, on one thread.

Every byte a node stores is hashed with MD5 (the ETag S3 clients compare with), and every
byte of a signed payload with SHA-256 too (the signature commits to it). MD5 is a chain of
dependent steps, so one stream runs at the chain's latency (~850 MiB/s per core here,
1.2 CPU-s per GiB: once the largest single cost of a large PUT). The C extension
``silverlining._native._md5lanes`` hashes up to eight streams in the lanes of one vector
register for about the cost of one (four streams: ~2 GiB/s on one core), and with SHA-NI
runs the SHA-256 of up to four of them between the MD5 steps, where the vector units would
otherwise wait on MD5's chain: MD5 and SHA-256 of four streams cost ~0.54 CPU-s per GiB,
against ~1.0 for the two apart.

For that, the work of several uploads has to meet. Each upload opens a :class:`Stream` and
feeds it its batches without waiting (the pieces are kept, not copied, until hashed; a
stream more than ``BACKLOG`` bytes behind makes its feeder wait). The lane thread runs a
round when every open stream (up to the lanes) has ``GATHER`` bytes queued, or when some
stream's owner is waiting for its digest, or when the oldest queued bytes have waited
``LINGER`` seconds; a round hashes a slice of up to eight streams at once, of about equal
length so that the lanes finish together. The owner calls ``finish`` before it reads the
digests.

Without the extension (no C compiler at install), ``new_md5`` and ``new_sha256`` are
hashlib's and streams hash in the feeding thread: same digests, one upload per core.
Without SHA-NI, ``new_sha256`` is hashlib's (OpenSSL's is faster than portable C) and the
feeding thread hashes SHA-256 itself.
"""

from __future__ import annotations

import collections
import hashlib
import threading
import time
from collections.abc import Sequence
from types import ModuleType
from typing import Protocol

_native: ModuleType | None
try:
    from silverlining._native import _md5lanes as _native
except ImportError:  # pragma: no cover - the extension is built wherever the tests run
    _native = None

#: Batches smaller than this are hashed by the thread that has them.
LANE_MIN = 64 * 1024
#: At most this much of one stream is hashed per round (across the pieces it was fed in).
SLICE = 1024 * 1024
#: A round's slices are at least this long, even when one stream has less queued.
SLICE_MIN = 64 * 1024
#: A feeder waits while its stream has more than this queued...
BACKLOG = 8 * 1024 * 1024
#: ...and rounds run without waiting while all streams together have this much queued: the
#: memory held for hashing stays about this, plus a batch per upload.
HELD_MAX = 32 * 1024 * 1024
#: A stream is ready for a round once it has this much queued (a round runs when as many
#: streams are ready as there are open, up to the lanes: fuller lanes, fewer rounds)...
GATHER = 2 * 1024 * 1024
#: ...or when some stream's oldest queued bytes have waited this long.
LINGER = 0.01

Buffer = bytes | bytearray | memoryview
_LANES = 8 if _native is None else int(_native.LANES)


class MD5(Protocol):
    def update(self, data: Buffer, /) -> None: ...
    def digest(self) -> bytes: ...
    def hexdigest(self) -> str: ...


def new_md5() -> MD5:
    """An MD5 state that the lane thread can work on (hashlib's without the extension)."""
    return _native.MD5() if _native is not None else hashlib.md5()


class SHA256(Protocol):
    def update(self, data: Buffer, /) -> None: ...
    def digest(self) -> bytes: ...
    def hexdigest(self) -> str: ...


def _sha256_in_lanes() -> bool:
    return _native is not None and _native.sha256_kernel() != "portable"


def new_sha256() -> SHA256:
    """A SHA-256 state: one the lane thread can hash with the MD5 when the CPU has SHA-NI,
    else hashlib's (hashed by whoever has the bytes)."""
    return _native.SHA256() if _native is not None and _sha256_in_lanes() else hashlib.sha256()


def describe() -> str:
    """What hashes MD5 and SHA-256 in this process, for the node's start-up line."""
    if _native is None:
        return "hashlib, one stream per thread (the C extension was not built)"
    sha = (f"SHA-256 with them ({_native.sha256_kernel()})" if _sha256_in_lanes()
           else "SHA-256 by hashlib (no SHA-NI)")
    return f"MD5 in {_native.LANES} SIMD lanes ({_native.kernel()}), {sha}"


class Stream:
    """One upload's MD5 (and, when ``sha`` is set, SHA-256) on the lane thread. Its owner
    feeds it and finishes it, from one thread at a time; the states are the lane thread's
    until ``finish`` returns."""

    __slots__ = ("_error", "_hasher", "_pieces", "_queued", "_since", "_waiting", "busy",
                 "sha", "state")

    def __init__(self, hasher: LaneHasher, state: MD5, sha: SHA256 | None) -> None:
        self._hasher = hasher
        self.state = state
        self.sha = sha
        self._pieces: collections.deque[memoryview] = collections.deque()
        self._queued = 0  # bytes in _pieces
        self._since = 0.0  # when the oldest queued piece arrived
        self._waiting = False  # the owner waits in finish()
        self._error: BaseException | None = None
        self.busy = False  # the lane thread is hashing a slice of it

    def feed(self, pieces: Sequence[Buffer]) -> None:
        """Queue ``pieces`` for hashing. They are held, not copied, until hashed: the caller
        must not change them afterwards (the node feeds the bytes objects it received)."""
        self._hasher._feed(self, pieces)

    def finish(self) -> None:
        """Wait until everything fed is hashed (raises what hashing raised); the stream is
        closed afterwards and its state can be read."""
        self._hasher._finish(self)

    def abandon(self) -> None:
        """Drop what is queued and close (the upload failed)."""
        self._hasher._abandon(self)


class LaneHasher:
    """The one thread that hashes the queued bytes of every open stream in lanes."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._open: set[Stream] = set()
        self._thread: threading.Thread | None = None

    def open(self, state: MD5, sha: SHA256 | None = None) -> Stream | None:
        """A stream for ``state`` (and ``sha``, if the lanes can hash it: then the stream's
        ``sha`` is set), or None when lanes are not available for it."""
        if _native is None or not isinstance(state, _native.MD5):
            return None
        stream = Stream(self, state, sha if isinstance(sha, _native.SHA256) else None)
        with self._cond:
            self._open.add(stream)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="md5-lanes", daemon=True)
                self._thread.start()
        return stream

    # --- owners' side ---------------------------------------------------------------------
    def _feed(self, stream: Stream, pieces: Sequence[Buffer]) -> None:
        views = [memoryview(p).cast("B") for p in pieces if len(p)]
        with self._cond:
            while stream._queued > BACKLOG and stream._error is None:
                self._cond.wait()
            if stream._error is not None:
                raise stream._error
            if not stream._pieces:
                stream._since = time.monotonic()
            stream._pieces.extend(views)
            stream._queued += sum(map(len, views))
            self._cond.notify_all()

    def _finish(self, stream: Stream) -> None:
        with self._cond:
            stream._waiting = True
            self._cond.notify_all()
            while (stream._pieces or stream.busy) and stream._error is None:
                self._cond.wait()
            self._open.discard(stream)
            self._cond.notify_all()
            if stream._error is not None:
                raise stream._error

    def _abandon(self, stream: Stream) -> None:
        with self._cond:
            stream._pieces.clear()
            stream._queued = 0
            while stream.busy:
                self._cond.wait()
            self._open.discard(stream)
            self._cond.notify_all()

    # --- the lane thread ------------------------------------------------------------------
    def _due(self) -> tuple[list[Stream], float | None]:
        """The streams to hash now, or none and how long to wait. Called with the lock."""
        queued = [s for s in self._open if s._pieces]
        if not queued:
            return [], None
        if any(s._waiting for s in queued):
            return queued, 0.0
        full = sum(1 for s in queued if s._queued >= GATHER)
        if full >= min(len(self._open), _LANES) or sum(s._queued for s in queued) >= HELD_MAX:
            return queued, 0.0
        oldest = min(s._since for s in queued)
        left = oldest + LINGER - time.monotonic()
        return (queued, 0.0) if left <= 0 else ([], left)

    def _run(self) -> None:
        assert _native is not None
        while True:
            with self._cond:
                while True:
                    due, wait = self._due()
                    if due:
                        break
                    self._cond.wait(wait)
                # The longest-waiting streams first; slices of about equal length.
                due.sort(key=lambda s: s._since)
                due = due[:_LANES]
                size = max(SLICE_MIN, min(SLICE, *(s._queued for s in due)))
                work: list[tuple[MD5, list[memoryview], SHA256 | None]] = []
                for s in due:
                    s.busy = True
                    parts: list[memoryview] = []
                    need = size
                    while need and s._pieces:  # a slice runs across pieces
                        head = s._pieces[0]
                        if len(head) <= need:
                            parts.append(s._pieces.popleft())
                            need -= len(head)
                        else:
                            parts.append(head[:need])
                            s._pieces[0] = head[need:]
                            need = 0
                    s._queued -= size - need
                    work.append((s.state, parts, s.sha))
            error: BaseException | None = None
            try:
                _native.update_lanes(work)
            except BaseException as exc:  # handed to the owners
                error = exc
            with self._cond:
                for s in due:
                    s.busy = False
                    if error is not None:
                        s._error = error
                        s._pieces.clear()
                        s._queued = 0
                self._cond.notify_all()


LANE_HASHER = LaneHasher()
