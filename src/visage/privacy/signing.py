"""The secret that signs audit checkpoints, kept outside the database.

The hash chain shows that entries were changed, inserted or removed, but SHA-256 has no key:
someone who can write the database can also recompute every hash after an edit, or cut the
newest entries off. Checkpoints signed with HMAC-SHA256 under a key the database does not
hold close both gaps: a rewritten chain no longer matches the signed hashes, and a log shorter
than its newest checkpoint was truncated.

The key comes from ``VISAGE_AUDIT_HMAC_KEY`` (hex) or a key file (created on first use,
readable by its owner only). Its id, a short hash of the key, is stored with each checkpoint so
that a verification with another key says so instead of reporting tampering.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from datetime import datetime
from pathlib import Path

from visage.errors import InvalidInputError, StoreError
from visage.privacy.key_files import create_private_file

KEY_ENVIRONMENT = "VISAGE_AUDIT_HMAC_KEY"
KEY_BYTES = 32


class AuditSigner:
    def __init__(self, key: bytes) -> None:
        if len(key) < KEY_BYTES:
            raise InvalidInputError(f"the audit signing key must have at least {KEY_BYTES} bytes", code="weak_key")
        self._key = key
        self.key_id = hashlib.sha256(b"visage-audit-key-id" + key).hexdigest()[:16]

    def mac(self, entry_id: int, entry_hash: str, at: datetime) -> str:
        message = f"{entry_id}:{entry_hash}:{at.isoformat()}".encode()
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()

    def verify(self, entry_id: int, entry_hash: str, at: datetime, mac: str) -> bool:
        return hmac.compare_digest(self.mac(entry_id, entry_hash, at), mac)

    @classmethod
    def load(cls, key_file: Path) -> AuditSigner:
        """From the environment, else from ``key_file``, which is created (mode 600) if missing."""
        text = os.environ.get(KEY_ENVIRONMENT)
        source = KEY_ENVIRONMENT
        if text is None:
            source = str(key_file)
            try:
                if not key_file.exists():
                    create_private_file(key_file, secrets.token_hex(KEY_BYTES) + "\n")
                text = key_file.read_text(encoding="utf-8")
            except OSError as exc:
                raise StoreError(f"cannot read or create the audit signing key {key_file}: {exc.strerror}",
                                 code="key_file_unreadable") from None
        try:
            key = bytes.fromhex(text.strip())
        except ValueError:
            raise InvalidInputError(f"the audit signing key in {source} is not hex", code="invalid_key") from None
        return cls(key)
