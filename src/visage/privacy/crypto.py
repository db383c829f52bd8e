"""Encryption at rest: every stored embedding (and face chip) is sealed with AES-256-GCM.

A record is sealed under the keyring's current data key with a fresh 96-bit nonce; the sealed
bytes are ``nonce || ciphertext || tag`` and the key's id is stored beside them, so records
sealed under different keys coexist while a rotation re-seals them. The associated data binds
a record to where it lives (table, column, owner): a ciphertext copied onto another person's
row fails authentication instead of making that person match someone else's face.

Keys never live in the database. They come from a :class:`KeyProvider`: a keyring file
(default), the ``VISAGE_DATA_KEYS`` environment variable, or a key management service plugged
in through ``privacy.key_provider`` (see :mod:`visage.privacy.data_keys`).
"""

from __future__ import annotations

import hashlib
import os
import threading
from typing import Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from visage.errors import InvalidInputError, StoreError

KEY_BYTES = 32  # AES-256
NONCE_BYTES = 12


def data_key_id(key: bytes) -> str:
    """A key's public name: a short hash of it (the same key has the same id wherever it is configured)."""
    return hashlib.sha256(b"visage-data-key-id" + key).hexdigest()[:16]


def checked_key(key: bytes, source: str) -> bytes:
    if len(key) != KEY_BYTES:
        raise InvalidInputError(f"a data key must be {KEY_BYTES} bytes (64 hex digits); {source} has {len(key)}",
                                code="invalid_key")
    return key


class KeyProvider(Protocol):
    """Where data keys come from. ``current`` seals new records; ``key`` opens old ones.

    Implementations may change their current key at any time (a rotation in another process);
    a key asked for by id must stay available until no record uses it.
    """

    def current(self) -> tuple[str, bytes]:
        """``(key id, 32-byte key)`` to seal new records with."""
        ...

    def key(self, key_id: str) -> bytes:
        """The key named ``key_id``; raises :class:`StoreError` (code ``key_unavailable``) when unknown."""
        ...

    def key_ids(self) -> list[str]:
        """Every key id it can open (a rotation reports which ones are no longer needed)."""
        ...


class DataCipher:
    """Seals and opens records with a provider's keys. Thread-safe."""

    def __init__(self, provider: KeyProvider) -> None:
        self.provider = provider
        self._ciphers: dict[str, AESGCM] = {}
        self._lock = threading.Lock()

    def _cipher(self, key_id: str, key: bytes | None = None) -> AESGCM:
        with self._lock:
            cipher = self._ciphers.get(key_id)
        if cipher is None:
            cipher = AESGCM(key if key is not None else self.provider.key(key_id))
            with self._lock:
                self._ciphers[key_id] = cipher
        return cipher

    @property
    def current_key_id(self) -> str:
        return self.provider.current()[0]

    def seal(self, plaintext: bytes, context: bytes) -> tuple[str, bytes]:
        """``(key id, nonce || ciphertext || tag)`` of ``plaintext``, bound to ``context``."""
        key_id, key = self.provider.current()
        nonce = os.urandom(NONCE_BYTES)
        return key_id, nonce + self._cipher(key_id, key).encrypt(nonce, plaintext, context)

    def open(self, key_id: str | None, sealed: bytes, context: bytes) -> bytes:
        """The plaintext of a record sealed under ``key_id`` for ``context``.

        ``key_id`` None marks a record written before encryption at rest (stored as is); the next
        ``visage keys rotate-data-key`` seals those too.
        """
        if key_id is None:
            return sealed
        try:
            return self._cipher(key_id).decrypt(sealed[:NONCE_BYTES], sealed[NONCE_BYTES:], context)
        except InvalidTag:
            raise StoreError(f"a record sealed under data key {key_id} failed authentication ({context.decode()}): "
                             "it was altered, or copied from another record", code="decryption_failed") from None
