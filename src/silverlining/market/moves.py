"""Moves: a verified exit from one provider to another.

A move provisions a subscription on the target, copies every bucket and object from the old
subscription with the copy engine (streamed, parallel, each object verified on the target),
runs a final incremental pass that takes the writes (and deletes) the buyer made meanwhile,
compares both sides' listings, and only then switches: the old subscription is marked
``moved`` and deprovisioned. Until the switch the old subscription keeps working; a move
that fails leaves it untouched and cancels what it provisioned on the target. Once the
switch is recorded the move is done, even if the old provider cannot be reached to cancel
the old subscription then: a failure there must never cancel the target, which now holds
the buyer's data. What could not be cancelled at the time (the old subscription of a done
move, the target of a failed one) is cancelled by ``settle`` when the market starts and on
every round of its schedule.

Every step is recorded in the ``moves`` row and every copied object in ``move_objects`` (the
journal), so a move interrupted by a restart of the market resumes where it stopped without
copying finished objects again. Moves run on threads of the market process.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import delete, insert, select, update

from silverlining.market import store
from silverlining.market.billing import GB, micro_text, to_micro
from silverlining.market.offers import Prices, UsageProfile, monthly_cost
from silverlining.market.orders import (
    OrderRequest,
    _deprovision,
    _subscribe,
    get_subscription,
    listed_offers,
    match,
    offer_view,
    round_quote,
)
from silverlining.market.osbclient import BrokerError
from silverlining.market.state import (
    Conflict,
    Invalid,
    MarketError,
    MarketState,
    NoMatch,
    NotFound,
    Principal,
    Upstream,
    record,
)
from silverlining.market.vault import VaultError
from silverlining.transfer import (
    CopyError,
    Endpoint,
    Progress,
    copy_all,
    list_buckets,
    list_objects,
)

log = logging.getLogger("silverlining.market")
ACTIVE = ("provisioning", "copying", "final-pass", "switching")
MOVED_FLAG = "moved"


@dataclass(frozen=True)
class MoveTarget:
    provider: str | None = None
    request: OrderRequest | None = None


def _endpoint(sub: dict[str, Any]) -> Endpoint:
    return Endpoint(sub["endpoint"], sub["access_key_id"], sub["secret_access_key"],
                    sub["region"])


def _size(ep: Endpoint) -> tuple[int, int]:
    client = ep.client()
    try:
        objects = total = 0
        for bucket in list_buckets(client):
            for obj in list_objects(client, bucket):
                objects += 1
                total += obj.size
        return objects, total
    finally:
        client.close()


def quote(state: MarketState, actor: Principal, subscription_id: str,
          target: MoveTarget) -> dict[str, Any]:
    """What a move would do and cost: the target offer, and the egress at the source."""
    sub = get_subscription(state, actor, subscription_id, reveal=True)
    if sub["status"] != "active":
        raise Conflict(f"subscription {subscription_id} is {sub['status']}: nothing to move")
    if target.provider is not None:
        if target.provider == sub["provider"]:
            raise Invalid("the target provider is the subscription's own provider")
        candidates = [o for o in listed_offers(state) if o.provider == target.provider]
        if not candidates:
            raise NoMatch(f"{target.provider!r} is not a listed provider with offers")
        candidates.sort(key=lambda o: (o.prices.gb_month, o.plan.plan_name))
        offer = candidates[0]
    else:
        request = target.request or OrderRequest()
        ranked = [o for o in match(state, request) if o.provider != sub["provider"]]
        if not ranked:
            raise NoMatch("no other listed offer matches the move's constraints")
        offer = ranked[0]
    try:
        objects, size = _size(_endpoint(sub))
    except Exception as error:  # the source cannot be read: no move
        raise Upstream(f"cannot list the subscription's data at {sub['provider']}: "
                       f"{str(error)[:200]}") from None
    source_prices = Prices.from_dict(sub["prices"])
    egress = Decimal(size) / GB * source_prices.egress_gb
    profile = target.request.profile if target.request else None
    view = offer_view(offer, profile)
    if profile is None:
        stored = UsageProfile(gb=Decimal(size) / GB)
        view["expected_monthly_cost"] = str(round_quote(monthly_cost(offer.prices, stored)))
    return {
        "subscription_id": subscription_id, "source_provider": sub["provider"],
        "target_offer": view, "objects": objects, "bytes": size,
        "egress_cost": micro_text(to_micro(egress)), "currency": source_prices.currency,
        "egress_price_gb": str(source_prices.egress_gb),
    }


def start(state: MarketState, actor: Principal, subscription_id: str, target: MoveTarget,
          runner: MoveRunner) -> dict[str, Any]:
    """Record a move and start it on a thread; returns its state."""
    q = quote(state, actor, subscription_id, target)
    move_id = str(uuid.uuid4())
    with state.store.begin() as conn:
        busy = conn.execute(select(store.moves.c.id).where(
            store.moves.c.source_subscription_id == subscription_id,
            store.moves.c.state.in_(ACTIVE))).first()
        if busy is not None:
            raise Conflict(f"subscription {subscription_id} is being moved already "
                           f"(move {busy.id})")
        conn.execute(insert(store.moves).values(
            id=move_id, account_id=actor.account_id, source_subscription_id=subscription_id,
            target_offer_id=q["target_offer"]["id"], target_subscription_id=str(uuid.uuid4()),
            target_instance_id=str(uuid.uuid4()), target_binding_id=str(uuid.uuid4()),
            state="provisioning", quote_json=store.dumps(q), progress_json="{}", runs=0,
            created_at=store.now(), updated_at=store.now()))
        record(conn, actor, "move.start", move_id, subscription=subscription_id,
               target=q["target_offer"]["provider"], bytes=q["bytes"],
               egress_cost=q["egress_cost"])
    runner.launch(move_id)
    return get_move(state, actor, move_id)


def get_move(state: MarketState, actor: Principal, move_id: str) -> dict[str, Any]:
    with state.store.begin() as conn:
        row = conn.execute(select(store.moves).where(store.moves.c.id == move_id)).first()
    if row is None or (row.account_id != actor.account_id and not actor.is_admin):
        raise NotFound(f"no move {move_id[:64]!r}")
    return _view(row)


def list_moves(state: MarketState, actor: Principal) -> list[dict[str, Any]]:
    query = select(store.moves).order_by(store.moves.c.created_at)
    if not actor.is_admin:
        query = query.where(store.moves.c.account_id == actor.account_id)
    with state.store.begin() as conn:
        return [_view(r) for r in conn.execute(query).all()]


def _view(row: Any) -> dict[str, Any]:
    q = json.loads(row.quote_json)
    return {"id": row.id, "state": row.state, "error": row.error,
            "source_subscription_id": row.source_subscription_id,
            "source_provider": q["source_provider"],
            "target_provider": q["target_offer"]["provider"],
            "target_subscription_id": row.target_subscription_id,
            "quote": q, "progress": json.loads(row.progress_json), "runs": row.runs,
            "created_at": row.created_at, "updated_at": row.updated_at,
            "finished_at": row.finished_at}


class _DbJournal:
    """The copy engine's journal, in ``move_objects``."""

    def __init__(self, state: MarketState, move_id: str) -> None:
        self.state, self.move_id = state, move_id
        t = store.move_objects
        with state.store.begin() as conn:
            rows = conn.execute(select(t.c.bucket, t.c.key, t.c.etag, t.c.size).where(
                t.c.move_id == move_id)).all()
        self.entries = {(r.bucket, r.key): (r.etag, int(r.size)) for r in rows}
        self._lock = threading.Lock()

    def done(self, bucket: str, key: str, etag: str, size: int) -> bool:
        return self.entries.get((bucket, key)) == (etag, size)

    def record(self, bucket: str, key: str, etag: str, size: int, checksum: str) -> None:
        t = store.move_objects
        with self._lock, self.state.store.begin() as conn:
            conn.execute(delete(t).where(t.c.move_id == self.move_id, t.c.bucket == bucket,
                                         t.c.key == key))
            conn.execute(insert(t).values(move_id=self.move_id, bucket=bucket, key=key,
                                          etag=etag, size=size, checksum=checksum))
            self.entries[(bucket, key)] = (etag, size)

    def forget(self, bucket: str, key: str) -> None:
        t = store.move_objects
        with self._lock, self.state.store.begin() as conn:
            conn.execute(delete(t).where(t.c.move_id == self.move_id, t.c.bucket == bucket,
                                         t.c.key == key))
            self.entries.pop((bucket, key), None)


class MoveRunner:
    """Runs moves on threads; ``resume()`` picks up the ones a stopped market left."""

    def __init__(self, state: MarketState, workers: int = 8) -> None:
        self.state = state
        self.workers = workers
        self.stop = threading.Event()
        self._threads: dict[str, threading.Thread] = {}
        self._lock = threading.Lock()

    def launch(self, move_id: str) -> None:
        with self._lock:
            if move_id in self._threads and self._threads[move_id].is_alive():
                return
            thread = threading.Thread(target=self._run, args=(move_id,),
                                      name=f"move-{move_id[:8]}", daemon=True)
            self._threads[move_id] = thread
            thread.start()

    def resume(self) -> int:
        # What moves left to cancel, in the background: an unreachable provider may take
        # the broker timeout to answer, and the market's start must not wait for it.
        threading.Thread(target=self._settle, name="move-settle", daemon=True).start()
        with self.state.store.begin() as conn:
            ids = [r.id for r in conn.execute(select(store.moves.c.id).where(
                store.moves.c.state.in_(ACTIVE))).all()]
        for move_id in ids:
            self.launch(move_id)
        return len(ids)

    def shutdown(self) -> None:
        self.stop.set()
        for thread in list(self._threads.values()):
            thread.join(timeout=60)

    # ------------------------------------------------------------------------------------
    def _settle(self) -> None:
        try:
            settle(self.state)
        except Exception:  # the schedule retries; a bug here must not stop the market
            log.exception("settling moves at start failed")

    def _run(self, move_id: str) -> None:
        try:
            run_move(self.state, move_id, stop=self.stop, workers=self.workers)
        except Exception:  # a move's own failures are recorded; this is a bug's last stop
            log.exception("move %s: unexpected failure", move_id)


def _set(market: MarketState, move_id: str, /, **values: Any) -> None:
    with market.store.begin() as conn:
        conn.execute(update(store.moves).where(store.moves.c.id == move_id).values(
            updated_at=store.now(), **values))


def _owner(state: MarketState, row: Any) -> Principal:
    with state.store.begin() as conn:
        acct = conn.execute(select(store.accounts).where(
            store.accounts.c.id == row.account_id)).one()
    return Principal(acct.id, acct.name, acct.role)


def run_move(state: MarketState, move_id: str, *, stop: threading.Event,
             workers: int = 8) -> None:
    """Drive a move from wherever it stands to done or failed (or until ``stop``)."""
    with state.store.begin() as conn:
        row = conn.execute(select(store.moves).where(store.moves.c.id == move_id)).one()
        conn.execute(update(store.moves).where(store.moves.c.id == move_id).values(
            runs=row.runs + 1))
    owner = _owner(state, row)
    source = get_subscription(state, owner, row.source_subscription_id, reveal=True)
    progress = Progress()
    last_saved = [0.0]

    def save(p: Progress, force: bool = False) -> None:
        if force or time.monotonic() - last_saved[0] > 0.5:
            last_saved[0] = time.monotonic()
            _set(state, move_id, progress_json=store.dumps(
                {**p.to_dict(), "phase": phase[0]}))

    phase = [row.state]
    progress.on_change = save
    try:
        offer = next((o for o in listed_offers(state) if o.id == row.target_offer_id), None)
        if row.state == "provisioning":
            if offer is None:
                raise MarketError("the target offer is no longer listed")
            _subscribe(state, owner, offer, None,
                       ids=(row.target_subscription_id, row.target_instance_id,
                            row.target_binding_id), flags=("move-target",))
            phase[0] = "copying"
            _set(state, move_id, state="copying")
        target = get_subscription(state, owner, row.target_subscription_id, reveal=True)
        src, dst = _endpoint(source), _endpoint(target)
        journal = _DbJournal(state, move_id)
        if phase[0] == "copying":
            copy_all(src, dst, journal=journal, workers=workers, progress=progress, stop=stop)
            if stop.is_set():
                save(progress, force=True)
                return
            phase[0] = "final-pass"
            _set(state, move_id, state="final-pass")
        if phase[0] == "final-pass":
            # Writes and deletes made meanwhile; then both sides must list the same.
            final = Progress(on_change=save)
            copy_all(src, dst, journal=journal, workers=workers, progress=final,
                     delete_extra=True, stop=stop)
            if stop.is_set():
                return
            _compare(src, dst)
            progress.add(objects_copied=final.objects_copied, bytes_copied=final.bytes_copied,
                         objects_deleted=final.objects_deleted)
            save(progress, force=True)
            phase[0] = "switching"
            _set(state, move_id, state="switching")
        if phase[0] == "switching":
            _switch(state, owner, row)
            _set(state, move_id, state="done", finished_at=store.now(), error=None)
            with state.store.begin() as conn:
                record(conn, owner, "move.done", move_id,
                       target_subscription=row.target_subscription_id)
    except (CopyError, BrokerError, MarketError, VaultError) as error:
        message = error.message if isinstance(error, MarketError) else str(error)
        _fail(state, owner, row, message)


def _compare(src: Endpoint, dst: Endpoint) -> None:
    a, b = src.client(), dst.client()
    try:
        for bucket in list_buckets(a):
            left = [(o.key, o.size) for o in list_objects(a, bucket)]
            right = [(o.key, o.size) for o in list_objects(b, bucket)]
            if left != right:
                missing = sorted(set(left) - set(right))[:3]
                raise CopyError(f"after the final pass, bucket {bucket!r} differs on the "
                                f"target (e.g. {missing}); the source changed during the "
                                "pass: the move will retry")
    finally:
        a.close()
        b.close()


def _switch(state: MarketState, owner: Principal, row: Any) -> None:
    """The target becomes the subscription; only then is the old tenant deprovisioned."""
    t = store.subscriptions
    with state.store.begin() as conn:
        target = conn.execute(select(t).where(t.c.id == row.target_subscription_id)).one()
        moved_from = f"moved-from:{row.source_subscription_id}"  # once, if this is a rerun
        flags = [f for f in json.loads(target.flags_json) if f not in ("move-target", moved_from)]
        conn.execute(update(t).where(t.c.id == target.id).values(
            flags_json=store.dumps([*flags, moved_from])))
        source = conn.execute(select(t).where(t.c.id == row.source_subscription_id)).one()
        old = json.loads(source.flags_json)
        conn.execute(update(t).where(t.c.id == source.id).values(
            flags_json=store.dumps(sorted({*old, MOVED_FLAG,
                                           f"moved-to:{row.target_subscription_id}"}))))
    if source.status == "active":
        try:
            _deprovision(state, owner, row.source_subscription_id,
                         reason=f"moved to {row.target_subscription_id} (move {row.id})")
        except (Upstream, BrokerError) as error:
            # The switch stands: the target is the subscription now. ``settle`` cancels
            # the old one once its provider answers again.
            log.warning("move %s: the old subscription %s could not be cancelled yet: %s",
                        row.id, row.source_subscription_id, error)
            with state.store.begin() as conn:
                record(conn, owner, "move.cancel-pending", row.id,
                       subscription=row.source_subscription_id, error=str(error)[:500])


def settle(state: MarketState) -> int:
    """Cancel what moves left active because a provider was unreachable at the time: the
    old subscription of a done move, the target of a failed one. Returns how many were
    cancelled; the rest wait for the next call."""
    m, s = store.moves, store.subscriptions
    with state.store.begin() as conn:
        done = conn.execute(select(m).join(s, s.c.id == m.c.source_subscription_id).where(
            m.c.state == "done", s.c.status == "active")).all()
        failed = conn.execute(select(m).join(s, s.c.id == m.c.target_subscription_id).where(
            m.c.state == "failed", s.c.status == "active")).all()
    leftovers = [(row, row.source_subscription_id,
                  f"moved to {row.target_subscription_id} (move {row.id})") for row in done]
    leftovers += [(row, row.target_subscription_id, f"move {row.id} failed") for row in failed]
    cancelled = 0
    for row, sub_id, reason in leftovers:
        try:
            _deprovision(state, _owner(state, row), sub_id, reason=reason)
            cancelled += 1
        except (Upstream, BrokerError, MarketError) as error:
            log.info("move %s: subscription %s still not cancelled: %s", row.id, sub_id,
                     error)
    return cancelled


def _fail(state: MarketState, owner: Principal, row: Any, message: str) -> None:
    """The source stays as it is; what the move provisioned on the target is cancelled."""
    note = message
    with state.store.begin() as conn:
        made = conn.execute(select(store.subscriptions.c.status).where(
            store.subscriptions.c.id == row.target_subscription_id)).first()
    if made is not None and made.status == "active":
        try:
            _deprovision(state, owner, row.target_subscription_id,
                         reason=f"move {row.id} failed")
        except (Upstream, BrokerError) as error:
            note += f" (the target subscription could not be cancelled yet: {error})"
    _set(state, row.id, state="failed", error=note[:2000], finished_at=store.now())
    with state.store.begin() as conn:
        record(conn, owner, "move.failed", row.id, error=note[:500])
