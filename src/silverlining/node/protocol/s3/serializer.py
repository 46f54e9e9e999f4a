"""Renders S3 operation results as wire responses, driven by botocore's S3 service model.

Handlers return plain dicts keyed by the model's member names (``{"ETag": ..., "Metadata":
{...}}``); this module alone decides which member is a header, which is XML and how each type
is written. The same model is what boto3 parses our responses with, so they agree by
construction.
"""

from __future__ import annotations

import datetime as dt
import functools
import math
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from email.utils import formatdate
from typing import Any
from xml.sax.saxutils import escape as _sax_escape

import botocore.session

S3_NS = "http://s3.amazonaws.com/doc/2006-03-01/"
XML_DECL = b'<?xml version="1.0" encoding="UTF-8"?>\n'

#: Root element of operations whose output is a bare structure (the model does not name it).
_ROOTS = {
    "ListBuckets": "ListAllMyBucketsResult",
    "ListObjects": "ListBucketResult",
    "ListObjectsV2": "ListBucketResult",
    "GetBucketLocation": "LocationConstraint",
    "DeleteObjects": "DeleteResult",
    "GetObjectTagging": "Tagging",
    "CreateMultipartUpload": "InitiateMultipartUploadResult",
    "CompleteMultipartUpload": "CompleteMultipartUploadResult",
    "ListParts": "ListPartsResult",
    "ListMultipartUploads": "ListMultipartUploadsResult",
    "GetBucketVersioning": "VersioningConfiguration",
    "GetBucketAcl": "AccessControlPolicy",
    "GetObjectAcl": "AccessControlPolicy",
    "GetBucketRequestPayment": "RequestPaymentConfiguration",
    "GetBucketLogging": "BucketLoggingStatus",
    "GetBucketAccelerateConfiguration": "AccelerateConfiguration",
    "GetBucketNotificationConfiguration": "NotificationConfiguration",
}


#: Characters XML 1.0 cannot carry at all (not even as character references).
_INVALID_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
#: ...and those it carries only escaped: text without any of these is written as is.
_NEEDS_ESCAPE = re.compile("[&<>\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def escape(text: str) -> str:
    """XML-escape; characters XML 1.0 forbids become character references, as S3 writes
    them (clients that must read such keys ask for ``encoding-type=url``)."""
    if _NEEDS_ESCAPE.search(text) is None:  # most keys: one scan, no copies
        return text
    out = _sax_escape(text)
    if _INVALID_XML.search(out):
        out = _INVALID_XML.sub(lambda m: f"&#x{ord(m.group()):X};", out)
    return out


def _plain(text: str) -> str:
    """Escape for free text (messages, resources): forbidden characters become U+FFFD so
    any XML parser can read an error."""
    return _sax_escape(_INVALID_XML.sub("\ufffd", text))


@dataclass(frozen=True, slots=True)
class Rendered:
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes


@dataclass(frozen=True, slots=True)
class _HeaderMember:
    member: str
    header: bytes
    type_name: str
    prefix: bool  # location "headers": a map rendered as prefix + key


class _OperationPlan:
    """What the model says about one operation's output, precomputed."""

    def __init__(self, op_model: Any) -> None:
        self.name: str = op_model.name
        shape = op_model.output_shape
        self.default_status = int(op_model.http.get("responseCode", 200))
        self.headers: list[_HeaderMember] = []
        self.status_member: str | None = None
        self.body_members: list[tuple[str, Any]] = []
        self.payload_member: str | None = None
        self.payload_shape: Any = None
        if shape is None:
            return
        payload = shape.serialization.get("payload")
        for name, member in shape.members.items():
            loc = member.serialization.get("location")
            if loc == "header":
                self.headers.append(_HeaderMember(
                    name, member.serialization["name"].lower().encode(), member.type_name, False))
            elif loc == "headers":
                self.headers.append(_HeaderMember(
                    name, member.serialization.get("name", "").lower().encode(),
                    member.type_name, True))
            elif loc == "statusCode":
                self.status_member = name
            elif name == payload:
                self.payload_member, self.payload_shape = name, member
            elif loc is None:
                self.body_members.append((name, member))


class S3Serializer:
    def __init__(self) -> None:
        model = botocore.session.get_session().get_service_model("s3")
        self._plans = {op: _OperationPlan(model.operation_model(op))
                       for op in model.operation_names}

    def render(self, operation: str, result: Mapping[str, Any]) -> Rendered:
        """Status, headers and (non-streaming) body for ``result``.

        A streaming payload (GetObject's Body) is not rendered; the caller streams it.
        """
        plan = self._plans[operation]
        status = plan.default_status
        if plan.status_member and result.get(plan.status_member) is not None:
            status = int(result[plan.status_member])
        headers = self.headers(plan, result)
        body = b""
        if plan.payload_member is not None:
            shape = plan.payload_shape
            value = result.get(plan.payload_member)
            if shape.type_name == "structure" and value is not None:
                root = shape.serialization.get("name", shape.name)
                body = XML_DECL + _element(root, shape, value, ns=True).encode()
        elif plan.body_members:
            body = XML_DECL + self._body(plan, result).encode()
        if body:
            headers.append((b"content-type", b"application/xml"))
        return Rendered(status, headers, body)

    def headers(self, plan: _OperationPlan, result: Mapping[str, Any]) -> list[tuple[bytes, bytes]]:
        out: list[tuple[bytes, bytes]] = []
        for h in plan.headers:
            value = result.get(h.member)
            if value is None:
                continue
            if h.prefix:
                for k, v in value.items():
                    out.append((h.header + k.lower().encode(), _header_value(v)))
            else:
                out.append((h.header, _header_text(value, h.type_name)))
        return out

    def _body(self, plan: _OperationPlan, result: Mapping[str, Any]) -> str:
        root = _ROOTS[plan.name]
        if plan.name == "GetBucketLocation":
            text = result.get("LocationConstraint") or ""
            return f'<{root} xmlns="{S3_NS}">{escape(text)}</{root}>'
        inner = "".join(
            _member(name, member, result[name])
            for name, member in plan.body_members
            if result.get(name) is not None
        )
        return f'<{root} xmlns="{S3_NS}">{inner}</{root}>'


def _header_value(v: str) -> bytes:
    # Request headers are decoded as latin-1 (byte-transparent), so encoding back the same
    # way returns exactly the bytes the client sent.
    try:
        return v.encode("latin-1")
    except UnicodeEncodeError:
        return v.encode("utf-8")


@functools.lru_cache(maxsize=4096)
def http_date(seconds: int) -> bytes:
    """RFC 7231 date of a whole second (cached: objects share few distinct seconds)."""
    return formatdate(seconds, usegmt=True).encode()


def _header_text(value: Any, type_name: str) -> bytes:
    if isinstance(value, str):
        return _header_value(value)
    if type_name == "timestamp":
        return http_date(int(_epoch(value)))
    if type_name == "boolean":
        return b"true" if value else b"false"
    return str(value).encode("utf-8")


def _epoch(value: Any) -> float:
    if isinstance(value, dt.datetime):
        return value.timestamp()
    return float(value)


@functools.lru_cache(maxsize=4096)
def _iso_second(seconds: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))


def iso8601(value: Any) -> str:
    """ISO 8601 with milliseconds, as S3 writes timestamps in XML."""
    epoch = value if type(value) is float else _epoch(value)
    seconds = math.floor(epoch)
    return f"{_iso_second(seconds)}.{int((epoch - seconds) * 1000):03d}Z"


# XML rendering is compiled once per (element, shape): a listing renders thousands of
# structures per page, and walking the botocore model for each cost more than the listing
# itself (benchmarks/RESULTS.md, the 10,000-key listing).
Render = Callable[[Any], str]
_compiled: dict[tuple[str, str, bool], Render] = {}


def _member(name: str, shape: Any, value: Any) -> str:
    """One member of a structure: its element(s), by its serialization name."""
    return _member_fn(name, shape)(value)


def _element(tag: str, shape: Any, value: Any, *, ns: bool = False) -> str:
    return _element_fn(tag, shape, ns)(value)


class RawXml(str):
    """A list member's elements, already rendered (see ``contents_xml``): written as is."""

    __slots__ = ()


def contents_xml(entries: Iterable[tuple[str, Any, str, int]]) -> RawXml:
    """ListObjects(V2)'s ``<Contents>`` elements for (key, last modified, ETag, size), the
    same bytes the model-driven renderer writes for them (tests/node/test_listing.py checks
    that) in one format per entry: a page renders a thousand, and the renderer's
    per-member calls were half the server's time of a full listing."""
    return RawXml("".join([
        f"<Contents><Key>{escape(key)}</Key><LastModified>{iso8601(modified)}</LastModified>"
        f"<ETag>{escape(etag)}</ETag><Size>{size}</Size>"
        f"<StorageClass>STANDARD</StorageClass></Contents>"
        for key, modified, etag, size in entries
    ]))


def _member_fn(name: str, shape: Any) -> Render:
    tag = shape.serialization.get("name", name)
    if shape.type_name != "list":
        return _element_fn(tag, shape)
    if shape.serialization.get("flattened"):
        item = _element_fn(tag, shape.member)
        return lambda values: (values if type(values) is RawXml
                               else "".join([item(v) for v in values]))
    item = _element_fn(shape.member.serialization.get("name", "member"), shape.member)
    open_tag, close_tag = f"<{tag}>", f"</{tag}>"
    return lambda values: open_tag + (values if type(values) is RawXml
                                      else "".join([item(v) for v in values])) + close_tag


def _element_fn(tag: str, shape: Any, ns: bool = False) -> Render:
    key = (tag, shape.name, ns)
    fn = _compiled.get(key)
    if fn is None:
        fn = _compiled[key] = _compile(tag, shape, ns)
    return fn


def _compile(tag: str, shape: Any, ns: bool) -> Render:
    attrs = f' xmlns="{S3_NS}"' if ns else ""
    close_tag = f"</{tag}>"
    kind = shape.type_name
    if kind == "list":
        return _member_fn(tag, shape)
    if kind != "structure":
        open_tag = f"<{tag}{attrs}>"
        if kind == "timestamp":
            return lambda v: open_tag + iso8601(v) + close_tag
        if kind == "boolean":
            return lambda v: open_tag + ("true" if v else "false") + close_tag
        if kind in ("integer", "long"):
            return lambda v: f"{open_tag}{v}{close_tag}"
        return lambda v: open_tag + escape(str(v)) + close_tag
    xml_ns = shape.serialization.get("xmlNamespace")
    if isinstance(xml_ns, Mapping) and xml_ns.get("prefix"):
        attrs += f' xmlns:{xml_ns["prefix"]}="{xml_ns["uri"]}"'
    attributes = [(n, m.serialization["name"]) for n, m in shape.members.items()
                  if m.serialization.get("xmlAttribute")]
    members = [(n, _member_fn(n, m)) for n, m in shape.members.items()
               if m.serialization.get("location") is None
               and not m.serialization.get("xmlAttribute")]

    def render(value: Any) -> str:
        get = value.get
        extra = "".join([f' {xml_name}="{escape(str(get(n)))}"' for n, xml_name in attributes
                         if get(n) is not None]) if attributes else ""
        inner = "".join([fn(v) for n, fn in members if (v := get(n)) is not None])
        return f"<{tag}{attrs}{extra}>{inner}{close_tag}"

    return render


def error_xml(code: str, message: str, resource: str, request_id: str,
              extra: Mapping[str, str]) -> bytes:
    parts = [f"<Code>{_plain(code)}</Code><Message>{_plain(message)}</Message>"]
    for k, v in extra.items():
        parts.append(f"<{k}>{_plain(str(v))}</{k}>")
    parts.append(f"<Resource>{_plain(resource)}</Resource><RequestId>{request_id}</RequestId>")
    return XML_DECL + f"<Error>{''.join(parts)}</Error>".encode()
