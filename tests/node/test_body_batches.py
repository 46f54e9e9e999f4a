"""Object bodies pumped in batches (``RequestBody.next_batch``, ``handlers/common.pump``):
trickled, pipelined, ``Expect: 100-continue`` and signed-payload bodies are stored byte for
byte; a wrong payload SHA-256 is still refused, alone or among concurrent signed uploads
(whose SHA-256s share the MD5 lanes); a replaced blob is freed after the answer."""

from __future__ import annotations

import hashlib
import socket
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.conftest import NodeProcess
from tests.node.s3util import parse_response, sign

B = "feed"
MiB = 1024 * 1024


class FeedNode(NodeProcess):
    access_key: str
    secret_key: str


@pytest.fixture(scope="module")
def fnode(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FeedNode]:
    node = FeedNode(tmp_path_factory.mktemp("feed") / "data",
                    extra_args=("--body-timeout", "2"))
    node.access_key, node.secret_key = node.new_credentials("feed")
    node.start()
    node.client(node.access_key, node.secret_key).create_bucket(Bucket=B)
    yield node
    node.stop()


def _put_head(node: FeedNode, key: str, body: bytes, *, signed: bool = False,
              extra: dict[str, str] | None = None) -> bytes:
    path = f"/{B}/{key}"
    payload = hashlib.sha256(body).hexdigest() if signed else "UNSIGNED-PAYLOAD"
    headers = sign(node.endpoint, node.access_key, node.secret_key, "PUT", path, extra,
                   payload)
    headers["Content-Length"] = str(len(body))
    lines = [f"PUT {path} HTTP/1.1"] + [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _responses(sock: socket.socket, count: int) -> list[tuple[int, dict[str, str], bytes]]:
    """Read ``count`` complete responses (all with Content-Length) from ``sock``."""
    data = b""
    out: list[tuple[int, dict[str, str], bytes]] = []
    while len(out) < count:
        head, sep, rest = data.partition(b"\r\n\r\n")
        if sep:
            status, headers, _ = parse_response(head + sep)
            length = int(headers.get("content-length", "0"))
            if len(rest) >= length:
                out.append((status, headers, rest[:length]))
                data = rest[length:]
                continue
        chunk = sock.recv(65536)
        assert chunk, f"connection closed after {len(out)} responses"
        data += chunk
    return out


def _stored(node: FeedNode, key: str) -> bytes:
    s3 = node.client(node.access_key, node.secret_key)
    body: bytes = s3.get_object(Bucket=B, Key=key)["Body"].read()
    return body


def test_trickled_body_longer_than_the_timeout_in_all(fnode: FeedNode) -> None:
    """The body timeout bounds each silence, not the whole upload."""
    body = bytes(range(256)) * (3 * MiB // 256 + 7)
    with socket.create_connection(("127.0.0.1", fnode.port), timeout=20) as sock:
        sock.sendall(_put_head(fnode, "trickled", body))
        step = len(body) // 6 + 1
        for i in range(0, len(body), step):
            sock.sendall(body[i:i + step])
            time.sleep(0.5)  # 3 s in all, > --body-timeout 2
        [(status, headers, _)] = _responses(sock, 1)
    assert status == 200
    assert headers["etag"] == f'"{hashlib.md5(body).hexdigest()}"'
    assert _stored(fnode, "trickled") == body


def test_pipelined_large_puts_on_one_connection(fnode: FeedNode) -> None:
    bodies = [bytes([i]) * (2 * MiB + 12345 * i) for i in range(1, 4)]
    wire = b"".join(_put_head(fnode, f"piped/{i}", b, signed=True) + b
                    for i, b in enumerate(bodies))
    with socket.create_connection(("127.0.0.1", fnode.port), timeout=20) as sock:
        sock.sendall(wire)
        answers = _responses(sock, len(bodies))
    for (status, headers, _), body in zip(answers, bodies, strict=True):
        assert status == 200
        assert headers["etag"] == f'"{hashlib.md5(body).hexdigest()}"'
    for i, body in enumerate(bodies):
        assert _stored(fnode, f"piped/{i}") == body


def test_expect_100_continue_large_body(fnode: FeedNode) -> None:
    body = b"c" * (5 * MiB + 1)
    head = _put_head(fnode, "continued", body, extra={"Expect": "100-continue"})
    with socket.create_connection(("127.0.0.1", fnode.port), timeout=20) as sock:
        sock.sendall(head)
        interim = sock.recv(65536)
        assert interim.startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
        rest = interim[len(b"HTTP/1.1 100 Continue\r\n\r\n"):]
        assert rest == b""
        sock.sendall(body)
        [(status, _, _)] = _responses(sock, 1)
    assert status == 200
    assert _stored(fnode, "continued") == body


def test_wrong_signed_payload_hash_is_refused(fnode: FeedNode) -> None:
    body = b"x" * (3 * MiB)
    head = _put_head(fnode, "forged", b"y" * (3 * MiB), signed=True)
    with socket.create_connection(("127.0.0.1", fnode.port), timeout=20) as sock:
        sock.sendall(head + body)
        [(status, _, answer)] = _responses(sock, 1)
    assert status == 400
    assert b"XAmzContentSHA256Mismatch" in answer
    s3 = fnode.client(fnode.access_key, fnode.secret_key)
    assert s3.list_objects_v2(Bucket=B, Prefix="forged")["KeyCount"] == 0


def test_concurrent_signed_puts_one_forged(fnode: FeedNode) -> None:
    """Six signed uploads at once, their SHA-256s hashed together on the lane thread; the
    one whose body is not what it signed is refused and not stored, the others are."""
    bodies = {f"signed/{i}": bytes([65 + i]) * (4 * MiB + 4099 * i) for i in range(6)}

    def put(key: str) -> tuple[int, dict[str, str], bytes]:
        body = bodies[key]
        claimed = body if not key.endswith("3") else body[:-1] + b"!"
        with socket.create_connection(("127.0.0.1", fnode.port), timeout=30) as sock:
            sock.sendall(_put_head(fnode, key, claimed, signed=True))
            for i in range(0, len(body), MiB):  # in pieces, so that the uploads overlap
                sock.sendall(body[i:i + MiB])
            [answer] = _responses(sock, 1)
        return answer

    with ThreadPoolExecutor(len(bodies)) as pool:
        answers = dict(zip(bodies, pool.map(put, bodies), strict=True))
    s3 = fnode.client(fnode.access_key, fnode.secret_key)
    for key, body in bodies.items():
        status, headers, answer = answers[key]
        if key.endswith("3"):
            assert status == 400
            assert b"XAmzContentSHA256Mismatch" in answer
            assert s3.list_objects_v2(Bucket=B, Prefix=key)["KeyCount"] == 0
        else:
            assert status == 200, answer
            assert headers["etag"] == f'"{hashlib.md5(body).hexdigest()}"'
            assert _stored(fnode, key) == body


def test_overwrite_frees_the_replaced_blob(fnode: FeedNode) -> None:
    """The replaced blob is deleted after the answer is sent (not before): soon, not never."""
    s3 = fnode.client(fnode.access_key, fnode.secret_key)
    s3.put_object(Bucket=B, Key="over", Body=b"1" * (2 * MiB))
    before = {p.name for p in (fnode.data_dir / "blobs").rglob("*") if p.is_file()}
    s3.put_object(Bucket=B, Key="over", Body=b"2" * (2 * MiB))
    deadline = time.monotonic() + 10
    while True:
        after = {p.name for p in (fnode.data_dir / "blobs").rglob("*") if p.is_file()}
        if len(after - before) == 1 and len(before - after) == 1:
            break
        assert time.monotonic() < deadline, (before, after)
        time.sleep(0.05)
    assert _stored(fnode, "over") == b"2" * (2 * MiB)
