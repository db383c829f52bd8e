"""Face chips kept (sealed) by opted-in galleries, and a gallery re-embedded from them without the photos."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy
from PIL import Image

from visage import FaceAnalyzer, Settings
from visage.errors import ConflictError
from visage.gallery.api import Gallery
from visage.gallery.model_migration import migrate_gallery
from visage.gallery.rotation import rotate_data_key
from visage.gallery.store_sql import ChipRow, NewTemplate
from visage.gallery.subject_access import export_person
from visage.privacy.audit import open_audit_log
from visage.privacy.consent import Consent

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture()
def gallery(tmp_path: Path, analyzer: FaceAnalyzer, database_url: str) -> Iterator[Gallery]:
    g = Gallery(Settings(data_dir=tmp_path / "data", gallery={"database_url": database_url}), analyzer=analyzer)
    yield g
    g.close()


def test_chips_are_kept_sealed_and_the_gallery_moves_to_a_new_model(gallery: Gallery, astronaut: np.ndarray) -> None:
    gallery.create("crew", keep_chips=True)
    gallery.create("plain")
    form = Consent("consent", "form 5", "desk")
    gallery.enroll("crew", "eileen", [astronaut], display_name="Eileen", metadata={"mission": "STS-93"},
                   consent=form)
    gallery.enroll("plain", "eileen", [astronaut], consent=form)
    vector = np.random.default_rng(0).normal(size=128)
    gallery.enroll_templates("crew", "imported", [NewTemplate(vector, "0" * 64, (0, 0, 1, 1), 1.0)], consent=form)
    gallery.enroll("crew", "gone", [astronaut], consent=form)
    gallery.withdraw_consent("crew", "gone", "desk")

    with gallery.store.db.engine.connect() as connection:
        sealed = connection.scalars(sqlalchemy.select(ChipRow.sealed)).all()
    assert len(sealed) == 2  # eileen's and gone's: "plain" keeps none, "imported" had no photo
    assert not any(PNG_SIGNATURE in chip for chip in sealed)
    eileen = gallery.person("crew", "eileen")
    [chip] = gallery.store.chips(eileen.id).values()
    assert chip.startswith(PNG_SIGNATURE)
    face = np.asarray(Image.open(io.BytesIO(chip)))
    assert max(face.shape[:2]) <= 320 and face.shape[0] < astronaut.shape[0]  # the face and a margin, not the photo

    with pytest.raises(ConflictError) as no_chips:
        migrate_gallery(gallery, "plain", "plain-v2")
    assert no_chips.value.code == "no_face_chips"

    done = migrate_gallery(gallery, "crew", "crew-v2")
    assert (done.persons, done.templates) == (1, 1)
    assert sorted((s.external_id, s.reason) for s in done.skipped) == [("gone", "consent_ended"),
                                                                       ("imported", "no_chip")]
    moved = gallery.person("crew-v2", "eileen")
    assert moved.display_name == "Eileen" and moved.metadata == {"mission": "STS-93"}
    assert moved.consent is not None and moved.consent.evidence == "form 5" and moved.matchable
    assert gallery.get("crew-v2").keep_chips
    [found] = gallery.identify("crew-v2", astronaut)
    assert found.candidates[0].external_id == "eileen" and found.candidates[0].same
    old = gallery.store.person_vectors(gallery.get("crew"), eileen.id)[0]
    new = gallery.store.person_vectors(gallery.get("crew-v2"), moved.id)[0]
    assert float(old @ new) > 0.9  # the same model, re-embedded from the chip alone

    archive = zipfile.ZipFile(io.BytesIO(export_person(gallery, open_audit_log(gallery.store.db, gallery.settings),
                                                       "crew-v2", "eileen")))
    [chip_name] = [n for n in archive.namelist() if n.startswith("chips/")]
    assert archive.read(chip_name).startswith(PNG_SIGNATURE)

    rotated = rotate_data_key(gallery)
    assert rotated.resealed == 5 + 3 and gallery.store.key_usage() == {rotated.key_id: 8}  # templates + chips
    receipt = gallery.erase("crew-v2", "eileen")
    assert receipt.linked == {"face_chips": 1, "sightings": 0, "alerts": 0}
    assert gallery.store.chips(moved.id) == {}
