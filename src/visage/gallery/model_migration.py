"""Model upgrades without the photos: re-embed a gallery's templates from their kept face chips.

A gallery created with ``keep_chips`` stores each template's face chip, sealed (see
:mod:`visage.gallery.chips`). ``migrate_gallery`` builds a new gallery bound to the current
analyzer's model and, person by person, finds the face in each chip again, embeds it with the
new model and enrols it with the old template's provenance (photo hash, box), the chip, and the
person's whole consent history. The old gallery is left as it was: the operator compares, then
deletes it. People whose consent ended are not carried over; templates without a chip (enrolled
before chips were kept, or by raw embedding) or whose chip no longer shows a face are reported.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from visage.errors import ConflictError, VisageError
from visage.gallery.api import Gallery
from visage.gallery.chips import nearest_to_centre
from visage.gallery.store_sql import NewTemplate

PAGE = 200


@dataclass(frozen=True)
class Skipped:
    external_id: str
    template_id: int | None
    reason: str  # no_chip | no_face | consent_ended | <an error code>


@dataclass(frozen=True)
class ModelMigration:
    source: str
    target: str
    model: str
    persons: int
    templates: int
    skipped: list[Skipped] = field(default_factory=list)
    seconds: float = 0.0


def migrate_gallery(gallery: Gallery, source_name: str, target_name: str, *,
                    progress: Callable[[int, int], None] | None = None) -> ModelMigration:
    """Re-embed ``source_name`` into a new gallery ``target_name`` with ``gallery``'s analyzer."""
    started = time.perf_counter()
    store = gallery.store
    source = store.gallery(source_name)
    if not source.keep_chips:
        raise ConflictError(f"gallery '{source_name}' keeps no face chips, so its templates cannot be re-embedded "
                            "without the original photos (create galleries with keep_chips to allow it)",
                            code="no_face_chips")
    target = gallery.create(target_name, watchlist=source.watchlist, legal_basis=source.legal_basis,
                            justification=source.justification, keep_chips=True)
    if source.retention_days is not None:
        store.set_retention(target_name, source.retention_days)
    total = store.person_count(source)
    persons = templates = done = 0
    skipped: list[Skipped] = []
    offset = 0
    while page := store.persons(source, offset=offset, limit=PAGE):
        offset += len(page)
        for person in page:
            done += 1
            if progress is not None:
                progress(done, total)
            if not person.matchable:
                skipped.append(Skipped(person.external_id, None, "consent_ended"))
                continue
            chips = store.chips(person.id)
            renewed: list[NewTemplate] = []
            for template in store.templates(source, person.external_id):
                chip = chips.get(template.id)
                if chip is None:
                    skipped.append(Skipped(person.external_id, template.id, "no_chip"))
                    continue
                outcome = _reembed(gallery, chip)
                if isinstance(outcome, str):
                    skipped.append(Skipped(person.external_id, template.id, outcome))
                    continue
                embedding, quality = outcome
                renewed.append(NewTemplate(embedding, template.source_sha256, template.box, quality, chip))
            if not renewed:
                continue
            gallery.enroll_templates(target_name, person.external_id, renewed, display_name=person.display_name,
                                     metadata=person.metadata, copy_consents_from=person.id)
            persons += 1
            templates += len(renewed)
    return ModelMigration(source_name, target.name, target.model.id, persons, templates, skipped,
                          time.perf_counter() - started)


def _reembed(gallery: Gallery, chip: bytes) -> tuple[np.ndarray, float] | str:
    """The new model's embedding of the face at the chip's centre, with its quality; or why there is none."""
    try:
        image = gallery.analyzer.load(chip)
        faces = gallery.analyzer.analyze(image, fallback_to_centre=True)
    except VisageError as exc:
        return exc.code
    if len(faces) == 0 or faces.embeddings is None:
        return "no_face"
    nearest = nearest_to_centre(faces.boxes, image)
    return faces.embeddings[nearest], float(faces[nearest].quality.score)
