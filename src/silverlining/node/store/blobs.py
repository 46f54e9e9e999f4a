"""Object bytes on the filesystem: immutable blob files, written temp -> fsync -> rename.

Contract:
- A blob is written to ``tmp/`` and becomes visible under ``blobs/`` only by an atomic
  rename after its bytes are fsynced (and, when ``durable``, the directory too). After
  :meth:`BlobWriter.commit` returns, the blob survives a crash.
- A blob is never modified after commit. An overwrite of an object writes a new blob and
  deletes the old one once the metadata points at the new one; readers that already opened
  the old file keep reading it (POSIX unlink semantics), so they never see a mix.
- Nothing outside ``root`` is ever touched: blob ids are generated here (hex), never taken
  from a request.
- :meth:`BlobStore.sweep` deletes temp files and blobs that no metadata row references
  (left by a crash between rename and commit, or between commit and delete).
- Several processes may share one data directory (nodes on one PostgreSQL database): each
  holds a shared ``flock`` on ``processes.lock`` while it lives. A sweep that finds other
  holders only removes what is older than ``SHARED_SWEEP_AGE_S`` (a live peer's temp file
  or just-renamed blob is never taken for an orphan).
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import os
import secrets
import shutil
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import BinaryIO

from silverlining.node.faults import crashpoint

CHUNK = 1024 * 1024
_IOV_MAX = min(os.sysconf("SC_IOV_MAX"), 1024)
#: While other processes use the data directory, sweep only files older than this (seconds):
#: far beyond any upload's life (bodies time out after 30 s idle) or commit delay.
SHARED_SWEEP_AGE_S = 3600.0
LOCK_FILE = "processes.lock"
#: data dir -> this process's lock fd (one per process: two BlobStores of one process on the
#: same directory must not see each other as peers). Held until the process exits.
_PROCESS_LOCKS: dict[str, int] = {}


def _load_sync_file_range() -> Callable[[int, int, int], None] | None:
    """``sync_file_range(fd, offset, n, SYNC_FILE_RANGE_WRITE)`` (Linux), or None.

    Python's ``os`` does not expose it; ctypes calls release the GIL."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.sync_file_range
    except (OSError, AttributeError):
        return None
    fn.argtypes = (ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint)
    fn.restype = ctypes.c_int
    write = 2  # SYNC_FILE_RANGE_WRITE: start writeback of the range's dirty pages, no wait

    def start_writeback(fd: int, offset: int, n: int) -> None:
        fn(fd, offset, n, write)  # advisory: a failure only means fsync does all the work

    return start_writeback


_start_writeback = _load_sync_file_range()
#: Dirty bytes of a blob past which their writeback is started while the upload goes on.
WRITEBACK_AFTER = 4 * 1024 * 1024


def new_blob_id() -> str:
    return secrets.token_hex(16)


def _valid_id(blob_id: str) -> bool:
    return len(blob_id) == 32 and all(c in "0123456789abcdef" for c in blob_id)


class BlobStore:
    def __init__(self, root: Path, *, durable: bool = True) -> None:
        self.root = root
        self.blobs = root / "blobs"
        self.tmp = root / "tmp"
        self.durable = durable
        self.blobs.mkdir(parents=True, exist_ok=True)
        self.tmp.mkdir(parents=True, exist_ok=True)
        self._lock_fd = _process_lock(root)

    def _alone(self) -> bool:
        """True if no other process holds the data directory (we may sweep everything)."""
        if self._lock_fd is None:
            return False
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return False
        fcntl.flock(self._lock_fd, fcntl.LOCK_SH)
        return True

    def path(self, blob_id: str) -> Path:
        if not _valid_id(blob_id):
            raise ValueError(f"invalid blob id {blob_id!r}")
        return self.blobs / blob_id[:2] / blob_id[2:4] / blob_id

    def writer(self) -> BlobWriter:
        return BlobWriter(self, new_blob_id())

    def open(self, blob_id: str) -> BinaryIO:
        """Open a committed blob for reading. Raises FileNotFoundError if it is gone."""
        return open(self.path(blob_id), "rb", buffering=0)

    def delete(self, blob_id: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path(blob_id))
        crashpoint("blob.deleted")

    def delete_many(self, blob_ids: Iterable[str]) -> None:
        for blob_id in blob_ids:
            self.delete(blob_id)

    def link_copy(self, blob_id: str) -> str:
        """A new blob with the same bytes, sharing storage (a hard link; blobs are immutable)."""
        new_id = new_blob_id()
        dest = self.path(new_id)
        dest.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(self.path(blob_id), dest)
        except OSError:
            # Filesystems without hard links: copy the bytes durably instead.
            writer = BlobWriter(self, new_id)
            with self.open(blob_id) as src:
                while chunk := src.read(CHUNK):
                    writer.write(chunk)
            writer.commit()
            return new_id
        if self.durable:
            _fsync_dir(dest.parent)
        crashpoint("blob.linked")
        return new_id

    def sweep(self, referenced: Callable[[], set[str]], older_than: float) -> tuple[int, int]:
        """Delete temp files and unreferenced blobs last modified before ``older_than``.

        Returns (files removed, bytes freed). ``referenced`` is called after the directory
        scan so a blob committed during the scan is never mistaken for an orphan.
        """
        removed = freed = 0
        shared = not self._alone()
        if shared:
            older_than = min(older_than, time.time() - SHARED_SWEEP_AGE_S)
        for entry in list(os.scandir(self.tmp)):
            try:
                st = entry.stat()
                if _age_mark(st, shared) < older_than:
                    if entry.is_dir(follow_symlinks=False):
                        shutil.rmtree(entry.path, ignore_errors=True)
                    else:
                        os.unlink(entry.path)
                    removed += 1
                    freed += st.st_size
            except FileNotFoundError:
                continue
        candidates: list[tuple[str, str, int]] = []
        for top in os.scandir(self.blobs):
            if not top.is_dir(follow_symlinks=False):
                continue
            for mid in os.scandir(top.path):
                if not mid.is_dir(follow_symlinks=False):
                    continue
                for entry in os.scandir(mid.path):
                    try:
                        st = entry.stat(follow_symlinks=False)
                    except FileNotFoundError:
                        continue
                    if _age_mark(st, shared) < older_than:
                        candidates.append((entry.name, entry.path, st.st_size))
        if not candidates:
            return removed, freed
        live = referenced()
        for name, path, size in candidates:
            if name not in live:
                try:
                    os.unlink(path)
                except FileNotFoundError:
                    continue
                removed += 1
                freed += size
        return removed, freed



class BlobWriter:
    """Writes one blob. ``write`` appends; ``commit`` makes it durable and visible; ``discard``
    removes it. Not thread-safe; one writer per upload."""

    def __init__(self, store: BlobStore, blob_id: str) -> None:
        self.store = store
        self.blob_id = blob_id
        self.size = 0
        self._tmp_path = store.tmp / f"{blob_id}.{os.getpid()}.{time.monotonic_ns()}"
        self._fd: int | None = os.open(
            self._tmp_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600
        )
        self._done = False
        #: Bytes [0, _flushed) have had their writeback started (see ``_writeback``).
        self._flushed = 0

    def _writeback(self) -> None:
        """Start writing the blob's dirty pages to disk while more of it arrives.

        The fsync in ``commit`` is what makes the blob durable; started early, the disk
        writes overlap the upload instead of all waiting for that fsync (for a 64 MiB PUT
        the final fsync took most of the ~150 ms between the last byte and the answer).
        """
        pending = self.size - self._flushed
        if pending >= WRITEBACK_AFTER and self.store.durable and _start_writeback is not None:
            assert self._fd is not None
            _start_writeback(self._fd, self._flushed, pending)
            self._flushed = self.size

    def write(self, data: bytes | bytearray | memoryview) -> None:
        assert self._fd is not None, "write after commit/discard"
        view = memoryview(data)
        while view:
            n = os.write(self._fd, view)
            view = view[n:]
            self.size += n
        crashpoint("blob.written")

    def write_many(self, pieces: Sequence[bytes | bytearray | memoryview]) -> None:
        """Append several pieces with as few system calls as ``writev`` allows."""
        assert self._fd is not None, "write after commit/discard"
        before = self.size
        views = [memoryview(p) for p in pieces if len(p)]
        while views:
            batch = views[:_IOV_MAX]
            n = os.writev(self._fd, batch)
            self.size += n
            # a short write: drop what was written, go on from there
            while n:
                first = len(views[0])
                if n >= first:
                    n -= first
                    views.pop(0)
                else:
                    views[0] = views[0][n:]
                    n = 0
        self._writeback()
        # One crash point per CHUNK written (at least one per call), whatever the batching:
        # the crash tests count on "after the n-th MiB" being reached for an n MiB body.
        for _ in range(max(1, self.size // CHUNK - before // CHUNK)):
            crashpoint("blob.written")

    def commit(self) -> str:
        """fsync, rename into place; afterwards the blob survives a crash. Returns its id."""
        assert self._fd is not None
        fd, self._fd = self._fd, None
        try:
            if self.store.durable:
                os.fsync(fd)
        finally:
            os.close(fd)
        crashpoint("blob.fsynced")
        dest = self.store.path(self.blob_id)
        try:
            os.rename(self._tmp_path, dest)
        except FileNotFoundError:
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.rename(self._tmp_path, dest)
        crashpoint("blob.renamed")
        if self.store.durable:
            _fsync_dir(dest.parent)
        crashpoint("blob.dir_synced")
        self._done = True
        return self.blob_id

    def discard(self) -> None:
        if self._done:
            self.store.delete(self.blob_id)
            return
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._tmp_path)
        self._done = True


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _age_mark(st: os.stat_result, shared: bool) -> float:
    # A hard link made by CopyObject keeps its source's mtime but gets a new ctime.
    return max(st.st_mtime, st.st_ctime) if shared else st.st_mtime


def _process_lock(root: Path) -> int | None:
    """This process's shared lock on the data directory (see the module docstring)."""
    key = str(root.resolve())
    fd = _PROCESS_LOCKS.get(key)
    if fd is not None:
        return fd
    try:
        fd = os.open(root / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)
    except OSError:  # no locks on this filesystem: assume peers, sweep conservatively
        os.close(fd)
        return None
    _PROCESS_LOCKS[key] = fd
    return fd
