"""Raw SigV4 signing and aws-chunked framing, against AWS's published example values."""

from __future__ import annotations

import datetime as dt
import hashlib

from hypothesis import given, settings
from hypothesis import strategies as st

from silverlining.core import rawhttp
from silverlining.core.checks._data import BLOCK, PatternStream, pattern_bytes
from silverlining.core.rawhttp import Credentials, RawResponse

# https://docs.aws.amazon.com/AmazonS3/latest/API/sigv4-streaming.html (example values)
EXAMPLE = Credentials("AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")


def test_streaming_signatures_match_the_aws_documentation_example() -> None:
    signed = rawhttp.sign(
        "PUT",
        "https://s3.amazonaws.com/examplebucket/chunkObject.txt",
        EXAMPLE,
        "us-east-1",
        headers={
            "Host": "s3.amazonaws.com",
            "x-amz-storage-class": "REDUCED_REDUNDANCY",
            "Content-Encoding": "aws-chunked",
            "x-amz-decoded-content-length": "66560",
            "Content-Length": "66824",
        },
        payload_hash=rawhttp.STREAMING_SIGNED,
        at=dt.datetime(2013, 5, 24),
    )
    assert signed.seed_signature == (
        "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9"
    )
    first = rawhttp.chunk_signature(signed, signed.seed_signature, b"a" * 65536)
    assert first == "ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648"
    second = rawhttp.chunk_signature(signed, first, b"a" * 1024)
    assert second == "0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497"
    final = rawhttp.chunk_signature(signed, second, b"")
    assert final == "b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9"
    body = rawhttp.signed_chunks(signed, [b"a" * 65536, b"a" * 1024])
    assert len(body) == 66824
    assert body.endswith(f"0;chunk-signature={final}\r\n\r\n".encode())


def test_signing_at_a_chosen_time_dates_the_request_then() -> None:
    at = dt.datetime(2020, 2, 29, 23, 59, 58)
    signed = rawhttp.sign("GET", "http://h:1/b/k", EXAMPLE, "eu-west-3", at=at)
    assert signed.headers["X-Amz-Date"] == "20200229T235958Z"
    assert (
        "Credential=AKIAIOSFODNN7EXAMPLE/20200229/eu-west-3/s3/aws4_request"
        in (signed.headers["Authorization"])
    )
    assert signed.headers["X-Amz-Content-SHA256"] == hashlib.sha256(b"").hexdigest()
    url = rawhttp.presign("GET", "http://h:1/b/k", EXAMPLE, "eu-west-3", expires=7, at=at)
    assert "X-Amz-Date=20200229T235958Z" in url and "X-Amz-Expires=7" in url


def test_trailer_framing() -> None:
    framed = rawhttp.unsigned_chunks_with_trailer(
        [b"abc", b"", b"de"], {"x-amz-checksum-crc32": "Q=="}
    )
    assert framed == b"3\r\nabc\r\n2\r\nde\r\n0\r\nx-amz-checksum-crc32:Q==\r\n\r\n"


def test_raw_response_error_code_and_description() -> None:
    body = b"<?xml version='1.0'?><Error><Code>NoSuchKey</Code><Message>m</Message></Error>"
    response = RawResponse(404, "Not Found", {}, body)
    assert response.error_code == "NoSuchKey"
    assert response.describe() == "HTTP 404 NoSuchKey"
    assert RawResponse(200, "OK", {}, b"<not xml").error_code is None
    assert RawResponse(200, "OK", {}, b"hi").describe() == "HTTP 200 (b'hi')"


def test_hostile_xml_is_not_expanded() -> None:
    bomb = (
        b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaaaaaaaa">'
        b'<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]><Error><Code>&b;</Code></Error>'
    )
    assert RawResponse(500, "", {}, bomb).error_code is None


@settings(max_examples=40, deadline=None)
@given(start=st.integers(0, 3 * BLOCK), length=st.integers(0, 2 * BLOCK + 5))
def test_pattern_stream_is_position_addressable(start: int, length: int) -> None:
    whole = pattern_bytes("seed", 0, start + length)
    assert pattern_bytes("seed", start, length) == whole[start:]


def test_pattern_stream_reads_seeks_and_reports_its_length() -> None:
    stream = PatternStream("s", 10 * BLOCK + 3)
    assert len(stream) == 10 * BLOCK + 3
    first = stream.read(BLOCK + 10)
    assert stream.tell() == BLOCK + 10
    stream.seek(0)
    assert stream.read(BLOCK + 10) == first
    assert stream.seek(0, 2) == 10 * BLOCK + 3
    assert stream.read(5) == b""
    assert pattern_bytes("s", 0, 100) != pattern_bytes("t", 0, 100)
    assert pattern_bytes("s", 0, 100) == pattern_bytes("s", 0, 100)


def test_evidence_never_carries_authorization_or_key_ids() -> None:
    from silverlining.core.evidence import last_request, record_request

    record_request(
        "GET",
        "/b/k?X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1&X-Amz-Expires=3",
        {
            "Authorization": "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/...",
            "X-Amz-Content-SHA256": hashlib.sha256(b"").hexdigest(),
            "Range": "bytes=0-9",
        },
    )
    line = last_request()
    assert "AKIAIOSFODNN7EXAMPLE" not in line
    assert line == (
        "GET /b/k?X-Amz-Credential=<access-key-id>%2F20130524%2Fus-east-1&X-Amz-Expires=3"
        " [Range: bytes=0-9]"
    )
