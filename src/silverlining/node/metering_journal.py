"""Exact request metering: a per-process journal written on every request, and a background
aggregator that folds journals into ``usage_periods``.

**Writing** (:class:`JournalMeter`, the node's :class:`~silverlining.node.metering.Meter`):
each authenticated S3 request appends one fixed-size 40-byte record to this process's journal
file in ``<data-dir>/metering/`` with a single unbuffered ``os.write`` on an ``O_APPEND``
descriptor. Once ``record`` returns, the record is in the kernel's page cache: it survives
``kill -9`` of the process (not a power cut; the metadata database is what is fsynced). The
process holds an exclusive ``flock`` on its journal for as long as it lives, which is how an
aggregator tells a live writer's journal from a dead one's. Records carry their own CRC-32,
so a damaged record is skipped, never mis-counted.

Record: ``<BBBx q q q q I`` = magic 0xA7, version 1, request class (0 read, 1 write, 2 free),
pad, account id, timestamp (ms since the epoch, taken as the record is written), payload bytes
in, body bytes out, CRC-32 of the 36 bytes before it.

**Folding** (:class:`Aggregator`, a daemon thread): every cycle it folds each journal from its
consumed offset to its end into per-period counters, advancing the offset in the same database
transaction (exactly once); deletes journals of dead writers once consumed (file first, then
its offset row: the other order could count a file twice); and, because a record is written
the instant it is timestamped, once every journal has been drained at time T no record older
than T can still appear, so it closes every period that ended before ``T - grace`` by folding
stored byte-time (``UsageRepository.fold_storage``). Several processes may aggregate the same
directory at once: the transactions serialise them. At start, whatever earlier processes left
(after a crash, too) is simply more journal to fold.

Request classes follow S3's pricing tiers: GET and HEAD are reads; PUT, COPY, POST and LIST
are writes; deletes (DeleteObject, DeleteObjects, DeleteBucket, AbortMultipartUpload,
DeleteObjectTagging) are free and not counted as requests (their bytes still are).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import re
import secrets
import socket
import struct
import threading
import time
import zlib
from pathlib import Path

from silverlining.node.store.usage import Counters, UsageRepository, period_start

log = logging.getLogger("silverlining.node.metering")

JOURNAL_DIR = "metering"
SUFFIX = ".journal"

_BODY = struct.Struct("<BBBxqqqq")
_CRC = struct.Struct("<I")
RECORD_SIZE = _BODY.size + _CRC.size  # 40
_MAGIC = 0xA7
_VERSION = 1

READ, WRITE, FREE = 0, 1, 2
_READ_PREFIXES = ("Get", "Head")
_FREE_PREFIXES = ("Delete", "Abort")

#: Largest slice of a journal folded in one transaction.
_FOLD_CHUNK = 4 * 1024 * 1024 // RECORD_SIZE * RECORD_SIZE


def request_class(operation: str) -> int:
    """The pricing class of an S3 operation (botocore operation name)."""
    if operation.startswith(_READ_PREFIXES):
        return READ
    if operation.startswith(_FREE_PREFIXES):
        return FREE
    # PUT, COPY, POST and LIST: PutObject, CopyObject, CreateBucket, UploadPart,
    # CompleteMultipartUpload, ListObjectsV2, ListBuckets, ListParts, ...
    return WRITE


def encode(account_id: int, cls: int, ts_ms: int, bytes_in: int, bytes_out: int) -> bytes:
    body = _BODY.pack(_MAGIC, _VERSION, cls, account_id, ts_ms, bytes_in, bytes_out)
    return body + _CRC.pack(zlib.crc32(body))


def decode(data: bytes | memoryview, period_ms: int) -> tuple[Counters, int]:
    """Counters of whole records in ``data`` (a multiple of RECORD_SIZE); and how many
    records were damaged (skipped)."""
    counters: Counters = {}
    bad = 0
    view = memoryview(data)
    for off in range(0, len(view) - len(view) % RECORD_SIZE, RECORD_SIZE):
        body = view[off:off + _BODY.size]
        (crc,) = _CRC.unpack_from(view, off + _BODY.size)
        if zlib.crc32(body) != crc:
            bad += 1
            continue
        magic, version, cls, account_id, ts_ms, bytes_in, bytes_out = _BODY.unpack(body)
        if magic != _MAGIC or version != _VERSION or cls not in (READ, WRITE, FREE):
            bad += 1
            continue
        key = (account_id, period_start(ts_ms, period_ms))
        c = counters.get(key)
        if c is None:
            c = counters[key] = [0, 0, 0, 0]
        if cls == READ:
            c[0] += 1
        elif cls == WRITE:
            c[1] += 1
        c[2] += bytes_in
        c[3] += bytes_out
    return counters, bad


class JournalMeter:
    """The node's Meter: one record per request, appended to this process's journal."""

    def __init__(self, directory: Path, *, rotate_bytes: int = 64 * 1024 * 1024) -> None:
        self.directory = directory
        self.rotate_bytes = rotate_bytes
        directory.mkdir(parents=True, exist_ok=True)
        self._classes: dict[str, int] = {}
        self._fd = -1
        self._size = 0
        self._failed = False
        self.name = ""
        self._open()

    def _open(self) -> None:
        host = re.sub(r"[^A-Za-z0-9.-]", "_", socket.gethostname())[:64] or "host"
        name = f"{host}-{os.getpid()}-{time.time_ns() // 1_000_000}-{secrets.token_hex(4)}{SUFFIX}"
        fd = os.open(self.directory / name,
                     os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC, 0o600)
        # Held until this process closes the file or dies: "a live writer owns this file".
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        self._fd, self._size, self.name = fd, 0, name

    def record(self, account_id: int, operation: str, bytes_in: int, bytes_out: int) -> None:
        cls = self._classes.get(operation)
        if cls is None:
            cls = self._classes[operation] = request_class(operation)
        rec = encode(account_id, cls, time.time_ns() // 1_000_000, bytes_in, bytes_out)
        try:
            written = os.write(self._fd, rec)
        except OSError as exc:
            self._complain(f"cannot append to metering journal {self.name}: {exc.strerror}")
            return
        if written != RECORD_SIZE:  # a full disk; the aggregator skips the torn record
            self._complain(f"short write to metering journal {self.name} ({written} bytes)")
        self._size += written
        if self._size >= self.rotate_bytes:
            self._rotate()

    def _complain(self, message: str) -> None:
        # Metering must never fail a request; say it loudly once per trouble.
        if not self._failed:
            log.error("%s: usage is not being recorded", message)
            self._failed = True

    def _rotate(self) -> None:
        old = self._fd
        try:
            self._open()
        except OSError as exc:
            self._complain(f"cannot start a new metering journal: {exc.strerror}")
            return
        os.close(old)  # releases its lock: the aggregator finishes and deletes it

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


class Aggregator:
    """Folds the journals of ``directory`` into usage rows and closes ended periods."""

    def __init__(self, repo: UsageRepository, directory: Path, period_ms: int, *,
                 interval_s: float | None = None, grace_ms: int | None = None) -> None:
        self.repo = repo
        self.directory = directory
        self.period_ms = period_ms
        #: How long after its end a period is closed: storage changes commit a moment after
        #: they are timestamped, and several hosts' clocks differ a little.
        self.grace_ms = grace_ms if grace_ms is not None else min(5000, period_ms // 4)
        self.interval_s = interval_s if interval_s is not None else min(1.0, period_ms / 4000)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()  # one cycle at a time in this process

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="sl-metering", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread and fold what is left (call after the meter is closed)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        try:
            self.run_once()
        except Exception:
            log.exception("final metering fold failed; the next start will finish it")

    def _run(self) -> None:
        delay = self.interval_s
        while not self._stop.is_set():
            try:
                self.run_once()
                delay = self.interval_s
            except Exception:
                log.exception("metering fold failed; retrying")
                delay = min(max(delay * 2, self.interval_s), 30.0)
            self._stop.wait(delay)

    def run_once(self) -> None:
        """One cycle: drain every journal, then close the periods that can be closed."""
        with self._lock:
            started_ms = time.time_ns() // 1_000_000
            offsets = self.repo.journal_offsets()  # before listing: see _forget below
            try:
                names = sorted(n for n in os.listdir(self.directory) if n.endswith(SUFFIX))
            except FileNotFoundError:
                names = []
            for name in names:
                self._drain(name, offsets.get(name))
            # An offset row whose file was already gone when we listed: the file was
            # consumed and deleted (names are never reused), so the row can go.
            for name in set(offsets) - set(names):
                self.repo.forget_journal(name)
            # Every record stamped before started_ms is now folded; storage changes get
            # grace_ms more to commit.
            while self.repo.fold_storage(self.period_ms, started_ms - self.grace_ms):
                pass

    def _drain(self, name: str, known_offset: int | None) -> None:
        path = self.directory / name
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return  # another aggregator finished it
        try:
            size = os.fstat(fd).st_size
            if known_offset is None or known_offset < size - size % RECORD_SIZE:
                self._fold(fd, name, size)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return  # its writer is alive
            # Its writer is gone: nothing more will be appended. Finish it and delete it.
            size = os.fstat(fd).st_size
            consumed = self._fold(fd, name, size)
            if consumed < size:
                log.warning("metering journal %s ends with %d bytes of an incomplete record "
                            "(dropped)", name, size - consumed)
            os.unlink(path)
            self.repo.forget_journal(name)
        finally:
            os.close(fd)

    def _fold(self, fd: int, name: str, size: int) -> int:
        """Fold whole records up to ``size``; returns the consumed offset."""
        whole = size - size % RECORD_SIZE
        damaged = [0]

        def fold(offset: int) -> tuple[int, Counters]:
            if offset >= whole:
                return offset, {}
            data = os.pread(fd, min(_FOLD_CHUNK, whole - offset), offset)
            usable = len(data) - len(data) % RECORD_SIZE
            counters, damaged[0] = decode(memoryview(data)[:usable], self.period_ms)
            return offset + usable, counters

        consumed = -1
        while True:
            damaged[0] = 0
            new = self.repo.apply_journal(name, fold)
            if damaged[0]:
                log.warning("metering journal %s: skipped %d damaged record(s)", name,
                            damaged[0])
            if new >= whole or new == consumed:
                return new
            consumed = new


def close_quietly(meter: JournalMeter | None) -> None:
    if meter is not None:
        with contextlib.suppress(OSError):
            meter.close()
