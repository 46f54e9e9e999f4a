"""The market's own schedule: refresh every provider's catalog (prices) and re-certify every
provider when theirs are due. One thread per market process; with several processes on one
PostgreSQL database, a lease row lets only one of them run the schedule at a time."""

from __future__ import annotations

import datetime as dt
import logging
import os
import socket
import threading
import time

from sqlalchemy import insert, select, update

from silverlining.market import billing, budgets, invoices, moves, probes, registry, store
from silverlining.market.offers import CatalogError
from silverlining.market.osbclient import BrokerError
from silverlining.market.state import SYSTEM, MarketState, parse_time

log = logging.getLogger("silverlining.market")
LEASE_KEY = "scheduler_lease"


class Scheduler:
    def __init__(self, state: MarketState) -> None:
        self.state = state
        self.holder = f"{socket.gethostname()}:{os.getpid()}"
        self._stop = threading.Event()
        s = state.settings
        self.tick = max(0.5, min(60.0, min(s.refresh_interval, s.recertify_interval,
                                           s.collect_interval, s.probe_interval) / 4))
        self._collected: float = 0.0
        self._probed: float = 0.0
        self._thread = threading.Thread(target=self._run, name="market-scheduler", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=120)

    def _run(self) -> None:
        while not self._stop.wait(self.tick):
            try:
                if self._lease():
                    self.run_due()
            except Exception:  # the schedule must outlive any one failure
                log.exception("market schedule: a round failed; retrying next tick")

    def _lease(self) -> bool:
        """Hold (or take over an expired) lease for three ticks."""
        now = dt.datetime.now(dt.UTC)
        until = (now + dt.timedelta(seconds=self.tick * 3)).isoformat()
        t = store.settings
        with self.state.store.begin() as conn:
            row = conn.execute(select(t.c.value).where(t.c.key == LEASE_KEY)).first()
            if row is None:
                conn.execute(insert(t).values(key=LEASE_KEY, value=f"{self.holder}|{until}"))
                return True
            holder, _, expires = row.value.partition("|")
            if holder != self.holder and parse_time(expires) > now:
                return False
            conn.execute(update(t).where(t.c.key == LEASE_KEY).values(
                value=f"{self.holder}|{until}"))
            return True

    def run_due(self) -> None:
        """One round: whatever is due, provider by provider; then usage and invoices."""
        settings = self.state.settings
        now = dt.datetime.now(dt.UTC)
        if time.monotonic() - self._probed >= settings.probe_interval:
            self._probed = time.monotonic()
            probes.probe_all(self.state)
            moves.settle(self.state)  # what moves could not cancel at the time
        if time.monotonic() - self._collected >= settings.collect_interval:
            self._collected = time.monotonic()
            report = billing.collect(self.state, SYSTEM)
            budgets.check_alerts(self.state)
            for error in report.errors or []:
                log.warning("usage not collected: %s", error)
            # Last month's invoices, once it has ended (records arrive within the hour).
            if now.day > 1 or now.hour >= 2:
                previous = (now.replace(day=1) - dt.timedelta(days=1)).strftime("%Y-%m")
                invoices.monthly_invoices(self.state, SYSTEM, previous)
        for provider in registry.list_providers(self.state):
            if self._stop.is_set():
                return
            if provider.status == "pending":
                continue  # onboarding is certifying it right now
            last = registry.certifications(self.state, provider.name, limit=1)
            due_cert = not last or (now - parse_time(last[0].started_at)).total_seconds() \
                >= settings.recertify_interval
            if due_cert:
                cert = registry.certify(self.state, SYSTEM, provider.name)
                log.info("re-certified %s: %s", provider.name,
                         "passed" if cert.passed else "did not pass")
                continue  # certification reads the catalog too
            age = None if provider.catalog_at is None else (
                now - parse_time(provider.catalog_at)).total_seconds()
            if age is None or age >= settings.refresh_interval:
                try:
                    registry.refresh_catalog(self.state, SYSTEM, provider.name)
                except (BrokerError, CatalogError) as error:
                    log.warning("catalog of %s not refreshed: %s", provider.name, error)
