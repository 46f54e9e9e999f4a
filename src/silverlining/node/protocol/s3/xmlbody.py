"""Parsing of the XML request bodies S3 accepts. defusedxml refuses entity expansion and
DTDs; anything that is not the documented shape is MalformedXML."""

from __future__ import annotations

from xml.etree.ElementTree import Element

import defusedxml.ElementTree as SafeET
from defusedxml import DefusedXmlException

from silverlining.node import errors
from silverlining.node.domain.multipart import CompletedPart


def _parse(body: bytes, root: str) -> Element:
    try:
        tree = SafeET.fromstring(body)
    except (SafeET.ParseError, DefusedXmlException, ValueError):
        raise errors.MalformedXML() from None
    for el in tree.iter():
        if isinstance(el.tag, str) and "}" in el.tag:
            el.tag = el.tag.split("}", 1)[1]
    if tree.tag != root:
        raise errors.MalformedXML()
    return tree


def _text(el: Element | None) -> str:
    return "" if el is None or el.text is None else el.text


def parse_create_bucket(body: bytes) -> str | None:
    if not body.strip():
        return None
    tree = _parse(body, "CreateBucketConfiguration")
    loc = tree.find("LocationConstraint")
    return _text(loc) or None if loc is not None else None


def parse_delete(body: bytes, max_keys: int) -> tuple[bool, list[str]]:
    tree = _parse(body, "Delete")
    quiet = _text(tree.find("Quiet")).strip().lower() == "true"
    keys: list[str] = []
    for obj in tree.findall("Object"):
        key = obj.find("Key")
        if key is None:
            raise errors.MalformedXML()
        keys.append(_text(key))
        if len(keys) > max_keys:
            raise errors.MalformedXML(
                f"The request must contain no more than {max_keys} keys."
            )
    if not keys:
        raise errors.MalformedXML()
    return quiet, keys


_PART_CHECKSUMS = ("ChecksumCRC32", "ChecksumCRC32C", "ChecksumSHA1", "ChecksumSHA256")


def parse_complete(body: bytes) -> list[CompletedPart]:
    tree = _parse(body, "CompleteMultipartUpload")
    parts: list[CompletedPart] = []
    for p in tree.findall("Part"):
        num, etag = p.find("PartNumber"), p.find("ETag")
        if num is None or etag is None:
            raise errors.MalformedXML()
        try:
            number = int(_text(num))
        except ValueError:
            raise errors.MalformedXML() from None
        checksums = {
            name[len("Checksum"):]: _text(p.find(name)).strip()
            for name in _PART_CHECKSUMS
            if p.find(name) is not None
        }
        parts.append(CompletedPart(number, _text(etag), checksums))
    return parts


def parse_tagging(body: bytes) -> dict[str, str]:
    tree = _parse(body, "Tagging")
    tagset = tree.find("TagSet")
    if tagset is None:
        raise errors.MalformedXML()
    tags: dict[str, str] = {}
    for tag in tagset.findall("Tag"):
        k, v = tag.find("Key"), tag.find("Value")
        if k is None or v is None:
            raise errors.MalformedXML()
        key = _text(k)
        if key in tags:
            raise errors.InvalidTag("Cannot provide multiple Tags with the same key", TagKey=key)
        tags[key] = _text(v)
    return tags


def parse_acl(body: bytes) -> list[tuple[str, str]]:
    """(grantee canonical id or URI/email, permission) of each grant in an
    AccessControlPolicy."""
    tree = _parse(body, "AccessControlPolicy")
    grants: list[tuple[str, str]] = []
    acl = tree.find("AccessControlList")
    for grant in [] if acl is None else acl.findall("Grant"):
        grantee = grant.find("Grantee")
        who = ""
        if grantee is not None:
            who = _text(grantee.find("ID")) or _text(grantee.find("URI")) or \
                _text(grantee.find("EmailAddress"))
        grants.append((who, _text(grant.find("Permission"))))
    return grants
