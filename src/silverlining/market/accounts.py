"""Accounts of the market (admin, buyer, provider operator) and their API tokens.

A token is ``slm_`` + a 16-hex-digit id + a 43-character secret. Only the secret's SHA-256
is stored, so a copy of the database does not let anyone call the API; the token itself is
shown once, when it is made.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import insert, select, update

from silverlining.market import store
from silverlining.market.state import (
    ROLES,
    Conflict,
    Invalid,
    MarketState,
    NotFound,
    Principal,
    record,
)

TOKEN_PREFIX = "slm_"  # noqa: S105 - a marker, not a secret
_TOKEN = re.compile(r"^slm_([0-9a-f]{16})([A-Za-z0-9_-]{43})$")
NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")


@dataclass(frozen=True)
class Account:
    id: str
    name: str
    role: str
    created_at: str

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "role": self.role,
                "created_at": self.created_at}


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def check_name(name: str, what: str) -> None:
    if not NAME.match(name):
        raise Invalid(f"{what} names are 1-63 characters of a-z, 0-9, '.', '_' and '-', "
                      f"starting with a letter or digit: {name[:80]!r} is not one")


def create_account(state: MarketState, actor: Principal, name: str,
                   role: str) -> tuple[Account, str]:
    """A new account and its first token (returned once, never stored in clear)."""
    check_name(name, "account")
    if role not in ROLES:
        raise Invalid(f"role must be one of {', '.join(ROLES)}")
    account = Account(str(uuid.uuid4()), name, role, store.now())
    with state.store.begin() as conn:
        if conn.execute(select(store.accounts.c.id).where(
                store.accounts.c.name == name)).first() is not None:
            raise Conflict(f"an account named {name!r} exists already")
        conn.execute(insert(store.accounts).values(
            id=account.id, name=name, role=role, created_at=account.created_at))
        token, token_id = _new_token(conn, account.id)
        record(conn, actor, "account.create", name, role=role, token_id=token_id)
    return account, token


def create_token(state: MarketState, actor: Principal, name: str) -> tuple[str, str]:
    """Another token for an account: (token, token id)."""
    with state.store.begin() as conn:
        account = _account(conn, name)
        token, token_id = _new_token(conn, account.id)
        record(conn, actor, "token.create", name, token_id=token_id)
    return token, token_id


def revoke_token(state: MarketState, actor: Principal, token_id: str) -> None:
    with state.store.begin() as conn:
        done = conn.execute(update(store.tokens).where(
            store.tokens.c.id == token_id, store.tokens.c.revoked_at.is_(None)).values(
                revoked_at=store.now())).rowcount
        if not done:
            raise NotFound(f"no live token with id {token_id!r}")
        record(conn, actor, "token.revoke", token_id)


def list_accounts(state: MarketState) -> list[Account]:
    with state.store.begin() as conn:
        rows = conn.execute(select(store.accounts).order_by(store.accounts.c.name)).all()
    return [Account(r.id, r.name, r.role, r.created_at) for r in rows]


def authenticate(state: MarketState, token: str) -> Principal | None:
    """Who holds ``token``, or None when it is not a live token."""
    match = _TOKEN.match(token)
    if match is None:
        return None
    token_id, secret = match.groups()
    with state.store.begin() as conn:
        row = conn.execute(
            select(store.tokens.c.secret_sha256, store.tokens.c.revoked_at,
                   store.accounts.c.id, store.accounts.c.name, store.accounts.c.role)
            .join(store.accounts, store.accounts.c.id == store.tokens.c.account_id)
            .where(store.tokens.c.id == token_id)).first()
    if row is None or row.revoked_at is not None:
        return None
    if not hmac.compare_digest(row.secret_sha256, _hash(secret)):
        return None
    return Principal(row.id, row.name, row.role)


def ensure_admin(state: MarketState) -> str | None:
    """On first start, the ``admin`` account; returns its token (to print once), or None
    when an admin exists already."""
    with state.store.begin() as conn:
        if conn.execute(select(store.accounts.c.id).where(
                store.accounts.c.role == "admin")).first() is not None:
            return None
        account_id = str(uuid.uuid4())
        conn.execute(insert(store.accounts).values(
            id=account_id, name="admin", role="admin", created_at=store.now()))
        token, token_id = _new_token(conn, account_id)
        record(conn, Principal(account_id, "admin", "admin"), "account.create", "admin",
               role="admin", token_id=token_id, first_start=True)
    return token


def _account(conn: Any, name: str) -> Account:
    row = conn.execute(select(store.accounts).where(store.accounts.c.name == name)).first()
    if row is None:
        raise NotFound(f"no account named {name!r}")
    return Account(row.id, row.name, row.role, row.created_at)


def _new_token(conn: Any, account_id: str) -> tuple[str, str]:
    token_id = secrets.token_hex(8)
    secret = secrets.token_urlsafe(32)
    conn.execute(insert(store.tokens).values(
        id=token_id, account_id=account_id, secret_sha256=_hash(secret),
        created_at=store.now()))
    return f"{TOKEN_PREFIX}{token_id}{secret}", token_id
