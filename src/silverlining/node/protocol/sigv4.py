"""AWS Signature Version 4 verification, server side.

:class:`Verifier` turns a request as an ASGI server sees it (method, raw path, raw query, header
byte pairs) into an :class:`Authenticated` principal, or raises the S3 error AWS would raise.
Header authentication (``Authorization: AWS4-HMAC-SHA256 ...``) and presigned query
authentication (``X-Amz-Algorithm=...``) are supported; anonymous requests are refused.

The spec is https://docs.aws.amazon.com/AmazonS3/latest/API/sig-v4-authenticating-requests.html;
the reference signer is botocore (``S3SigV4Auth`` / ``S3SigV4QueryAuth``). Where the two differ
on a detail, the comment at that spot says which one is followed and why.

This is on every request's path, so it avoids regular expressions, ``strptime`` and repeated
key derivation (signing keys are cached per secret, day, region and service).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import hmac
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import NamedTuple
from urllib.parse import quote_from_bytes, unquote, unquote_to_bytes

from silverlining.node.errors import (
    AccessDenied,
    AuthorizationHeaderMalformed,
    AuthorizationQueryParametersError,
    InvalidAccessKeyId,
    InvalidArgument,
    InvalidRequest,
    RequestTimeTooSkewed,
    S3Error,
    SignatureDoesNotMatch,
)

__all__ = [
    "ALGORITHM",
    "EMPTY_SHA256",
    "STREAMING_PAYLOAD",
    "STREAMING_PAYLOAD_TRAILER",
    "STREAMING_UNSIGNED_PAYLOAD_TRAILER",
    "UNSIGNED_PAYLOAD",
    "Authenticated",
    "SecretLookup",
    "SigningContext",
    "Verifier",
    "derive_signing_key",
    "sign",
]

SecretLookup = Callable[[str], str | None]
"""Access key id -> secret access key; ``None`` if the key is unknown or revoked."""

ALGORITHM = "AWS4-HMAC-SHA256"
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
STREAMING_PAYLOAD = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
STREAMING_PAYLOAD_TRAILER = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER"
STREAMING_UNSIGNED_PAYLOAD_TRAILER = "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()

# x-amz-content-sha256 sentinels -> (streaming, chunks are signed, trailer follows the chunks).
# https://docs.aws.amazon.com/AmazonS3/latest/API/sigv4-auth-using-authorization-header.html
_PAYLOAD_MODES: dict[str, tuple[bool, bool, bool]] = {
    UNSIGNED_PAYLOAD: (False, False, False),
    STREAMING_PAYLOAD: (True, True, False),
    STREAMING_PAYLOAD_TRAILER: (True, True, True),
    STREAMING_UNSIGNED_PAYLOAD_TRAILER: (True, False, True),
}
_HEX_DIGITS = "0123456789abcdefABCDEF"
_UNRESERVED = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.~"
_SIGNING_KEY_CACHE_SIZE = 1024
_AMZ_DATE_FORMAT = "%Y%m%dT%H%M%SZ"

# Query parameters whose presence means "this is a presigned URL".
_PRESIGN_MARKERS = frozenset({"X-Amz-Algorithm", "X-Amz-Credential", "X-Amz-Signature"})
_V2_PRESIGN_MARKERS = frozenset({"AWSAccessKeyId", "Signature"})
_PRESIGN_REQUIRED = (
    "X-Amz-Algorithm",
    "X-Amz-Credential",
    "X-Amz-Date",
    "X-Amz-Expires",
    "X-Amz-SignedHeaders",
    "X-Amz-Signature",
)

_AUTHORIZATION_FIELDS = ("Credential", "SignedHeaders", "Signature")
_UNSUPPORTED_MECHANISM = (
    "The authorization mechanism you have provided is not supported. "
    "Please use AWS4-HMAC-SHA256 (AWS Signature Version 4)."
)
_CREDENTIAL_FORMAT = 'expecting "<YOUR-AKID>/YYYYMMDD/REGION/SERVICE/aws4_request"'


@dataclass(frozen=True, slots=True)
class SigningContext:
    """What the aws-chunked decoder needs to verify chunk and trailer signatures."""

    signing_key: bytes
    amz_date: str  # "YYYYMMDDTHHMMSSZ" of the request
    scope: str  # "20261124/us-east-1/s3/aws4_request"
    seed_signature: str  # the request's own signature (lower-case hex)

    def __repr__(self) -> str:  # never print the key
        return f"SigningContext(amz_date={self.amz_date!r}, scope={self.scope!r})"


@dataclass(frozen=True, slots=True)
class Authenticated:
    """A request whose signature verified.

    ``content_sha256`` is the lower-case hex digest the body must hash to (signed payload);
    it is ``None`` for ``UNSIGNED-PAYLOAD`` and for every streaming mode, where the body is
    aws-chunked and, if ``chunk_signing`` is set, every chunk carries its own signature.
    """

    access_key_id: str
    region: str
    service: str
    content_sha256: str | None
    streaming: bool
    chunk_signing: SigningContext | None
    expects_trailer: bool
    presigned: bool


def derive_signing_key(secret: str, date: str, region: str, service: str) -> bytes:
    """The SigV4 signing key for ``date`` ("YYYYMMDD"), ``region`` and ``service``."""
    key = hmac.digest(f"AWS4{secret}".encode(), date.encode(), "sha256")
    key = hmac.digest(key, region.encode(), "sha256")
    key = hmac.digest(key, service.encode(), "sha256")
    return hmac.digest(key, b"aws4_request", "sha256")


def sign(signing_key: bytes, string_to_sign: str) -> str:
    """Hex HMAC-SHA256 of ``string_to_sign`` under ``signing_key``."""
    return hmac.digest(signing_key, string_to_sign.encode(), "sha256").hex()


class Verifier:
    """Verifies SigV4-signed requests against secrets from ``lookup``.

    ``max_skew_seconds`` bounds the difference between a header-signed request's date and
    ``clock()``, and how far in the future a presigned URL's X-Amz-Date may be.
    ``max_presign_expires`` bounds X-Amz-Expires. Safe to share between threads.
    """

    def __init__(
        self,
        lookup: SecretLookup,
        *,
        max_skew_seconds: int = 900,
        max_presign_expires: int = 604800,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._lookup = lookup
        self._max_skew = max_skew_seconds
        self._max_expires = max_presign_expires
        self._clock = clock
        self._keys: dict[tuple[str, str, str, str], bytes] = {}

    def authenticate(
        self,
        method: str,
        raw_path: bytes,
        query_string: bytes,
        headers: Sequence[tuple[bytes, bytes]],
    ) -> Authenticated:
        """Return who signed the request, or raise the :class:`S3Error` AWS would.

        ``raw_path`` and ``query_string`` are ASGI's (percent-encoded as on the wire);
        ``headers`` are ASGI's (lower-case name, value) pairs, names possibly repeated.
        On return the request's signature has verified; the body has not been looked at.
        """
        hdrs = _header_map(headers)
        query = _parse_query(query_string) if query_string else []
        markers = {name for name, _ in query if name in _PRESIGN_MARKERS}
        authorization = hdrs.get("authorization")
        if authorization is not None:
            if markers:
                raise InvalidArgument(
                    "Only one auth mechanism allowed; only the X-Amz-Algorithm query "
                    "parameter or the Authorization header should be specified.",
                    ArgumentName="Authorization",
                )
            claim = self._claim_from_header(hdrs, authorization)
        elif markers:
            claim = self._claim_from_query(query, hdrs)
        else:
            if any(name in _V2_PRESIGN_MARKERS for name, _ in query):
                raise InvalidRequest(_UNSUPPORTED_MECHANISM)
            raise AccessDenied(
                "Anonymous requests are not allowed. Sign the request with AWS Signature "
                "Version 4 using an access key issued by this node."
            )
        return self._verify(method, raw_path, query_string, query, hdrs, claim)

    # -- the two ways a request states its signature ------------------------------------------

    def _claim_from_header(self, hdrs: dict[str, str], authorization: str) -> _Claim:
        credential, signed_headers, signature = _parse_authorization(authorization)
        akid, date, region, service = _parse_credential(credential, AuthorizationHeaderMalformed)
        payload = hdrs.get("x-amz-content-sha256")
        if payload is None:
            # botocore sends it on every S3 request; without it the payload hash would have to
            # come from the body, which this verifier never sees.
            raise InvalidRequest(
                "Missing required header for this request: x-amz-content-sha256"
            )
        mode = _payload_mode(payload)
        amz_date = hdrs.get("x-amz-date")
        if amz_date is not None:
            when = _parse_amz_date(amz_date)
        else:
            when, amz_date = _parse_http_date(hdrs.get("date"))
        if when is None:
            raise AccessDenied("AWS authentication requires a valid Date or x-amz-date header")
        if date != amz_date[:8]:
            raise AuthorizationHeaderMalformed(
                f"The authorization header is malformed; invalid credential date {date!r}: "
                "it is not the same as X-Amz-Date."
            )
        now = self._clock()
        if abs(now - when) > self._max_skew:
            raise RequestTimeTooSkewed(
                RequestTime=amz_date,
                ServerTime=_format_amz_date(now),
                MaxAllowedSkewMilliseconds=str(self._max_skew * 1000),
            )
        names = _signed_header_names(signed_headers, hdrs, AuthorizationHeaderMalformed)
        return _Claim(
            akid, date, region, service, amz_date, signed_headers, names, payload, mode,
            signature, presigned=False,
        )

    def _claim_from_query(self, query: list[tuple[str, str]], hdrs: dict[str, str]) -> _Claim:
        params = {name: unquote(value) for name, value in query if name.startswith("X-Amz-")}
        algorithm = params.get("X-Amz-Algorithm")
        if algorithm is not None and algorithm != ALGORITHM:
            raise InvalidRequest(_UNSUPPORTED_MECHANISM)
        if any(name not in params for name in _PRESIGN_REQUIRED):
            raise AuthorizationQueryParametersError(
                "Query-string authentication version 4 requires the X-Amz-Algorithm, "
                "X-Amz-Credential, X-Amz-Signature, X-Amz-Date, X-Amz-SignedHeaders, "
                "and X-Amz-Expires parameters."
            )
        akid, date, region, service = _parse_credential(
            params["X-Amz-Credential"], AuthorizationQueryParametersError
        )
        amz_date = params["X-Amz-Date"]
        when = _parse_amz_date(amz_date)
        if when is None:
            raise AuthorizationQueryParametersError(
                "X-Amz-Date must be in the ISO8601 Long Format \"yyyyMMdd'T'HHmmss'Z'\""
            )
        if date != amz_date[:8]:
            raise AuthorizationQueryParametersError(
                f"Invalid credential date {date!r}: it is not the same as X-Amz-Date."
            )
        expires_text = params["X-Amz-Expires"]
        expires = int(expires_text) if expires_text.isascii() and expires_text.isdigit() else 0
        if expires < 1 or expires > self._max_expires:
            raise AuthorizationQueryParametersError(
                f"X-Amz-Expires must be a number of seconds from 1 to {self._max_expires}, "
                f"not {expires_text[:32]!r}; presign the URL again with a valid expiry."
            )
        now = self._clock()
        if when - now > self._max_skew:
            raise AccessDenied(
                "Request is not valid yet",
                ServerTime=_format_amz_date(now),
                **{"X-Amz-Date": amz_date},
            )
        if now > when + expires:
            raise AccessDenied(
                "Request has expired",
                ServerTime=_format_amz_date(now),
                Expires=_format_amz_date(when + expires),
                **{"X-Amz-Expires": str(expires)},
            )
        signed_headers = params["X-Amz-SignedHeaders"]
        names = _signed_header_names(signed_headers, hdrs, AuthorizationQueryParametersError)
        # A presigned URL says nothing about its body, so the payload is UNSIGNED-PAYLOAD
        # unless the signer pinned a hash in the query or in a signed header.
        payload = params.get("X-Amz-Content-Sha256")
        if payload is None and "x-amz-content-sha256" in names:
            payload = hdrs.get("x-amz-content-sha256")
        if payload is None:
            payload = UNSIGNED_PAYLOAD
        return _Claim(
            akid, date, region, service, amz_date, signed_headers, names, payload,
            _payload_mode(payload), params["X-Amz-Signature"], presigned=True,
        )

    # -- checking the claim ------------------------------------------------------------------

    def _verify(
        self,
        method: str,
        raw_path: bytes,
        query_string: bytes,
        query: list[tuple[str, str]],
        hdrs: dict[str, str],
        claim: _Claim,
    ) -> Authenticated:
        key = self._signing_key(claim)
        scope = f"{claim.date}/{claim.region}/{claim.service}/aws4_request"
        if claim.presigned:
            query = [pair for pair in query if pair[0] != "X-Amz-Signature"]
        canonical_query = "&".join([f"{n}={v}" for n, v in sorted(query)]) if query else ""
        canonical_headers = "".join([f"{n}:{_trim(hdrs.get(n, ''))}\n" for n in claim.names])
        rest = f"{canonical_headers}\n{claim.signed_headers}\n{claim.payload}"
        # S3 signs the path exactly as sent (botocore's S3SigV4Auth does not normalise it).
        path = raw_path.decode("utf-8", "surrogateescape") or "/"
        canonical_request = f"{method}\n{path}\n{canonical_query}\n{rest}"
        string_to_sign = _string_to_sign(claim.amz_date, scope, canonical_request)
        provided = claim.signature.encode("utf-8", "surrogateescape")
        signature = sign(key, string_to_sign)
        if not hmac.compare_digest(signature.encode(), provided):
            # Accept two lenient forms, computed only on a mismatch: a path sent with
            # characters such as '!' or UTF-8 unencoded but signed in its canonical
            # URI-encoding, and a query signed as sent without re-encoding (what botocore
            # does for a query already in the URL, e.g. a raw '/' in a value).
            canonical_path = quote_from_bytes(unquote_to_bytes(raw_path), safe="/") or "/"
            sent_query = _query_as_sent(query_string, claim.presigned)
            for alt_path, alt_query in (
                (canonical_path, canonical_query),
                (path, sent_query),
                (canonical_path, sent_query),
            ):
                if alt_path == path and alt_query == canonical_query:
                    continue
                alt = f"{method}\n{alt_path}\n{alt_query}\n{rest}"
                signature = sign(key, _string_to_sign(claim.amz_date, scope, alt))
                if hmac.compare_digest(signature.encode(), provided):
                    break
            else:
                raise SignatureDoesNotMatch(
                    AWSAccessKeyId=claim.access_key_id,
                    SignatureProvided=claim.signature,
                    StringToSign=string_to_sign,
                    CanonicalRequest=canonical_request,
                )
        streaming, chunk_signed, trailer = claim.mode
        return Authenticated(
            access_key_id=claim.access_key_id,
            region=claim.region,
            service=claim.service,
            content_sha256=None if claim.payload in _PAYLOAD_MODES else claim.payload.lower(),
            streaming=streaming,
            chunk_signing=(
                SigningContext(key, claim.amz_date, scope, signature) if chunk_signed else None
            ),
            expects_trailer=trailer,
            presigned=claim.presigned,
        )

    def _signing_key(self, claim: _Claim) -> bytes:
        secret = self._lookup(claim.access_key_id)
        if secret is None:
            raise InvalidAccessKeyId(AWSAccessKeyId=claim.access_key_id)
        cache_key = (secret, claim.date, claim.region, claim.service)
        key = self._keys.get(cache_key)
        if key is None:
            key = derive_signing_key(*cache_key)
            if len(self._keys) >= _SIGNING_KEY_CACHE_SIZE:
                # Evict the oldest entry; another thread may have got there first.
                with contextlib.suppress(KeyError, RuntimeError, StopIteration):
                    del self._keys[next(iter(self._keys))]
            self._keys[cache_key] = key
        return key


class _Claim(NamedTuple):  # a NamedTuple: built on every request, 5x cheaper than a dataclass
    """What a request states about its own signature, from its header or its query."""

    access_key_id: str
    date: str  # YYYYMMDD of the credential scope
    region: str
    service: str
    amz_date: str  # YYYYMMDDTHHMMSSZ
    signed_headers: str  # as sent, e.g. "host;x-amz-content-sha256;x-amz-date"
    names: list[str]  # signed_headers split
    payload: str  # the payload line of the canonical request
    mode: tuple[bool, bool, bool]  # (streaming, chunks signed, trailer follows)
    signature: str
    presigned: bool


def _string_to_sign(amz_date: str, scope: str, canonical_request: str) -> str:
    digest = hashlib.sha256(canonical_request.encode("utf-8", "surrogateescape")).hexdigest()
    return f"{ALGORITHM}\n{amz_date}\n{scope}\n{digest}"


def _header_map(headers: Sequence[tuple[bytes, bytes]]) -> dict[str, str]:
    """Header name -> value, repeated headers joined with ',' as SigV4 canonicalises them.

    Values are decoded as latin-1, which round-trips any byte and matches http.client (and so
    botocore), which encodes header values as latin-1 on the wire but signs their UTF-8.
    """
    hdrs: dict[str, str] = {}
    for raw_name, raw_value in headers:
        name = raw_name.decode("latin-1")
        value = raw_value.decode("latin-1")
        previous = hdrs.get(name)
        hdrs[name] = value if previous is None else f"{_trim(previous)},{_trim(value)}"
    return hdrs


def _trim(value: str) -> str:
    # SigV4 "Trimall": strip, and collapse runs of whitespace to one space; the same
    # expression botocore uses, so both agree on every character str.split() treats as space.
    return " ".join(value.split())


def _parse_query(query_string: bytes) -> list[tuple[str, str]]:
    """Raw query -> (name, value) pairs, each percent-decoded then URI-encoded per SigV4.

    '+' is not a space here: botocore encodes spaces as %20 and signs '+' as %2B, so a
    literal '+' on the wire is a '+'. A parameter without '=' has an empty value.
    """
    pairs = []
    for token in query_string.split(b"&"):
        if token:
            name, _, value = token.partition(b"=")
            pairs.append((_uri_encode(name), _uri_encode(value)))
    return pairs


def _query_as_sent(query_string: bytes, presigned: bool) -> str:
    """The query's parameters sorted but not re-encoded, as botocore signs a URL's query."""
    pairs = []
    for token in query_string.decode("utf-8", "surrogateescape").split("&"):
        if token:
            name, _, value = token.partition("=")
            if not (presigned and name == "X-Amz-Signature"):
                pairs.append((name, value))
    return "&".join([f"{n}={v}" for n, v in sorted(pairs)])


def _uri_encode(raw: bytes) -> str:
    if not raw.translate(None, _UNRESERVED):  # nothing to decode or encode: the common case
        return raw.decode("ascii")
    return _reencode(raw)


@functools.lru_cache(maxsize=1024)
def _reencode(raw: bytes) -> str:
    # Unreserved characters (A-Za-z0-9-_.~) are always safe in quote_from_bytes.
    return quote_from_bytes(unquote_to_bytes(raw), safe="")


def _parse_authorization(value: str) -> tuple[str, str, str]:
    """``AWS4-HMAC-SHA256 Credential=.., SignedHeaders=.., Signature=..`` -> its three parts."""
    algorithm, _, rest = value.strip().partition(" ")
    if algorithm != ALGORITHM:
        if algorithm.startswith(ALGORITHM):  # e.g. "AWS4-HMAC-SHA256,Credential=..."
            raise AuthorizationHeaderMalformed(
                "The authorization header is malformed; a space must follow AWS4-HMAC-SHA256."
            )
        raise InvalidRequest(_UNSUPPORTED_MECHANISM)
    fields: dict[str, str] = {}
    for component in rest.split(","):
        name, eq, field = component.strip().partition("=")
        if not eq or name not in _AUTHORIZATION_FIELDS or name in fields:
            raise AuthorizationHeaderMalformed(
                "The authorization header is malformed; the authorization component "
                f"{component.strip()[:64]!r} is malformed. Expected "
                "'AWS4-HMAC-SHA256 Credential=..., SignedHeaders=..., Signature=...'."
            )
        fields[name] = field
    if len(fields) != 3:
        missing = ", ".join(n for n in _AUTHORIZATION_FIELDS if n not in fields)
        raise AuthorizationHeaderMalformed(
            f"The authorization header is malformed; it is missing {missing}."
        )
    return fields["Credential"], fields["SignedHeaders"], fields["Signature"]


def _parse_credential(
    credential: str, error: type[S3Error]
) -> tuple[str, str, str, str]:
    """``AKID/YYYYMMDD/region/service/aws4_request`` -> (akid, date, region, service)."""
    parts = credential.split("/")
    if (
        len(parts) != 5
        or parts[4] != "aws4_request"
        or not all(parts[:4])
        or len(parts[1]) != 8
        or not (parts[1].isascii() and parts[1].isdigit())
    ):
        if error is AuthorizationHeaderMalformed:
            message = "The authorization header is malformed; the Credential is mal-formed; "
        else:
            message = "Error parsing the X-Amz-Credential parameter; the Credential is mal-formed; "
        raise error(message + _CREDENTIAL_FORMAT + ".")
    return parts[0], parts[1], parts[2], parts[3]


def _signed_header_names(
    signed_headers: str, hdrs: dict[str, str], error: type[S3Error]
) -> list[str]:
    """Split SignedHeaders; insist that host is signed and that no x-amz-* header is not."""
    names = signed_headers.split(";")
    if "host" not in names:
        where = "SignedHeaders" if error is AuthorizationHeaderMalformed else "X-Amz-SignedHeaders"
        raise error(f"{where} must include 'host'; sign the Host header.")
    signed = set(names)
    unsigned = [n for n in hdrs if n.startswith("x-amz-") and n not in signed]
    if unsigned:
        # As S3 does: x-amz-* headers change what a request means, so they must be signed.
        raise AccessDenied(
            "There were headers present in the request which were not signed",
            HeadersNotSigned=", ".join(unsigned),
        )
    return names


def _payload_mode(payload: str) -> tuple[bool, bool, bool]:
    mode = _PAYLOAD_MODES.get(payload)
    if mode is not None:
        return mode
    if len(payload) == 64 and not payload.strip(_HEX_DIGITS):
        return False, False, False
    raise InvalidArgument(
        "x-amz-content-sha256 must be the hex SHA-256 of the payload, UNSIGNED-PAYLOAD, "
        f"{STREAMING_PAYLOAD}, {STREAMING_PAYLOAD_TRAILER} or "
        f"{STREAMING_UNSIGNED_PAYLOAD_TRAILER}.",
        ArgumentName="x-amz-content-sha256",
        ArgumentValue=payload[:80],
    )


@functools.lru_cache(maxsize=64)  # consecutive requests mostly share their second
def _parse_amz_date(value: str) -> float | None:
    """``YYYYMMDDTHHMMSSZ`` -> POSIX seconds, or ``None`` if it is not one."""
    if len(value) != 16 or value[8] != "T" or value[15] != "Z":
        return None
    digits = value[:8] + value[9:15]
    if not (digits.isascii() and digits.isdigit()):
        return None
    try:
        moment = datetime(
            int(value[0:4]), int(value[4:6]), int(value[6:8]),
            int(value[9:11]), int(value[11:13]), int(value[13:15]), tzinfo=UTC,
        )
    except ValueError:
        return None
    return moment.timestamp()


def _parse_http_date(value: str | None) -> tuple[float | None, str]:
    """An RFC 1123 ``Date`` header -> (POSIX seconds, ``YYYYMMDDTHHMMSSZ``)."""
    if value is None:
        return None, ""
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None, ""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    moment = moment.astimezone(UTC)
    return moment.timestamp(), moment.strftime(_AMZ_DATE_FORMAT)


def _format_amz_date(when: float) -> str:
    return time.strftime(_AMZ_DATE_FORMAT, time.gmtime(when))
