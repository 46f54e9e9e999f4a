"""A node's configuration and the services it runs, wired once per process."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from silverlining.node.domain.accounts import AccountService
from silverlining.node.domain.buckets import BucketService
from silverlining.node.domain.limits import Limits
from silverlining.node.domain.multipart import MultipartService
from silverlining.node.domain.objects import ObjectService
from silverlining.node.metering import Meter, NullMeter
from silverlining.node.store.accounts import AccountRepository
from silverlining.node.store.blobs import BlobStore
from silverlining.node.store.db import Database, sqlite_url
from silverlining.node.store.keyring import Keyring
from silverlining.node.store.objects import ObjectRepository


@dataclass(frozen=True)
class NodeConfig:
    data_dir: Path
    region: str = "us-east-1"
    #: Hosts under which virtual-hosted-style addressing applies (BUCKET.localhost:9000).
    base_domains: tuple[str, ...] = ("localhost",)
    database_url: str | None = None
    durable: bool = True
    limits: Limits = field(default_factory=Limits)
    #: Seconds a client may take to send a request's line and headers (slow-loris guard).
    header_timeout: float = 20.0
    #: Seconds a request body may stall between two pieces before the request fails.
    body_timeout: float = 30.0


class Node:
    """Storage and domain services of one node process (no HTTP here)."""

    def __init__(self, config: NodeConfig) -> None:
        self.config = config
        config.data_dir.mkdir(parents=True, exist_ok=True)
        self.db = Database(config.database_url or sqlite_url(config.data_dir))
        self.db.create_schema()
        self.blobs = BlobStore(config.data_dir, durable=config.durable)
        self.keyring = Keyring.load_or_create(config.data_dir)
        self.account_repo = AccountRepository(self.db)
        self.object_repo = ObjectRepository(self.db)
        self.accounts = AccountService(self.account_repo, self.object_repo, self.blobs,
                                       self.keyring)
        self.buckets = BucketService(self.object_repo, self.blobs, config.region)
        self.objects = ObjectService(self.object_repo, self.blobs, self.buckets, config.limits)
        self.multipart = MultipartService(self.object_repo, self.blobs, self.buckets,
                                          config.limits)
        self.started_at = time.time()
        #: Receives one call per authenticated S3 request (see metering.py).
        self.meter: Meter = NullMeter()

    def sweep(self) -> tuple[int, int]:
        """Remove what a crash left behind (temp files, unreferenced blobs) from before this
        process started. Returns (files removed, bytes freed)."""
        return self.blobs.sweep(self.object_repo.referenced_blobs, older_than=self.started_at)

    def close(self) -> None:
        self.db.dispose()
