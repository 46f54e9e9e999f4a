"""A node's configuration and the services it runs, wired once per process."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from silverlining import __version__
from silverlining.node.config import NodeFileConfig
from silverlining.node.domain.accounts import AccountService
from silverlining.node.domain.broker import BrokerService
from silverlining.node.domain.buckets import BucketService
from silverlining.node.domain.catalog import Offering
from silverlining.node.domain.limits import Limits
from silverlining.node.domain.multipart import MultipartService
from silverlining.node.domain.objects import ObjectService
from silverlining.node.domain.usage import UsageService
from silverlining.node.identity import NodeIdentity
from silverlining.node.metering import Meter, NullMeter
from silverlining.node.metering_journal import JOURNAL_DIR, Aggregator, JournalMeter
from silverlining.node.store.accounts import AccountRepository
from silverlining.node.store.blobs import BlobStore
from silverlining.node.store.broker import BrokerRepository
from silverlining.node.store.db import Database, sqlite_url
from silverlining.node.store.keyring import Keyring
from silverlining.node.store.objects import ObjectRepository
from silverlining.node.store.usage import UsageRepository


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
    #: The configuration file's contents: endpoint, jurisdiction, plans (config.py).
    file_config: NodeFileConfig = field(default_factory=NodeFileConfig)
    #: The endpoint bindings hand out when the config file sets none (serve's HOST:PORT).
    endpoint: str = "http://127.0.0.1:9000"
    #: Length of a metering period in seconds (fixed per data directory once metering ran).
    metering_period: int = 3600


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
        #: Receives one call per authenticated S3 request (see metering.py); a JournalMeter
        #: once start_services() ran.
        self.meter: Meter = NullMeter()
        self.identity = NodeIdentity.load_or_create(config.data_dir)
        self.broker_repo = BrokerRepository(self.db)
        self.usage_repo = UsageRepository(self.db)
        self.offering = Offering.build(
            config.file_config, self.identity, region=config.region,
            endpoint=config.file_config.node.public_endpoint or config.endpoint,
            version=__version__)
        self.broker = BrokerService(self.broker_repo, self.accounts, self.object_repo,
                                    self.blobs, self.keyring, self.offering,
                                    config.file_config.broker)
        self.usage = UsageService(self.usage_repo, self.identity)
        self._journal: JournalMeter | None = None
        self._aggregator: Aggregator | None = None

    def start_services(self) -> None:
        """What a serving process runs beside the HTTP front: exact metering (a journal for
        this process, and the aggregator that also folds what earlier processes left) and
        the resumption of interrupted deprovisions. Raises PeriodMismatch if the data
        directory meters with another period length."""
        period_ms = self.config.metering_period * 1000
        self.usage_repo.ensure_period(period_ms)
        directory = self.config.data_dir / JOURNAL_DIR
        self._journal = JournalMeter(directory)
        self.meter = self._journal
        self._aggregator = Aggregator(self.usage_repo, directory, period_ms)
        self._aggregator.start()
        self.broker.resume()

    def fold_usage(self) -> None:
        """Fold whatever journals hold now (for operator commands; a serving node does it
        continuously). Does nothing if metering never ran here."""
        state = self.usage_repo.state()
        if state is None:
            return
        Aggregator(self.usage_repo, self.config.data_dir / JOURNAL_DIR,
                   state.period_ms).run_once()

    def sweep(self) -> tuple[int, int]:
        """Remove what a crash left behind (temp files, unreferenced blobs) from before this
        process started. Returns (files removed, bytes freed)."""
        return self.blobs.sweep(self.object_repo.referenced_blobs, older_than=self.started_at)

    def close(self) -> None:
        self.broker.close()
        if self._journal is not None:
            self.meter = NullMeter()
            self._journal.close()
            self._journal = None
        if self._aggregator is not None:
            self._aggregator.stop()  # folds this process's last records
            self._aggregator = None
        self.db.dispose()
