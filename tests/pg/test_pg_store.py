"""The store layer on PostgreSQL with several writers at once: two ``Database`` objects (two
engines, two group committers: what two node processes have) on one real database."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from silverlining.node import errors
from silverlining.node.domain.model import ObjectRecord
from silverlining.node.store.accounts import AccountRepository
from silverlining.node.store.db import Database
from silverlining.node.store.objects import ObjectRepository
from silverlining.node.store.usage import UsageRepository

Repos = tuple[ObjectRepository, ObjectRepository, dict[str, int]]


@pytest.fixture
def two(pg_url: str) -> Iterator[Repos]:
    """Two repositories on one database, and two tenants (bucket name -> owner id)."""
    dbs = [Database(pg_url), Database(pg_url)]
    for db in dbs:
        db.create_schema()
    repos = [ObjectRepository(db) for db in dbs]
    owners = {}
    for name in ("race", "race-b"):
        account = AccountRepository(dbs[0]).create(f"owner-{name}", name.ljust(64, "c"))
        repos[0].create_bucket(name, account.id, "us-east-1")
        owners[name] = account.id
    yield repos[0], repos[1], owners
    for db in dbs:
        db.dispose()


def _rec(key: str, size: int, bucket: str = "race") -> ObjectRecord:
    return ObjectRecord(bucket, key, size, '"etag"', time.time(), (), {"x-amz-meta-n": str(size)},
                        {}, {}, None, b"x" * size)


def test_racing_writers_keep_usage_exact(two: Repos) -> None:
    """Overwrites, first inserts and deletes of the same keys race between the two writers,
    for two tenants at once (batches lock their accounts in any order: a deadlock between
    two batches is retried, not failed)."""
    a, b, owners = two
    rng = random.Random(7)
    ops = [(rng.choice("ppd"), rng.choice(list(owners)), f"k{rng.randrange(3)}",
            rng.randrange(200)) for _ in range(800)]

    def run(i: int) -> None:
        repo = (a, b)[i % 2]
        op, bucket, key, size = ops[i]
        if op == "p":
            repo.put_object(owners[bucket], _rec(key, size, bucket))
        else:
            repo.delete_objects(owners[bucket], bucket, [key])

    with ThreadPoolExecutor(32) as pool:
        list(pool.map(run, range(len(ops))))
    for bucket in owners:
        stored = a.scan(bucket, "", True, 1000)
        acct = AccountRepository(a.db).get(f"owner-{bucket}")
        assert (acct.objects_used, acct.bytes_used) == (len(stored),
                                                        sum(e.size for e in stored))


def test_delete_bucket_races_writes(two: Repos) -> None:
    a, b, owners = two
    owner = owners["race"]

    def put(i: int) -> str:
        try:
            b.put_object(owner, _rec(f"k{i}", 1))
        except errors.NoSuchBucket:
            return "no bucket"
        return "ok"

    def drop() -> str:
        time.sleep(0.005)
        try:
            a.delete_bucket("race")
        except errors.BucketNotEmpty:
            return "not empty"
        return "deleted"

    with ThreadPoolExecutor(8) as pool:
        puts = [pool.submit(put, i) for i in range(50)]
        outcome = pool.submit(drop).result()
        results = [p.result() for p in puts]
    # Never an object left behind in a deleted bucket.
    if outcome == "deleted":
        assert a.get_bucket("race") is None
        assert a.scan("race", "", True, 1000) == []
    else:
        assert results.count("ok") == len(a.scan("race", "", True, 1000)) > 0


def test_metering_fold_waits_for_storage_events_in_flight(pg_url: str) -> None:
    """storage_events ids are drawn before commit: a fold must not advance its cursor past
    an event that another process has inserted but not committed yet."""
    dbs = [Database(pg_url), Database(pg_url)]
    for db in dbs:
        db.create_schema()
    try:
        accounts = AccountRepository(dbs[0])
        first, second = accounts.create("slow", "s" * 64), accounts.create("fast", "f" * 64)
        usage = UsageRepository(dbs[1])
        usage.ensure_period(1000)
        repos = [ObjectRepository(db) for db in dbs]
        folded: list[bool] = []
        with dbs[0].write() as conn:
            repos[0]._storage_event(conn, first.id, 500, 1)  # lower id, still uncommitted
            with dbs[1].write() as other:
                repos[1]._storage_event(other, second.id, 700, 1)  # higher id, committed
            until = time.time_ns() // 1_000_000 + 3000

            def fold() -> None:
                while usage.fold_storage(1000, until):
                    folded.append(True)

            thread = threading.Thread(target=fold)
            thread.start()
            thread.join(0.5)
            assert thread.is_alive()  # waits for the event in flight
        thread.join(30)
        assert folded and not thread.is_alive()
        rows = usage.rows_by_account([first.id, second.id], 0, until)
        assert rows[first.id][-1].stored_bytes_end == 500
        assert rows[second.id][-1].stored_bytes_end == 700
    finally:
        for db in dbs:
            db.dispose()
