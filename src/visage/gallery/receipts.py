"""Erasure receipts: what an erasure removed, in a form the data subject can keep and anyone can check.

A receipt lists the removed templates by id with the SHA-256 of the photo each came from (the
subject can recognise their own photos' hashes) and of its sealed bytes, the consent records
removed, the index vectors dropped and whether the database files were purged of the freed
bytes. Its ``digest`` (SHA-256 over a canonical JSON form) is written into the audit log's
``erase`` entry, so the hash chain and its signed checkpoints vouch for the receipt later:
``visage audit receipt FILE`` finds the entry and compares.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from visage.gallery.store_sql import RemovedTemplate


@dataclass(frozen=True)
class ErasureReceipt:
    gallery: str
    external_id: str
    erased_at: datetime
    templates: list[RemovedTemplate]
    consent_records: int
    index_vectors_removed: int
    database_files_purged: bool
    # What else was removed with the person (e.g. sightings linked to them), by kind: count.
    linked: dict[str, int]

    def body(self) -> dict[str, Any]:
        document = asdict(self)
        document["erased_at"] = self.erased_at.isoformat()
        return document

    @property
    def digest(self) -> str:
        return receipt_digest(self.body())

    def as_dict(self) -> dict[str, Any]:
        """The receipt as handed out: its body and digest."""
        return {**self.body(), "digest": self.digest}


def receipt_digest(body: dict[str, Any]) -> str:
    """SHA-256 of a receipt body (without its digest) in canonical JSON."""
    fields = {k: v for k, v in body.items() if k not in ("digest", "audit_entry")}
    return hashlib.sha256(json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
