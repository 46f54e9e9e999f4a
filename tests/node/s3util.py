"""Small helpers for S3 tests."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from botocore.exceptions import ClientError


def error_of(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[str, int]:
    """Call ``fn``; it must fail with a ClientError. Returns (code, HTTP status)."""
    with pytest.raises(ClientError) as info:
        fn(*args, **kwargs)
    err = info.value.response
    return err["Error"]["Code"], err["ResponseMetadata"]["HTTPStatusCode"]


def sign(endpoint: str, access_key: str, secret_key: str, method: str, path: str,
         headers: dict[str, str] | None = None,
         payload: str = "UNSIGNED-PAYLOAD") -> dict[str, str]:
    """Headers (including Authorization) for a SigV4-signed request, as botocore makes them.
    ``path`` is sent as is (percent-encoded as the caller wants it on the wire)."""
    from botocore.auth import S3SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    class _Auth(S3SigV4Auth):
        def payload(self, request: AWSRequest) -> str:
            return payload

    req = AWSRequest(method=method, url=f"{endpoint}{path}", headers=dict(headers or {}))
    req.headers["x-amz-content-sha256"] = payload
    _Auth(Credentials(access_key, secret_key), "s3", "us-east-1").add_auth(req)
    out = dict(req.headers.items())
    out["Host"] = endpoint.split("://", 1)[1]
    return out


def raw_request(port: int, head: bytes, body: bytes = b"", *, timeout: float = 10.0,
                close_after: bool = False) -> bytes:
    """Send raw bytes; return everything the server answers until it closes or goes quiet."""
    import socket

    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(head + body)
        if close_after:
            sock.shutdown(socket.SHUT_WR)
        chunks = []
        try:
            while True:
                data = sock.recv(65536)
                if not data:
                    break
                chunks.append(data)
                if _complete(b"".join(chunks)):
                    break
        except TimeoutError:
            pass
        return b"".join(chunks)


def _complete(data: bytes) -> bool:
    head, sep, rest = data.partition(b"\r\n\r\n")
    if not sep:
        return False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return len(rest) >= int(value.strip())
    return False


def parse_response(data: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        headers[name.strip().lower().decode()] = value.strip().decode("latin-1")
    return status, headers, body


def assert_s3_error(data: bytes, status: int | None = None, code: str | None = None) -> str:
    """The response is a well-formed S3 error (4xx, XML with Code/Message/RequestId)."""
    import defusedxml.ElementTree as ET

    got_status, headers, body = parse_response(data)
    assert 400 <= got_status < 500, (got_status, body[:300])
    if status is not None:
        assert got_status == status, (got_status, body[:300])
    root = ET.fromstring(body)
    assert root.tag == "Error"
    got_code = root.findtext("Code")
    assert got_code and root.findtext("Message") is not None and root.findtext("RequestId")
    assert headers.get("x-amz-request-id") == root.findtext("RequestId")
    if code is not None:
        assert got_code == code, (got_code, body[:300])
    return got_code
