"""The metering machinery on a real metadata database (no server): request classes, the
journal's exactly-once folding and damage handling, and stored byte-time checked against a
brute-force integration."""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import botocore.session
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import insert

from silverlining.node.metering_journal import (
    FREE,
    READ,
    RECORD_SIZE,
    WRITE,
    Aggregator,
    JournalMeter,
    encode,
    request_class,
)
from silverlining.node.protocol.s3.frontend import HANDLERS
from silverlining.node.store import schema as t
from silverlining.node.store.db import Database, sqlite_url
from silverlining.node.store.usage import UsageRepository, integrate_open

P = 1000  # ms


@pytest.fixture
def repo(tmp_path: Path) -> Iterator[UsageRepository]:
    db = Database(sqlite_url(tmp_path))
    db.create_schema()
    r = UsageRepository(db)
    r.ensure_period(P)
    yield r
    db.dispose()


def test_every_s3_operation_has_its_pricing_class() -> None:
    """S3's tiers by HTTP verb, from botocore's model of each operation the node serves: GET
    and HEAD read; LIST (a GET), PUT, COPY and POST write; deletes are free."""
    model = botocore.session.get_session().get_service_model("s3")
    free = {"DeleteObject", "DeleteObjects", "DeleteBucket", "AbortMultipartUpload",
            "DeleteObjectTagging"}
    for op in HANDLERS:
        if op not in model.operation_names:
            continue  # an internal pseudo-operation (e.g. an unconfigured subresource)
        method = model.operation_model(op).http["method"]
        if op in free or (method == "DELETE" and op.startswith("Delete")):
            want = FREE
        elif op.startswith("List"):
            want = WRITE
        elif method in ("GET", "HEAD"):
            want = READ
        else:
            want = WRITE
        assert request_class(op) == want, (op, method)
    assert request_class("CompleteMultipartUpload") == WRITE  # POST


def test_journal_records_are_folded_once_and_damage_is_skipped(repo: UsageRepository,
                                                               tmp_path: Path) -> None:
    directory = tmp_path / "metering"
    meter = JournalMeter(directory)
    for _ in range(3):
        meter.record(7, "GetObject", 0, 100)
    meter.record(7, "PutObject", 50, 0)
    meter.record(7, "DeleteObjects", 30, 20)  # free: bytes count, the request does not
    meter.record(8, "ListObjectsV2", 0, 400)
    aggregator = Aggregator(repo, directory, P, grace_ms=0)
    aggregator.run_once()
    aggregator.run_once()  # nothing is counted twice
    rows = {r.account_id: r for r in repo.account_rows(7, 0, 2**62)}
    (r7,) = rows.values()
    assert (r7.requests_read, r7.requests_write, r7.bytes_in, r7.bytes_out) == (3, 1, 80, 320)
    # The live journal stays; once its writer is gone it is finished and deleted.
    path = directory / meter.name
    assert path.exists()
    with open(path, "ab") as raw:
        bad = bytearray(encode(7, READ, 1_000_000, 0, 1))
        bad[12] ^= 0xFF  # a damaged record: its CRC no longer matches
        raw.write(bytes(bad))
        raw.write(encode(7, READ, 1_000_000, 0, 5))
        raw.write(encode(7, READ, 1_000_000, 0, 5)[:17])  # torn tail (power cut)
    meter.close()
    aggregator.run_once()
    assert not path.exists()
    assert repo.journal_offsets() == {}
    late = repo.account_rows(7, 0, 2**62)
    assert sum(r.requests_read for r in late) == 4
    assert sum(r.bytes_out for r in late) == 325


def test_records_of_a_closed_period_go_to_the_open_one(repo: UsageRepository,
                                                       tmp_path: Path) -> None:
    """Closed periods never change: a straggler is counted in the oldest open period."""
    directory = tmp_path / "metering"
    directory.mkdir()
    base = time.time_ns() // 1_000_000 // P * P - 60 * P
    with repo.db.write() as conn:
        conn.execute(insert(t.storage_events).values(account_id=9, ts_ms=base + 10 * P,
                                                     bytes_used=5, objects_used=1))
    while repo.fold_storage(P, base + 50 * P + 10):
        pass
    closed_until = repo.state().folded_until_ms  # type: ignore[union-attr]
    assert closed_until == base + 50 * P
    before = repo.account_rows(9, 0, 2**62)
    assert [r.stored_byte_ms for r in before] == [5 * P] * 40
    (directory / "other-1-1-x.journal").write_bytes(encode(9, WRITE, base + 20 * P + 3, 11, 0))
    Aggregator(repo, directory, P, grace_ms=0).run_once()
    after = repo.account_rows(9, 0, 2**62)
    assert [r for r in after if r.period_start_ms < closed_until] == before
    moved = [r for r in after if r.requests_write]
    assert [(r.period_start_ms, r.requests_write, r.bytes_in) for r in moved] == [
        (closed_until, 1, 11)]


def test_idle_stretches_are_crossed_in_one_step(repo: UsageRepository) -> None:
    with repo.db.write() as conn:
        conn.execute(insert(t.storage_events).values(account_id=3, ts_ms=P + 5,
                                                     bytes_used=0, objects_used=0))
    folds = 0
    while repo.fold_storage(P, time.time_ns() // 1_000_000):
        folds += 1
    assert folds <= 3


def brute_force(events: list[tuple[int, int, int]], periods: int) -> dict[tuple[int, int], int]:
    """byte-ms per (account, period) by summing every millisecond."""
    out: dict[tuple[int, int], int] = {}
    for acct in {a for a, _, _ in events}:
        mine = [(ts, b) for a, ts, b in events if a == acct]
        stored = 0
        i = 0
        for ms in range(periods * P):
            while i < len(mine) and mine[i][0] <= ms:
                stored = mine[i][1]
                i += 1
            if stored:
                key = (acct, ms - ms % P)
                out[key] = out.get(key, 0) + stored
    return out


event_lists = st.lists(
    st.tuples(st.integers(1, 3), st.integers(0, 6 * P - 1), st.integers(0, 10**12)),
    min_size=1, max_size=25,
).map(lambda evs: sorted(evs, key=lambda e: e[1]))


@settings(max_examples=25, deadline=None)
@given(events=event_lists)
def test_stored_byte_time_is_exact(events: list[tuple[int, int, int]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        db = Database(sqlite_url(Path(tmp)))
        db.create_schema()
        repo = UsageRepository(db)
        repo.ensure_period(P)
        with db.write() as conn:
            for acct, ts, stored in events:
                conn.execute(insert(t.storage_events).values(
                    account_id=acct, ts_ms=ts, bytes_used=stored, objects_used=1))
        while repo.fold_storage(P, 8 * P):
            pass
        got = {(r.account_id, r.period_start_ms): r.stored_byte_ms
               for acct in (1, 2, 3) for r in repo.account_rows(acct, 0, 8 * P)
               if r.stored_byte_ms}
        # The folded periods start at the period of the first event and end at 8 * P.
        want = {k: v for k, v in brute_force(events, 8).items() if v}
        assert got == want
        db.dispose()


@settings(max_examples=50, deadline=None)
@given(events=event_lists, start=st.integers(0, 10**9), until=st.integers(1, 7 * P))
def test_provisional_byte_time_is_exact(events: list[tuple[int, int, int]], start: int,
                                        until: int) -> None:
    mine = [(ts, b) for a, ts, b in events if a == 1]
    got = integrate_open(start, mine, 0, until, P)
    stored, i = start, 0
    want: dict[int, int] = {}
    for ms in range(until):
        while i < len(mine) and mine[i][0] <= ms:
            stored = mine[i][1]
            i += 1
        want[ms - ms % P] = want.get(ms - ms % P, 0) + stored
    assert {k: v[0] for k, v in got.items()} == want


def test_a_journal_is_append_only_and_private(tmp_path: Path) -> None:
    meter = JournalMeter(tmp_path / "m")
    meter.record(1, "PutObject", 1, 2)
    path = tmp_path / "m" / meter.name
    assert path.stat().st_size == RECORD_SIZE
    assert path.stat().st_mode & 0o777 == 0o600
    assert os.path.basename(path).endswith(".journal")
    meter.close()
