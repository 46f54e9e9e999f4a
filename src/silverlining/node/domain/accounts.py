"""Accounts (tenants) and their access keys."""

from __future__ import annotations

import re
import secrets
import string
import threading
from dataclasses import dataclass

from silverlining.node.domain.model import AccessKey, Account
from silverlining.node.store.accounts import AccountRepository, AlreadyExists, NotFound
from silverlining.node.store.blobs import BlobStore
from silverlining.node.store.keyring import Keyring
from silverlining.node.store.objects import ObjectRepository

_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")
_KEY_ALPHABET = string.ascii_uppercase + "234567"
_SECRET_ALPHABET = string.ascii_letters + string.digits + "+/"


class AccountError(Exception):
    """A user-facing problem with an account command (message says what to do)."""


@dataclass(frozen=True, slots=True)
class NewKey:
    access_key_id: str
    secret_access_key: str
    account_name: str


def new_key_id() -> str:
    return "SL" + "".join(secrets.choice(_KEY_ALPHABET) for _ in range(18))


def new_secret() -> str:
    return "".join(secrets.choice(_SECRET_ALPHABET) for _ in range(40))


class AccountService:
    def __init__(
        self,
        repo: AccountRepository,
        objects: ObjectRepository,
        blobs: BlobStore,
        keyring: Keyring,
    ) -> None:
        self.repo = repo
        self.objects = objects
        self.blobs = blobs
        self.keyring = keyring
        # access key id -> (encrypted secret, plaintext): decrypt once per key version.
        self._secrets: dict[str, tuple[bytes, str]] = {}
        self._lock = threading.Lock()

    def create(self, name: str) -> Account:
        if not _NAME.match(name):
            raise AccountError(
                f"invalid account name {name!r}: use 1-63 lower-case letters, digits, '.', '_' "
                "or '-', starting with a letter or digit"
            )
        try:
            return self.repo.create(name, secrets.token_hex(32))
        except AlreadyExists:
            raise AccountError(f"account {name!r} already exists") from None

    def get(self, name: str) -> Account:
        try:
            return self.repo.get(name)
        except NotFound:
            raise AccountError(
                f"no account named {name!r} (see `silverlining accounts list`)"
            ) from None

    def all(self) -> list[Account]:
        return self.repo.all()

    def delete(self, name: str, *, purge: bool = False) -> int:
        """Delete an account and its keys. With ``purge``, also every bucket and object it
        owns (their bytes are freed); without it, an account that owns buckets is refused.
        Returns the number of blobs freed."""
        account = self.get(name)
        if not purge and self.objects.list_buckets(account.id):
            raise AccountError(
                f"account {name!r} still owns buckets; delete them first or pass --purge to "
                "delete the account's data too"
            )
        freed = self.objects.purge_account(account.id)
        self.repo.delete(name)
        self.blobs.delete_many(freed)
        return len(freed)

    def set_quota(self, name: str, quota_bytes: int | None, quota_objects: int | None) -> Account:
        try:
            return self.repo.set_quota(name, quota_bytes, quota_objects)
        except NotFound:
            raise AccountError(f"no account named {name!r}") from None

    def create_key(self, account_name: str) -> NewKey:
        self.get(account_name)
        key_id, secret = new_key_id(), new_secret()
        self.repo.add_key(account_name, key_id, self.keyring.encrypt(secret, key_id))
        return NewKey(key_id, secret, account_name)

    def list_keys(self, account_name: str) -> list[AccessKey]:
        self.get(account_name)
        return self.repo.list_keys(account_name)

    def revoke_key(self, access_key_id: str) -> AccessKey:
        try:
            key = self.repo.revoke_key(access_key_id)
        except NotFound:
            raise AccountError(f"no access key {access_key_id!r}") from None
        with self._lock:
            self._secrets.pop(access_key_id, None)
        return key

    def authenticate_key(self, access_key_id: str) -> tuple[Account, str] | None:
        """The account and secret of an active key, read fresh from the database on every
        call (so a revocation by another process takes effect on the next request); the
        decryption is cached."""
        found = self.repo.lookup_key(access_key_id)
        if found is None:
            return None
        account, secret_enc = found
        cached = self._secrets.get(access_key_id)
        if cached is not None and cached[0] == secret_enc:
            return account, cached[1]
        secret = self.keyring.decrypt(secret_enc, access_key_id)
        with self._lock:
            self._secrets[access_key_id] = (secret_enc, secret)
        return account, secret

    def ensure_admin(self) -> NewKey | None:
        """On a node with no accounts, create ``admin`` with one key and return it."""
        if self.repo.count() > 0:
            return None
        try:
            self.repo.create("admin", secrets.token_hex(32))
        except AlreadyExists:
            return None
        return self.create_key("admin")
