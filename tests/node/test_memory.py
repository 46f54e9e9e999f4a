"""Bounded memory: a 4 GiB object in one streamed PUT and as a multipart upload, downloaded
back, with the node's resident memory sampled throughout; it must stay under 200 MiB.
``SL_MEMORY_GIB`` sets the size (default 4). The peak is written to
``test-artifacts/memory.json``."""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO, RunningNode
from tests.node.s3util import sign

MiB = 1024 * 1024
GIB = float(os.environ.get("SL_MEMORY_GIB", "4"))
SIZE = int(GIB * 1024) * MiB
LIMIT = 200 * MiB
_BLOCK = os.urandom(MiB)


def _chunks(tag: int, size: int) -> Iterator[bytes]:
    """Deterministic, distinct 1 MiB blocks without holding more than one."""
    for i in range(size // MiB):
        yield tag.to_bytes(4, "big") + i.to_bytes(8, "big") + _BLOCK[12:]


class RssSampler:
    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        self.peak = max(self.peak, int(line.split()[1]) * 1024)
            except FileNotFoundError:
                return
            self._stop.wait(0.02)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _stream_put(node: RunningNode, path: str, chunks: Iterator[bytes], size: int) -> str:
    headers = sign(node.endpoint, node.access_key, node.secret_key, "PUT", path)
    headers["Content-Length"] = str(size)
    conn = http.client.HTTPConnection("127.0.0.1", node.port, timeout=120)
    try:
        conn.putrequest("PUT", path, skip_host=True, skip_accept_encoding=True)
        for k, v in headers.items():
            conn.putheader(k, v)
        conn.endheaders()
        for chunk in chunks:
            conn.send(chunk)
        resp = conn.getresponse()
        body = resp.read()
        assert resp.status == 200, body
        return str(resp.getheader("ETag"))
    finally:
        conn.close()


def _stream_get(node: RunningNode, path: str) -> tuple[int, str]:
    headers = sign(node.endpoint, node.access_key, node.secret_key, "GET", path)
    conn = http.client.HTTPConnection("127.0.0.1", node.port, timeout=120)
    try:
        conn.request("GET", path, headers=headers)
        resp = conn.getresponse()
        assert resp.status == 200
        md5 = hashlib.md5()
        total = 0
        while data := resp.read(MiB):
            md5.update(data)
            total += len(data)
        return total, md5.hexdigest()
    finally:
        conn.close()


def test_large_object_memory_stays_bounded(node: RunningNode, s3: Any, bucket: str) -> None:
    figures: dict[str, Any] = {"object_bytes": SIZE}
    # one streamed PUT, then GET
    expected = hashlib.md5()
    for chunk in _chunks(1, SIZE):
        expected.update(chunk)
    with RssSampler(node.pid) as put_rss:
        etag = _stream_put(node, f"/{bucket}/single", _chunks(1, SIZE), SIZE)
    assert etag == f'"{expected.hexdigest()}"'
    with RssSampler(node.pid) as get_rss:
        total, digest = _stream_get(node, f"/{bucket}/single")
    assert (total, digest) == (SIZE, expected.hexdigest())
    s3.delete_object(Bucket=bucket, Key="single")
    figures["single_put_peak_rss"] = put_rss.peak
    figures["single_get_peak_rss"] = get_rss.peak

    # multipart: 64 MiB parts
    part_size = 64 * MiB
    uid = s3.create_multipart_upload(Bucket=bucket, Key="multi")["UploadId"]
    parts = []
    md5 = hashlib.md5()
    with RssSampler(node.pid) as mp_rss:
        chunks = _chunks(2, SIZE)
        number = 0
        while True:
            data = b"".join(next(chunks, b"") for _ in range(part_size // MiB))
            if not data:
                break
            number += 1
            md5.update(data)
            etag = s3.upload_part(Bucket=bucket, Key="multi", UploadId=uid, PartNumber=number,
                                  Body=data)["ETag"]
            parts.append({"PartNumber": number, "ETag": etag})
            del data
        s3.complete_multipart_upload(Bucket=bucket, Key="multi", UploadId=uid,
                                     MultipartUpload={"Parts": parts})
    with RssSampler(node.pid) as mget_rss:
        total, digest = _stream_get(node, f"/{bucket}/multi")
    assert (total, digest) == (SIZE, md5.hexdigest())
    s3.delete_object(Bucket=bucket, Key="multi")
    figures["multipart_put_peak_rss"] = mp_rss.peak
    figures["multipart_get_peak_rss"] = mget_rss.peak

    out = REPO / "test-artifacts"
    out.mkdir(exist_ok=True)
    (out / "memory.json").write_text(json.dumps(figures, indent=2))
    peaks = {k: v for k, v in figures.items() if k.endswith("rss")}
    assert all(v < LIMIT for v in peaks.values()), {k: v // MiB for k, v in peaks.items()}


@pytest.fixture(autouse=True)
def _disk_room(tmp_path: Path) -> None:
    free = os.statvfs(tmp_path).f_bavail * os.statvfs(tmp_path).f_frsize
    assert free > 3 * SIZE, "not enough free disk for the memory test"
