"""Incremental decoder for ``Content-Encoding: aws-chunked`` request bodies.

Framing (the chunk signature and the trailers appear only in the modes that have them)::

    <hex size>[;chunk-signature=<64 hex>]\\r\\n<size bytes>\\r\\n     (repeated)
    0[;chunk-signature=<64 hex>]\\r\\n
    [<name>:<value>\\r\\n ...][x-amz-trailer-signature:<64 hex>\\r\\n]
    \\r\\n

Signed chunks: https://docs.aws.amazon.com/AmazonS3/latest/API/sigv4-streaming.html
Trailers: https://docs.aws.amazon.com/AmazonS3/latest/API/sigv4-streaming-trailers.html

Each chunk's signature chains from the previous one, starting at the request's seed signature;
the trailer signature chains from the final (empty) chunk's. So a body that verifies was sent
whole and in order by the holder of the secret key.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import NoReturn

from silverlining.node.errors import (
    IncompleteBody,
    InvalidRequest,
    S3Error,
    SignatureDoesNotMatch,
)
from silverlining.node.protocol.sigv4 import EMPTY_SHA256, SigningContext, sign

__all__ = ["AwsChunkedDecoder"]

_HEX_DIGITS = b"0123456789abcdefABCDEF"
_MAX_CHUNK_HEADER = 4096  # a signed chunk header is ~85 bytes; extensions get some slack
_MAX_TRAILER_SECTION = 16 * 1024
_TRAILER_SIGNATURE = "x-amz-trailer-signature"

# Parser states. Every state but _DATA reads one CRLF-terminated line.
_HEADER = 0  # expecting "<hex size>[;ext]"
_DATA = 1  # inside a chunk's data
_DATA_END = 2  # expecting the empty line that ends a chunk's data
_TRAILER = 3  # after the final chunk: trailer lines until an empty one
_DONE = 4


class AwsChunkedDecoder:
    """Decodes one aws-chunked body fed to it in pieces of any size.

    ``signing`` is the request's :class:`SigningContext` for the signed streaming modes
    (every chunk signature is then verified) or ``None`` for unsigned chunks; ``trailer`` says
    whether trailing headers follow the final chunk (the ``...-TRAILER`` modes).

    Bytes returned by :meth:`feed` are those of chunks whose framing has been read but whose
    signature is checked only when the chunk ends; the body is authenticated and complete
    only once :meth:`finish` has returned, so do not commit the object before then.
    Memory held is one partial chunk header or trailer line, never chunk data.
    """

    def __init__(
        self,
        signing: SigningContext | None,
        *,
        trailer: bool,
        max_chunk_size: int = 64 * 1024 * 1024,
    ) -> None:
        self._signing = signing
        self._trailer = trailer
        self._max_chunk_size = max_chunk_size
        self._state = _HEADER
        self._line = bytearray()
        self._remaining = 0
        self._decoded = 0
        self._trailer_bytes = 0
        self._trailers: list[tuple[str, str]] = []
        self._trailer_signature: str | None = None
        self._error: S3Error | None = None
        self._hash = hashlib.sha256()
        self._chunk_signature = ""
        self._previous = self._payload_prefix = self._trailer_prefix = ""
        if signing is not None:
            self._previous = signing.seed_signature
            self._payload_prefix = (
                f"AWS4-HMAC-SHA256-PAYLOAD\n{signing.amz_date}\n{signing.scope}\n"
            )
            self._trailer_prefix = (
                f"AWS4-HMAC-SHA256-TRAILER\n{signing.amz_date}\n{signing.scope}\n"
            )

    @property
    def decoded_length(self) -> int:
        """Payload bytes returned by :meth:`feed` so far."""
        return self._decoded

    def feed(self, data: bytes) -> bytes:
        """Consume the next piece of the body; return the payload bytes it completes.

        Raises :class:`SignatureDoesNotMatch` for a chunk or trailer signature that does not
        verify, :class:`InvalidRequest` for bad framing. After an error, every call raises it.
        """
        if self._error is not None:
            raise self._error
        try:
            return self._feed(data)
        except S3Error as error:
            self._error = error
            raise

    def finish(self) -> dict[str, str]:
        """Declare the end of the body; return its trailing headers (lower-case names).

        Raises :class:`IncompleteBody` if the body stopped before its final chunk and
        terminating empty line.
        """
        if self._error is not None:
            raise self._error
        if self._state != _DONE:
            self._error = IncompleteBody(
                "The request body terminated unexpectedly: the aws-chunked body ended before "
                "its final zero-length chunk and terminating CRLF. Send the whole body."
            )
            raise self._error
        trailers: dict[str, str] = {}
        for name, value in self._trailers:
            trailers[name] = f"{trailers[name]},{value}" if name in trailers else value
        return trailers

    # -- parsing -----------------------------------------------------------------------------

    def _feed(self, data: bytes) -> bytes:
        view = memoryview(data)
        end = len(data)
        position = 0
        out: list[memoryview] = []
        while position < end:
            if self._state == _DATA:
                take = min(self._remaining, end - position)
                piece = view[position : position + take]
                if self._signing is not None:
                    self._hash.update(piece)
                out.append(piece)
                position += take
                self._remaining -= take
                self._decoded += take
                if self._remaining == 0:
                    self._end_of_data()
                continue
            if self._state == _DONE:
                raise InvalidRequest(
                    "The aws-chunked body continues after its final chunk and terminating CRLF."
                )
            # A line may take at most `room` more bytes, its CRLF included; never buffer more.
            room = self._line_limit() + 2 - len(self._line)
            newline = data.find(b"\n", position, position + room)
            if newline < 0:
                if end - position >= room:
                    self._line_too_long()
                self._line += view[position:]
                break
            self._line += view[position : newline + 1]
            position = newline + 1
            if len(self._line) < 2 or self._line[-2] != 0x0D:  # "\r"
                if self._state == _DATA_END:
                    self._line_too_long()
                raise InvalidRequest(
                    "Malformed aws-chunked body: a line is not terminated by CRLF."
                )
            line = bytes(self._line[:-2])
            self._line.clear()
            self._on_line(line)
        if not out:
            return b""
        if len(out) == 1:
            piece = out[0]
            return data if len(piece) == end else piece.tobytes()
        return b"".join(out)

    def _line_limit(self) -> int:
        if self._state == _DATA_END:
            return 0
        if self._state == _TRAILER:
            return _MAX_TRAILER_SECTION - self._trailer_bytes
        return _MAX_CHUNK_HEADER

    def _line_too_long(self) -> NoReturn:
        if self._state == _DATA_END:
            raise InvalidRequest(
                "Malformed aws-chunked body: chunk data is not followed by CRLF; the chunk is "
                "longer or shorter than its declared size."
            )
        if self._state == _TRAILER:
            raise InvalidRequest(
                f"The aws-chunked trailing headers exceed {_MAX_TRAILER_SECTION} bytes."
            )
        raise InvalidRequest(
            f"Malformed aws-chunked body: chunk header longer than {_MAX_CHUNK_HEADER} bytes "
            "without CRLF."
        )

    def _on_line(self, line: bytes) -> None:
        if self._state == _HEADER:
            self._on_chunk_header(line)
        elif self._state == _DATA_END:
            if line:
                self._line_too_long()
            self._state = _HEADER
        else:
            self._on_trailer_line(line)

    def _on_chunk_header(self, line: bytes) -> None:
        size_field, _, extensions = line.partition(b";")
        if not size_field or len(size_field) > 16 or size_field.strip(_HEX_DIGITS):
            raise InvalidRequest(
                "Malformed aws-chunked body: chunk size "
                f"{size_field[:32].decode('latin-1')!r} is not a hexadecimal number."
            )
        size = int(size_field, 16)
        if size > self._max_chunk_size:
            raise InvalidRequest(
                f"aws-chunked chunk of {size} bytes exceeds the maximum chunk size of "
                f"{self._max_chunk_size} bytes; send smaller chunks."
            )
        if self._signing is not None:
            self._chunk_signature = _chunk_signature(extensions)
        # Other chunk extensions carry nothing we need; they are ignored as HTTP/1.1 allows.
        if size:
            self._state = _DATA
            self._remaining = size
            if self._signing is not None:
                self._hash = hashlib.sha256()
        else:
            if self._signing is not None:
                self._verify_chunk(EMPTY_SHA256)
            self._state = _TRAILER

    def _end_of_data(self) -> None:
        if self._signing is not None:
            self._verify_chunk(self._hash.hexdigest())
        self._state = _DATA_END

    def _verify_chunk(self, data_sha256: str) -> None:
        assert self._signing is not None
        string_to_sign = (
            f"{self._payload_prefix}{self._previous}\n{EMPTY_SHA256}\n{data_sha256}"
        )
        expected = sign(self._signing.signing_key, string_to_sign)
        provided = self._chunk_signature.encode("latin-1")
        if not hmac.compare_digest(expected.encode(), provided):
            raise SignatureDoesNotMatch(
                "The chunk signature does not match: the body was altered or not signed with "
                "the request's credentials.",
                StringToSign=string_to_sign,
                SignatureProvided=self._chunk_signature,
            )
        self._previous = expected

    def _on_trailer_line(self, line: bytes) -> None:
        self._trailer_bytes += len(line) + 2
        if not line:
            self._end_of_trailers()
            return
        if not self._trailer:
            raise InvalidRequest(
                "Malformed aws-chunked body: trailing headers were sent but the request did "
                "not declare them (x-amz-content-sha256 is not a ...-TRAILER mode)."
            )
        name_bytes, colon, value_bytes = line.partition(b":")
        name = name_bytes.decode("latin-1").strip().lower()
        if not colon or not name:
            raise InvalidRequest(
                "Malformed aws-chunked body: trailing header line "
                f"{line[:64].decode('latin-1')!r} is not 'name:value'."
            )
        value = value_bytes.decode("latin-1").strip()
        if self._trailer_signature is not None:
            raise InvalidRequest(
                "Malformed aws-chunked body: trailing headers follow x-amz-trailer-signature."
            )
        if name == _TRAILER_SIGNATURE:
            if self._signing is not None:
                self._trailer_signature = value
            # Unsigned trailers carry nothing to check it against; it is not a header.
            return
        self._trailers.append((name, value))

    def _end_of_trailers(self) -> None:
        if self._signing is not None and self._trailer:
            if self._trailer_signature is None:
                raise SignatureDoesNotMatch(
                    "The aws-chunked trailer has no x-amz-trailer-signature; a "
                    "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER body must sign its trailers."
                )
            # Trailers are canonicalised like signed headers: "name:value\n", sorted by name.
            canonical = "".join(f"{n}:{' '.join(v.split())}\n" for n, v in sorted(self._trailers))
            digest = hashlib.sha256(canonical.encode("latin-1")).hexdigest()
            string_to_sign = f"{self._trailer_prefix}{self._previous}\n{digest}"
            expected = sign(self._signing.signing_key, string_to_sign).encode()
            if not hmac.compare_digest(expected, self._trailer_signature.encode("latin-1")):
                raise SignatureDoesNotMatch(
                    "The trailer signature does not match: the trailing headers were altered "
                    "or not signed with the request's credentials.",
                    StringToSign=string_to_sign,
                    SignatureProvided=self._trailer_signature,
                )
        self._state = _DONE


def _chunk_signature(extensions: bytes) -> str:
    for extension in extensions.split(b";"):
        name, _, value = extension.partition(b"=")
        if name.strip() == b"chunk-signature":
            return value.strip().decode("latin-1")
    raise SignatureDoesNotMatch(
        "An aws-chunked chunk has no chunk-signature, but the request's x-amz-content-sha256 "
        "says every chunk is signed."
    )
