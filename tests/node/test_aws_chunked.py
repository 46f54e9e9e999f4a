"""aws-chunked decoding: AWS's published vectors, what boto3 really sends, and broken bodies."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import http.server
import ipaddress
import ssl
import threading
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from unittest import mock
from urllib.parse import urlsplit

import boto3
import botocore.auth
import pytest
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from hypothesis import given, settings
from hypothesis import strategies as st

from silverlining.node import errors
from silverlining.node.protocol.aws_chunked import AwsChunkedDecoder
from silverlining.node.protocol.sigv4 import (
    EMPTY_SHA256,
    STREAMING_PAYLOAD,
    STREAMING_PAYLOAD_TRAILER,
    SigningContext,
    Verifier,
    derive_signing_key,
    sign,
)

# -- a signer for signed streaming bodies, written from the spec ------------------------------
# https://docs.aws.amazon.com/AmazonS3/latest/API/sigv4-streaming.html
# https://docs.aws.amazon.com/AmazonS3/latest/API/sigv4-streaming-trailers.html


def signed_body(
    ctx: SigningContext, chunks: list[bytes], trailers: list[tuple[str, str]] | None = None
) -> bytes:
    """Frame ``chunks`` (and ``trailers``) as a signed aws-chunked body chained from ``ctx``."""
    out = bytearray()
    previous = ctx.seed_signature
    for data in [*chunks, b""]:
        string_to_sign = "\n".join([
            "AWS4-HMAC-SHA256-PAYLOAD", ctx.amz_date, ctx.scope, previous, EMPTY_SHA256,
            hashlib.sha256(data).hexdigest(),
        ])
        previous = sign(ctx.signing_key, string_to_sign)
        out += b"%x;chunk-signature=%s\r\n" % (len(data), previous.encode())
        if data:
            out += data + b"\r\n"
    if trailers is not None:
        # Canonicalised like signed headers: lower-case name, trimmed value, sorted by name.
        canonical = "".join(
            f"{name.lower()}:{' '.join(value.split())}\n" for name, value in sorted(trailers)
        )
        string_to_sign = "\n".join([
            "AWS4-HMAC-SHA256-TRAILER", ctx.amz_date, ctx.scope, previous,
            hashlib.sha256(canonical.encode()).hexdigest(),
        ])
        for name, value in trailers:
            out += f"{name}:{value}\r\n".encode()
        out += f"x-amz-trailer-signature:{sign(ctx.signing_key, string_to_sign)}\r\n".encode()
    return bytes(out + b"\r\n")


def unsigned_body(chunks: list[bytes], trailers: list[tuple[str, str]] | None = None) -> bytes:
    out = bytearray()
    for data in chunks:
        out += b"%x\r\n%s\r\n" % (len(data), data)
    out += b"0\r\n"
    for name, value in trailers or []:
        out += f"{name}:{value}\r\n".encode()
    return bytes(out + b"\r\n")


def decode(
    decoder: AwsChunkedDecoder, body: bytes, pieces: int | list[int] = 1 << 30
) -> tuple[bytes, dict[str, str]]:
    """Feed ``body`` in pieces of ``pieces`` bytes (or at the given cut points)."""
    cuts = sorted(pieces) if isinstance(pieces, list) else range(pieces, len(body), pieces)
    out = bytearray()
    start = 0
    for cut in [*cuts, len(body)]:
        out += decoder.feed(body[start:cut])
        start = cut
    trailers = decoder.finish()
    assert decoder.decoded_length == len(out)
    return bytes(out), trailers


SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
CTX = SigningContext(
    signing_key=derive_signing_key(SECRET, "20261124", "us-east-1", "s3"),
    amz_date="20261124T120000Z",
    scope="20261124/us-east-1/s3/aws4_request",
    seed_signature="a" * 64,
)


# -- AWS's worked examples --------------------------------------------------------------------
# The example request of the two pages above: PUT /examplebucket/chunkObject.txt, 66560 bytes
# of 'a' sent as a 65536-byte chunk, a 1024-byte chunk and the final empty chunk.

AWS_AKID = "AKIAIOSFODNN7EXAMPLE"
AWS_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
AWS_DATA = [b"a" * 65536, b"a" * 1024]


@dataclass(frozen=True)
class AwsExample:
    mode: str
    signed_headers: str
    seed: str
    chunk_signatures: tuple[str, str, str]
    trailer: tuple[str, str] | None = None
    trailer_signature: str = ""

    def headers(self) -> list[tuple[bytes, bytes]]:
        headers = [
            (b"host", b"s3.amazonaws.com"),
            (b"x-amz-date", b"20130524T000000Z"),
            (b"x-amz-storage-class", b"REDUCED_REDUNDANCY"),
            (b"x-amz-content-sha256", self.mode.encode()),
            (b"content-encoding", b"aws-chunked"),
            (b"x-amz-decoded-content-length", b"66560"),
            (b"content-length", b"66824"),
            (b"authorization", (
                f"AWS4-HMAC-SHA256 Credential={AWS_AKID}/20130524/us-east-1/s3/aws4_request,"
                f"SignedHeaders={self.signed_headers},Signature={self.seed}"
            ).encode()),
        ]
        if self.trailer:
            headers.append((b"x-amz-trailer", self.trailer[0].encode()))
        return headers

    def body(self) -> bytes:
        sig1, sig2, sig3 = (s.encode() for s in self.chunk_signatures)
        body = (
            b"10000;chunk-signature=" + sig1 + b"\r\n" + AWS_DATA[0] + b"\r\n"
            + b"400;chunk-signature=" + sig2 + b"\r\n" + AWS_DATA[1] + b"\r\n"
            + b"0;chunk-signature=" + sig3 + b"\r\n"
        )
        if self.trailer:
            body += f"{self.trailer[0]}:{self.trailer[1]}\r\n".encode()
            body += f"x-amz-trailer-signature:{self.trailer_signature}\r\n".encode()
        return body + b"\r\n"


AWS_EXAMPLE = AwsExample(
    mode=STREAMING_PAYLOAD,
    signed_headers="content-encoding;content-length;host;x-amz-content-sha256;x-amz-date;"
    "x-amz-decoded-content-length;x-amz-storage-class",
    seed="4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9",
    chunk_signatures=(
        "ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648",
        "0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497",
        "b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9",
    ),
)
AWS_TRAILER_EXAMPLE = AwsExample(
    mode=STREAMING_PAYLOAD_TRAILER,
    signed_headers="content-encoding;host;x-amz-content-sha256;x-amz-date;"
    "x-amz-decoded-content-length;x-amz-storage-class;x-amz-trailer",
    seed="106e2a8a18243abcf37539882f36619c00e2dfc72633413f02d3b74544bfeb8e",
    chunk_signatures=(
        "b474d8862b1487a5145d686f57f013e54db672cee1c953b3010fb58501ef5aa2",
        "1c1344b170168f8e65b41376b44b20fe354e373826ccbbe2c1d40a8cae51e5c7",
        "2ca2aba2005185cf7159c6277faf83795951dd77a3a99e6e65d5c9f85863f992",
    ),
    trailer=("x-amz-checksum-crc32c", "sOO8/Q=="),
    trailer_signature="d81f82fc3505edab99d459891051a732e8730629a2e4a59689829ca17fe2e435",
)


def _aws_context(example: AwsExample) -> SigningContext:
    """Verify the documented request's seed signature; return its chunk signing context."""
    verifier = Verifier({AWS_AKID: AWS_SECRET}.get,
                        clock=lambda: datetime(2013, 5, 24, tzinfo=UTC).timestamp())
    auth = verifier.authenticate("PUT", b"/examplebucket/chunkObject.txt", b"", example.headers())
    assert auth.streaming
    assert auth.expects_trailer is (example.trailer is not None)
    assert auth.chunk_signing is not None
    assert auth.chunk_signing.seed_signature == example.seed
    return auth.chunk_signing


@pytest.mark.parametrize("example", [AWS_EXAMPLE, AWS_TRAILER_EXAMPLE], ids=["plain", "trailer"])
def test_aws_documented_example_decodes(example: AwsExample) -> None:
    ctx = _aws_context(example)
    trailer = example.trailer is not None
    for pieces in (1 << 30, 65536, 4096, 7, 1):
        data, trailers = decode(AwsChunkedDecoder(ctx, trailer=trailer), example.body(), pieces)
        assert data == b"".join(AWS_DATA)
        assert trailers == (dict([example.trailer]) if example.trailer else {})


@pytest.mark.parametrize("example", [AWS_EXAMPLE, AWS_TRAILER_EXAMPLE], ids=["plain", "trailer"])
def test_test_signer_reproduces_aws_example(example: AwsExample) -> None:
    # The helper the other tests use builds exactly the documented bytes.
    ctx = _aws_context(example)
    trailers = [example.trailer] if example.trailer else None
    assert signed_body(ctx, AWS_DATA, trailers) == example.body()


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (b"a\r\n400;", b"b\r\n400;"),  # a data byte
        (AWS_EXAMPLE.chunk_signatures[1].encode(), b"0" * 64),  # a chunk signature
        (b"400;chunk-signature=" + AWS_EXAMPLE.chunk_signatures[1].encode(), b"400"),
        (AWS_EXAMPLE.chunk_signatures[2].encode(), AWS_EXAMPLE.chunk_signatures[1].encode()),
    ],
)
def test_tampered_aws_example_is_refused(old: bytes, new: bytes) -> None:
    body = AWS_EXAMPLE.body()
    assert old in body
    with pytest.raises(errors.SignatureDoesNotMatch):
        decode(AwsChunkedDecoder(_aws_context(AWS_EXAMPLE), trailer=False),
               body.replace(old, new, 1))


def test_reordered_dropped_or_truncated_chunks_are_refused() -> None:
    good = signed_body(CTX, [b"x" * 9000, b"y" * 100])
    decode(AwsChunkedDecoder(CTX, trailer=False), good)
    header1, one, header2, two, final, empty, last = good.split(b"\r\n")
    assert empty == last == b""
    signature1 = header1.rpartition(b"=")[2]
    for frames in (
        [header2, two, header1, one, final],  # reordered
        [header1, one, final],  # a chunk dropped
        [header1, one, b"0;chunk-signature=" + signature1],  # cut short, "final" forged
        [header1, one, header2, two, header2, two, final],  # a chunk replayed
    ):
        with pytest.raises(errors.SignatureDoesNotMatch):
            decode(AwsChunkedDecoder(CTX, trailer=False), b"\r\n".join([*frames, b"", b""]))


@pytest.mark.parametrize(
    "tamper",
    [
        lambda b: b.replace(b"sOO8/Q==", b"AAAAAA=="),
        lambda b: b.replace(b"sOO8/Q==\r\n", b"sOO8/Q==\r\nx-amz-meta-extra:1\r\n"),
        lambda b: b.replace(b"x-amz-checksum-crc32c:sOO8/Q==\r\n", b""),
        lambda b: b.replace(AWS_TRAILER_EXAMPLE.trailer_signature.encode(), b"0" * 64),
        lambda b: b.replace(
            b"x-amz-trailer-signature:" + AWS_TRAILER_EXAMPLE.trailer_signature.encode()
            + b"\r\n", b""),
    ],
    ids=["value", "added", "dropped", "signature", "no-signature"],
)
def test_tampered_trailer_is_refused(tamper: Any) -> None:
    body = tamper(AWS_TRAILER_EXAMPLE.body())
    assert body != AWS_TRAILER_EXAMPLE.body()
    with pytest.raises(errors.SignatureDoesNotMatch):
        decode(AwsChunkedDecoder(_aws_context(AWS_TRAILER_EXAMPLE), trailer=True), body)


def test_trailer_after_trailer_signature_is_refused() -> None:
    body = AWS_TRAILER_EXAMPLE.body()[:-2] + b"x-amz-meta-late:1\r\n\r\n"
    with pytest.raises(errors.InvalidRequest, match="follow x-amz-trailer-signature"):
        decode(AwsChunkedDecoder(_aws_context(AWS_TRAILER_EXAMPLE), trailer=True), body)


def test_trailers_where_none_were_declared_are_refused() -> None:
    body = signed_body(CTX, [b"data"])[:-2] + b"x-amz-checksum-crc32:AAAAAA==\r\n\r\n"
    with pytest.raises(errors.InvalidRequest, match="trailing headers"):
        decode(AwsChunkedDecoder(CTX, trailer=False), body)


# -- end to end: botocore signs the request, the spec-built body follows ----------------------


class _StreamingAuth(botocore.auth.S3SigV4Auth):  # type: ignore[misc]
    def __init__(self, credentials: Credentials, payload: str) -> None:
        super().__init__(credentials, "s3", "ap-south-2")
        self._payload = payload

    def payload(self, request: AWSRequest) -> str:
        return self._payload


@pytest.mark.parametrize("mode", [STREAMING_PAYLOAD, STREAMING_PAYLOAD_TRAILER])
def test_botocore_seed_signature_chains_into_chunks(mode: str) -> None:
    data = [b"\x00" * 8192, bytes(range(256)) * 40, b"tail"]
    trailer = mode == STREAMING_PAYLOAD_TRAILER
    headers = {"Content-Encoding": "aws-chunked",
               "X-Amz-Decoded-Content-Length": str(sum(map(len, data)))}
    if trailer:
        headers["X-Amz-Trailer"] = "x-amz-checksum-crc32"
    request = AWSRequest("PUT", "http://localhost:9000/b/obj", headers=headers)
    when = datetime(2026, 11, 24, 8, 30, tzinfo=UTC)
    with mock.patch("botocore.auth.get_current_datetime", return_value=when.replace(tzinfo=None)):
        _StreamingAuth(Credentials("AKID", SECRET), mode).add_auth(request)
    prepared = request.prepare()
    url = urlsplit(prepared.url)
    wire_headers = [(b"host", url.netloc.encode())] + [
        (k.lower().encode(), v.encode()) for k, v in prepared.headers.items()
    ]
    verifier = Verifier({"AKID": SECRET}.get, clock=when.timestamp)
    auth = verifier.authenticate("PUT", url.path.encode(), b"", wire_headers)
    assert auth.chunk_signing is not None
    assert auth.expects_trailer is trailer
    crc = base64.b64encode(zlib.crc32(b"".join(data)).to_bytes(4, "big")).decode()
    trailers = [("x-amz-checksum-crc32", crc)] if trailer else None
    body = signed_body(auth.chunk_signing, data, trailers)
    decoded, got = decode(AwsChunkedDecoder(auth.chunk_signing, trailer=trailer), body, 1000)
    assert decoded == b"".join(data)
    assert got == (dict(trailers) if trailers else {})
    other = Verifier({"AKID": SECRET}.get, clock=when.timestamp).authenticate(
        "PUT", url.path.encode(), b"", wire_headers
    )
    assert other.chunk_signing == auth.chunk_signing


# -- what boto3 really sends: STREAMING-UNSIGNED-PAYLOAD-TRAILER over HTTPS --------------------


@dataclass
class Captured:
    method: str
    path: bytes
    query: bytes
    headers: list[tuple[bytes, bytes]]
    body: bytes  # after HTTP/1.1 chunked transfer decoding: the aws-chunked bytes


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def do_PUT(self) -> None:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            body = bytearray()
            while True:
                size = int(self.rfile.readline().split(b";")[0], 16)
                body += self.rfile.read(size)
                self.rfile.readline()
                if not size:
                    break
        else:
            body = bytearray(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
        path, _, query = self.path.partition("?")
        self.server.captured.append(Captured(
            self.command, path.encode("latin-1"), query.encode("latin-1"),
            [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in self.headers.items()],
            bytes(body),
        ))
        self.send_response(200)
        self.send_header("ETag", '"0"')
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    captured: list[Captured]


def _self_signed_certificate(directory: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ))
    return cert_path, key_path


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[_Server, Path]]:
    cert, key = _self_signed_certificate(tmp_path_factory.mktemp("tls"))
    server = _Server(("127.0.0.1", 0), _Handler)
    server.captured = []
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server, cert
    server.shutdown()
    server.server_close()
    thread.join()


def _boto3_put(tls_server: tuple[_Server, Path], body: bytes, **kwargs: Any) -> Captured:
    server, cert = tls_server
    server.captured.clear()
    client = boto3.session.Session().client(
        "s3",
        endpoint_url=f"https://127.0.0.1:{server.server_address[1]}",
        region_name="us-east-1",
        aws_access_key_id="AKIDWIRE",
        aws_secret_access_key=SECRET,
        verify=str(cert),
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
    )
    try:
        if "UploadId" in kwargs:
            client.upload_part(Bucket="bucket", Key="some key", Body=body, **kwargs)
        else:
            client.put_object(Bucket="bucket", Key="some key", Body=body, **kwargs)
    finally:
        client.close()
    (captured,) = server.captured
    return captured


SIZES = [0, 1, 5, 1024 * 1024, 2 * 1024 * 1024 + 12345]


@pytest.mark.parametrize("size", SIZES)
def test_boto3_put_object_body_decodes(tls_server: tuple[_Server, Path], size: int) -> None:
    payload = hashlib.shake_256(str(size).encode()).digest(size)
    captured = _boto3_put(tls_server, payload)
    headers = dict(captured.headers)
    # What the HTTP front has to expect from botocore over TLS:
    assert headers[b"x-amz-content-sha256"] == b"STREAMING-UNSIGNED-PAYLOAD-TRAILER"
    assert headers[b"content-encoding"] == b"aws-chunked"
    assert headers[b"transfer-encoding"] == b"chunked"
    assert b"content-length" not in headers
    assert headers[b"x-amz-decoded-content-length"] == str(size).encode()
    assert headers[b"x-amz-trailer"] == b"x-amz-checksum-crc32"
    assert headers[b"x-amz-sdk-checksum-algorithm"] == b"CRC32"
    # botocore frames 1 MiB chunks, no extensions, CRLF after the trailer section.
    assert captured.body.endswith(b"\r\n\r\n")

    auth = Verifier({"AKIDWIRE": SECRET}.get).authenticate(
        captured.method, captured.path, captured.query, captured.headers
    )
    assert auth.streaming
    assert auth.expects_trailer
    assert auth.chunk_signing is None
    crc = base64.b64encode(zlib.crc32(payload).to_bytes(4, "big")).decode()
    for pieces in (1 << 30, 65536, 8191):
        data, trailers = decode(AwsChunkedDecoder(None, trailer=True), captured.body, pieces)
        assert data == payload
        assert trailers == {"x-amz-checksum-crc32": crc}


def test_boto3_upload_part_and_other_checksums(tls_server: tuple[_Server, Path]) -> None:
    payload = b"part data " * 1000
    captured = _boto3_put(tls_server, payload, PartNumber=3, UploadId="up/load+id")
    assert captured.query == b"partNumber=3&uploadId=up%2Fload%2Bid"
    Verifier({"AKIDWIRE": SECRET}.get).authenticate(
        captured.method, captured.path, captured.query, captured.headers
    )
    data, trailers = decode(AwsChunkedDecoder(None, trailer=True), captured.body, 100)
    assert data == payload
    assert list(trailers) == ["x-amz-checksum-crc32"]

    captured = _boto3_put(tls_server, payload, ChecksumAlgorithm="SHA256")
    data, trailers = decode(AwsChunkedDecoder(None, trailer=True), captured.body, 333)
    assert trailers == {
        "x-amz-checksum-sha256": base64.b64encode(hashlib.sha256(payload).digest()).decode()
    }


def test_boto3_body_fed_byte_by_byte(tls_server: tuple[_Server, Path]) -> None:
    captured = _boto3_put(tls_server, b"hello, aws-chunked")
    data, trailers = decode(AwsChunkedDecoder(None, trailer=True), captured.body, 1)
    assert data == b"hello, aws-chunked"
    assert "x-amz-checksum-crc32" in trailers


# -- property tests: any chunking, any split ------------------------------------------------

_chunks = st.lists(st.binary(min_size=1, max_size=300), max_size=6)
_trailers = st.lists(
    st.tuples(st.sampled_from(["x-amz-checksum-crc32", "x-amz-checksum-sha256", "x-amz-meta-a"]),
              st.text("abcXYZ0189+/= ", min_size=1, max_size=20).map(str.strip).filter(bool)),
    max_size=2, unique_by=lambda t: t[0],
)


@settings(max_examples=200, deadline=None)
@given(chunks=_chunks, trailers=st.one_of(st.none(), _trailers), data=st.data())
def test_signed_body_decodes_at_any_split(
    chunks: list[bytes], trailers: list[tuple[str, str]] | None, data: st.DataObject
) -> None:
    body = signed_body(CTX, chunks, trailers)
    cuts = data.draw(st.lists(st.integers(0, len(body)), max_size=8))
    decoded, got = decode(AwsChunkedDecoder(CTX, trailer=trailers is not None), body, cuts)
    assert decoded == b"".join(chunks)
    assert got == dict(trailers or [])


@settings(max_examples=200, deadline=None)
@given(chunks=_chunks, trailers=_trailers, data=st.data())
def test_unsigned_body_decodes_at_any_split(
    chunks: list[bytes], trailers: list[tuple[str, str]], data: st.DataObject
) -> None:
    body = unsigned_body(chunks, trailers)
    cuts = data.draw(st.lists(st.integers(0, len(body)), max_size=8))
    decoded, got = decode(AwsChunkedDecoder(None, trailer=True), body, cuts)
    assert decoded == b"".join(chunks)
    assert got == dict(trailers)


@settings(max_examples=300, deadline=None)
@given(body=st.one_of(
    st.binary(max_size=200),
    st.lists(st.sampled_from([b"0", b"1", b"a", b"ff", b"\r\n", b"\r", b"\n", b";", b"=",
                              b"chunk-signature", b"x-amz-trailer-signature:", b"x:y",
                              b"0" * 64, b"zz"]), max_size=25).map(b"".join),
), signed=st.booleans(), trailer=st.booleans())
def test_arbitrary_bodies_raise_only_s3_errors(body: bytes, signed: bool, trailer: bool) -> None:
    decoder = AwsChunkedDecoder(CTX if signed else None, trailer=trailer, max_chunk_size=1000)
    with contextlib.suppress(errors.S3Error):
        decoder.feed(body)
        decoder.finish()


# -- broken framing ------------------------------------------------------------------------


def test_every_truncation_is_incomplete() -> None:
    for body, ctx in ((signed_body(CTX, [b"abc", b"defgh"], [("x-amz-checksum-crc32", "x")]), CTX),
                      (unsigned_body([b"abc", b"defgh"], [("x-amz-checksum-crc32", "x")]), None)):
        for end in range(len(body)):
            decoder = AwsChunkedDecoder(ctx, trailer=True)
            decoder.feed(body[:end])
            with pytest.raises(errors.IncompleteBody):
                decoder.finish()


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"zz\r\nabc\r\n0\r\n\r\n", "not a hexadecimal"),
        (b"-3\r\nabc\r\n0\r\n\r\n", "not a hexadecimal"),
        (b" 3\r\nabc\r\n0\r\n\r\n", "not a hexadecimal"),
        (b"\r\nabc\r\n0\r\n\r\n", "not a hexadecimal"),
        (b"1" * 17 + b"\r\n", "not a hexadecimal"),
        (b"3\nabc\r\n0\r\n\r\n", "CRLF"),  # bare LF
        (b"3\r\nabcX\r\n0\r\n\r\n", "than its declared size"),
        (b"3\r\nab\r\n\r\n0\r\n\r\n", "than its declared size"),
        (b"3\r\nabc\r\n0\r\n\r\nextra", "continues after its final chunk"),
        (b"3\r\nabc\r\n0\r\n\r\n0\r\n\r\n", "continues after its final chunk"),
        (b"0\r\n\r\n0\r\nx-amz-checksum-crc32:AAAAAA==\r\n\r\n", "continues"),  # .NET's bug
        (b"0\r\nnot a header\r\n\r\n", "not 'name:value'"),
        (b"0\r\n:value\r\n\r\n", "not 'name:value'"),
        (b"10001\r\n", "exceeds the maximum chunk size"),
        (b"1" * 5000, "chunk header longer"),
    ],
)
def test_bad_framing(body: bytes, message: str) -> None:
    decoder = AwsChunkedDecoder(None, trailer=True, max_chunk_size=0x10000)
    with pytest.raises(errors.InvalidRequest, match=message):
        decoder.feed(body)
        decoder.finish()


def test_errors_are_sticky() -> None:
    decoder = AwsChunkedDecoder(None, trailer=True)
    with pytest.raises(errors.InvalidRequest):
        decoder.feed(b"zz\r\n")
    with pytest.raises(errors.InvalidRequest):
        decoder.feed(b"0\r\n\r\n")
    with pytest.raises(errors.InvalidRequest):
        decoder.finish()


def test_long_line_is_refused_without_buffering_it() -> None:
    decoder = AwsChunkedDecoder(None, trailer=True)
    decoder.feed(b"1" * 4000)  # still a plausible chunk header
    with pytest.raises(errors.InvalidRequest, match="chunk header longer"):
        decoder.feed(b"1" * 200)
    trailer = AwsChunkedDecoder(None, trailer=True)
    trailer.feed(b"0\r\n")
    with pytest.raises(errors.InvalidRequest, match="trailing headers exceed"):
        for _ in range(100):
            trailer.feed(b"x-amz-meta-a:" + b"v" * 1000 + b"\r\n")


def test_unsigned_chunk_extensions_are_tolerated() -> None:
    body = b"5;foo=bar;baz\r\nhello\r\n3;chunk-signature=" + b"0" * 64 + b"\r\n!!!\r\n0;x=y\r\n"
    body += b"X-Amz-Checksum-CRC32 :  AAAAAA==  \r\nx-amz-trailer-signature:ignored\r\n\r\n"
    data, trailers = decode(AwsChunkedDecoder(None, trailer=True), body)
    assert data == b"hello!!!"
    assert trailers == {"x-amz-checksum-crc32": "AAAAAA=="}


def test_unsigned_body_without_trailers() -> None:
    data, trailers = decode(AwsChunkedDecoder(None, trailer=True), b"3\r\nabc\r\n0\r\n\r\n")
    assert (data, trailers) == (b"abc", {})
    data, trailers = decode(AwsChunkedDecoder(None, trailer=False), b"3\r\nabc\r\n0\r\n\r\n")
    assert (data, trailers) == (b"abc", {})


def test_repeated_trailer_names_are_joined() -> None:
    body = unsigned_body([b"x"], [("x-amz-meta-a", "1"), ("x-amz-meta-a", "2")])
    assert decode(AwsChunkedDecoder(None, trailer=True), body)[1] == {"x-amz-meta-a": "1,2"}


def test_signed_mode_needs_chunk_signatures() -> None:
    with pytest.raises(errors.SignatureDoesNotMatch, match="no chunk-signature"):
        decode(AwsChunkedDecoder(CTX, trailer=False), b"3\r\nabc\r\n0\r\n\r\n")


def test_wrong_seed_or_key_is_refused() -> None:
    body = signed_body(CTX, [b"abc"])
    for ctx in (
        SigningContext(CTX.signing_key, CTX.amz_date, CTX.scope, "b" * 64),
        SigningContext(b"k" * 32, CTX.amz_date, CTX.scope, CTX.seed_signature),
        SigningContext(CTX.signing_key, "20261124T120001Z", CTX.scope, CTX.seed_signature),
    ):
        with pytest.raises(errors.SignatureDoesNotMatch) as info:
            decode(AwsChunkedDecoder(ctx, trailer=False), body)
        rendered = " ".join([str(info.value), *info.value.extra.values()])
        assert ctx.signing_key.hex() not in rendered
        assert SECRET not in rendered


def test_output_is_not_copied_more_than_needed() -> None:
    # A piece that lies wholly inside a chunk's data is handed back as is.
    decoder = AwsChunkedDecoder(None, trailer=True)
    decoder.feed(b"100000\r\n")
    piece = b"z" * 65536
    assert decoder.feed(piece) is piece


def test_throughput_64_mib_in_64_kib_pieces() -> None:
    """Not a timed assertion: prints MB/s for a 64 MiB body fed in 64 KiB pieces."""
    payload = b"\xa5" * (64 * 1024 * 1024)
    chunk = 1024 * 1024
    chunks = [payload[i : i + chunk] for i in range(0, len(payload), chunk)]
    for label, ctx, body in (
        ("unsigned", None, unsigned_body(chunks, [("x-amz-checksum-crc32", "AAAAAA==")])),
        ("signed", CTX, signed_body(CTX, chunks, [("x-amz-checksum-crc32", "AAAAAA==")])),
    ):
        decoder = AwsChunkedDecoder(ctx, trailer=True)
        view = memoryview(body)
        total = 0
        start = time.perf_counter()
        for offset in range(0, len(body), 65536):
            total += len(decoder.feed(bytes(view[offset : offset + 65536])))
        decoder.finish()
        elapsed = time.perf_counter() - start
        assert total == len(payload)
        print(f"aws-chunked {label}: {len(payload) / elapsed / 1e6:.0f} MB/s")
