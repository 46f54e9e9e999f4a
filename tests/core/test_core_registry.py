"""The check registry: stable, well-formed ids, levels that nest, and docs that match."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from silverlining.core.registry import LEVELS, Check, Level, Registry, load_checks

DOCS = Path(__file__).resolve().parents[2] / "docs" / "core.md"


def test_ids_are_unique_well_formed_and_statements_are_one_sentence() -> None:
    checks = load_checks().all()
    ids = [c.id for c in checks]
    assert len(ids) == len(set(ids))
    for item in checks:
        assert re.fullmatch(r"s3\.[a-z]+\.[a-z0-9-]+", item.id), item.id
        assert item.statement.endswith(".") and "\n" not in item.statement
        assert len(item.statement) <= 200, item.id


def test_s3_full_includes_every_basic_check() -> None:
    registry = load_checks()
    basic = {c.id for c in registry.for_level(Level.S3_BASIC)}
    full = {c.id for c in registry.for_level(Level.S3_FULL)}
    assert basic < full
    assert {c.level for c in registry.for_level(Level.S3_BASIC)} == {Level.S3_BASIC}
    assert Level.S3_FULL.includes == (Level.S3_BASIC, Level.S3_FULL)


def test_the_issue_s_behaviours_are_covered() -> None:
    registry = load_checks()
    basic = {c.id for c in registry.for_level(Level.S3_BASIC)}
    full_only = {c.id for c in registry.all() if c.level == Level.S3_FULL}
    for check_id in (
        "s3.bucket.create-delete", "s3.bucket.list", "s3.object.put-get", "s3.object.head",
        "s3.object.delete", "s3.object.user-metadata", "s3.object.content-headers",
        "s3.object.range", "s3.list.prefix", "s3.list.delimiter", "s3.list.pagination",
        "s3.multipart.etag", "s3.object.copy", "s3.object.delete-multiple",
        "s3.auth.sigv4-header", "s3.auth.presigned-get", "s3.error.no-such-bucket",
        "s3.error.no-such-key", "s3.consistency.read-after-write",
        "s3.consistency.list-after-write",
    ):  # fmt: skip
        assert check_id in basic, check_id
    for check_id in (
        "s3.conditional.if-match", "s3.checksum.algorithms", "s3.tagging.object",
        "s3.auth.presigned-expiry", "s3.streaming.signed-chunks",
        "s3.consistency.overwrite-atomic", "s3.isolation.read", "s3.isolation.list",
        "s3.isolation.write", "s3.isolation.delete", "s3.auth.tampered-signature",
        "s3.auth.skewed-clock", "s3.durability.large-object",
    ):  # fmt: skip
        assert check_id in full_only, check_id


def test_only_isolation_checks_need_the_alternate_account() -> None:
    needing = {c.id for c in load_checks().all() if c.needs_alt}
    assert needing == {c.id for c in load_checks().all() if c.area == "isolation"}
    assert len(needing) == 5


def test_registry_refuses_duplicates_and_malformed_entries() -> None:
    registry = Registry()

    def noop(ctx: object) -> None:
        return None

    registry.add(Check("s3.x.one", Level.S3_BASIC, "Proves one thing.", noop))
    with pytest.raises(ValueError, match="duplicate"):
        registry.add(Check("s3.x.one", Level.S3_BASIC, "Proves one thing.", noop))
    with pytest.raises(ValueError, match="malformed"):
        registry.add(Check("S3 X", Level.S3_BASIC, "Proves one thing.", noop))
    with pytest.raises(ValueError, match="one sentence"):
        registry.add(Check("s3.x.two", Level.S3_BASIC, "two\nlines.", noop))
    assert [c.id for c in registry.select(registry.all(), ["s3.x.*"])] == ["s3.x.one"]


def test_docs_list_every_check_with_its_level_and_statement() -> None:
    """docs/core.md carries the table `core list` prints; regenerate it when checks change."""
    text = DOCS.read_text(encoding="utf-8")
    rows = re.findall(r"^\| `([^`]+)` \| (s3-[a-z]+) \| (.+?) \|$", text, flags=re.MULTILINE)
    documented = {check_id: (level, statement) for check_id, level, statement in rows}
    expected = {c.id: (str(c.level), c.statement.replace("|", "\\|")) for c in load_checks().all()}
    assert documented == expected
    for level in LEVELS:
        count = len(load_checks().for_level(level))
        assert f"`{level}`: {count} checks" in text
