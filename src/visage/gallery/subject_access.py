"""Data-subject access: everything Visage stores about a person, as one zip of JSON files.

``person.json`` holds the gallery (and its legal basis), the person's record and metadata,
every consent record, and each template with where it came from (the photo's SHA-256, the face
box, its quality, the model) and the embedding itself, decrypted: it is the subject's data.
``audit.json`` lists every audit entry that names the person: who enrolled, verified, renewed or
withdrew what, when, and for which stated purpose. ``chips/`` holds the face chips of galleries
that keep them. Visage keeps no photos; ``README.txt`` says so, and what each file means.
"""

from __future__ import annotations

import io
import json
import zipfile
from dataclasses import asdict
from datetime import datetime
from typing import Any

from visage.db import utcnow
from visage.gallery.api import Gallery
from visage.privacy.audit import AuditLog

AUDIT_PAGE = 1000

README = """Visage: everything stored about {external_id} in gallery '{gallery}', exported {at} (UTC).

person.json  the person's record and metadata, the gallery's legal basis, every consent record,
             and each face template: where it came from (SHA-256 of the photo, face box, quality,
             model) and its embedding (128 numbers describing the face; not a photo).
audit.json   every operation recorded about this person: enrolments, verifications, consent
             changes, exports, with who made them, when, and the purpose stated.

chips/       the face cut from each enrolment photo, where the gallery keeps them (to move to a
             new recognition model without the photos).

Visage does not keep the photos people are enrolled from, so none are included.
"""


def _iso(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


def export_person(gallery: Gallery, audit: AuditLog, gallery_name: str, external_id: str) -> bytes:
    """The zip (bytes) of everything stored about ``external_id`` in ``gallery_name``."""
    record = gallery.store.gallery(gallery_name)
    person = gallery.store.person(record, external_id)
    templates = gallery.store.templates(record, external_id)
    vectors = gallery.store.person_vectors(record, person.id)
    consents = gallery.store.consent_history(record, external_id)
    document = {
        "gallery": {"name": record.name, "legal_basis": record.legal_basis, "justification": record.justification,
                    "model": record.model.id},
        "person": {"external_id": person.external_id, "display_name": person.display_name,
                   "metadata": person.metadata, "created_at": _iso(person.created_at),
                   "updated_at": _iso(person.updated_at), "matchable": person.matchable},
        "consents": [{k: _iso(v) for k, v in asdict(c).items()} for c in consents],
        "templates": [{"id": t.id, "source_sha256": t.source_sha256, "box": list(t.box), "quality": t.quality,
                       "model": t.model_id, "created_at": _iso(t.created_at),
                       "embedding": [round(float(x), 7) for x in vector]}
                      for t, vector in zip(templates, vectors, strict=True)],
    }
    entries = []
    offset = 0
    while True:
        page, total = audit.entries(gallery=gallery_name, person=external_id, offset=offset, limit=AUDIT_PAGE)
        entries += [{"id": e.id, "at": _iso(e.at), "actor": e.actor, "action": e.action, "purpose": e.purpose,
                     "outcome": e.outcome, "details": e.details} for e in page]
        offset += len(page)
        if not page or offset >= total:
            break
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("README.txt", README.format(external_id=external_id, gallery=gallery_name,
                                                     at=utcnow().isoformat(timespec="seconds")))
        archive.writestr("person.json", json.dumps(document, indent=2, ensure_ascii=False))
        archive.writestr("audit.json", json.dumps(entries[::-1], indent=2, ensure_ascii=False))  # oldest first
        for template_id, chip in gallery.store.chips(person.id).items():
            archive.writestr(f"chips/{template_id}.png", chip)
    return buffer.getvalue()
