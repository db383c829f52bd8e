"""Consent and legal basis: enrolment needs one, an ended consent stops matching, history is kept and audited."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy
from fastapi.testclient import TestClient

from visage import FaceAnalyzer, Settings
from visage.api.app import build_services, create_app
from visage.db import Database, migrate
from visage.errors import ConflictError, InvalidInputError, NotFoundError
from visage.gallery.api import Gallery
from visage.gallery.store_sql import NewTemplate, PersonRow
from visage.privacy.consent import Consent, ConsentRow

FORM = Consent("consent", "signed form 2026-0042", "desk:alice")


def person_vectors(seed: int) -> list[NewTemplate]:
    base = np.random.default_rng(seed).normal(size=128)
    return [NewTemplate(base + np.random.default_rng(seed + i + 100).normal(scale=0.05, size=128), "0" * 64,
                        (0.0, 0.0, 1.0, 1.0), 1.0) for i in range(2)]


@pytest.fixture()
def gallery(tmp_path: Path, analyzer: FaceAnalyzer, database_url: str) -> Iterator[Gallery]:
    g = Gallery(Settings(data_dir=tmp_path, gallery={"database_url": database_url}), analyzer=analyzer)
    g.create("members")  # no gallery-wide basis: every person needs a consent record
    yield g
    g.close()


def end_consent_in_sql(g: Gallery, external_id: str, when: datetime) -> None:
    """Move a stored consent's expiry, as time passing would."""
    with g.store.db.engine.begin() as connection:
        person = connection.scalar(sqlalchemy.select(PersonRow.id).where(PersonRow.external_id == external_id))
        connection.execute(sqlalchemy.update(ConsentRow).where(ConsentRow.person_id == person).values(expires_at=when))
        connection.execute(sqlalchemy.update(PersonRow).where(PersonRow.id == person)
                           .values(matchable_until=int(when.timestamp())))


def test_a_gallery_wide_basis_needs_a_known_basis_and_a_justification(gallery: Gallery) -> None:
    for basis, justification, code in (("because", "x", "invalid_legal_basis"),
                                       ("public_task", "  ", "justification_required"),
                                       (None, "no basis given", "invalid_legal_basis")):
        with pytest.raises(InvalidInputError) as error:
            gallery.create("w", legal_basis=basis, justification=justification)
        assert error.value.code == code
    wanted = gallery.create("wanted", legal_basis="public_task", justification="court order 12/2026, art. 9(2)(g)")
    assert (wanted.legal_basis, wanted.justification) == ("public_task", "court order 12/2026, art. 9(2)(g)")
    assert gallery.get("wanted").legal_basis == "public_task"
    enrolled = gallery.enroll_templates("wanted", "suspect", person_vectors(1))  # the basis covers everyone
    assert enrolled.person is not None and enrolled.person.consent is None and enrolled.person.matchable


def test_enrolment_without_consent_is_refused_and_stores_nothing(gallery: Gallery, astronaut: np.ndarray) -> None:
    with pytest.raises(InvalidInputError) as refused:
        gallery.enroll("members", "eileen", [astronaut])
    assert refused.value.code == "consent_required" and "consent record" in refused.value.message
    with pytest.raises(InvalidInputError) as by_vectors:
        gallery.enroll_templates("members", "eileen", person_vectors(2))
    assert by_vectors.value.code == "consent_required"
    with pytest.raises(NotFoundError):
        gallery.person("members", "eileen")
    for bad, code in ((Consent("whim", "x", "me"), "invalid_legal_basis"),
                      (Consent("consent", " ", "me"), "consent_evidence_missing"),
                      (Consent("consent", "form", "me", datetime(2020, 1, 1)), "consent_expired")):
        with pytest.raises(InvalidInputError) as error:
            gallery.enroll_templates("members", "eileen", person_vectors(2), consent=bad)
        assert error.value.code == code


def test_consent_is_stored_and_an_ended_one_stops_matching(gallery: Gallery) -> None:
    until = datetime.now(UTC) + timedelta(days=365)
    gallery.enroll_templates("members", "ana", person_vectors(3),
                             consent=Consent("consent", "form 7", "desk:alice", until))
    bob = person_vectors(4)
    gallery.enroll_templates("members", "bob", bob, consent=FORM)
    ana = gallery.person("members", "ana")
    assert ana.consent is not None and ana.consent.basis == "consent" and ana.consent.recorded_by == "desk:alice"
    assert ana.consent.expires_at is not None and abs((ana.consent.expires_at - until).total_seconds()) < 1
    assert ana.matchable and ana.consent.active()
    # More templates later need no new record while the consent is active.
    assert gallery.enroll_templates("members", "ana", person_vectors(5)).person is not None

    probe = bob[0].embedding
    assert gallery.identify_embedding("members", probe).candidates[0].external_id == "bob"
    end_consent_in_sql(gallery, "bob", datetime.now(UTC) - timedelta(seconds=1))
    assert "bob" not in [c.external_id for c in gallery.identify_embedding("members", probe).candidates]
    with pytest.raises(ConflictError) as ended:
        gallery.verify_embedding("members", "bob", probe)
    assert ended.value.code == "consent_ended"
    with pytest.raises(InvalidInputError) as expired:
        gallery.enroll_templates("members", "bob", person_vectors(6))
    assert expired.value.code == "consent_expired"
    assert not gallery.person("members", "bob").matchable

    renewed = gallery.record_consent("members", "bob", Consent("contract", "employment contract 88", "hr:bo"))
    assert renewed.matchable and renewed.consent is not None and renewed.consent.basis == "contract"
    assert gallery.verify_embedding("members", "bob", probe).same
    with gallery.store.db.read() as session:  # the history is kept: the expired record and the renewal
        assert session.scalar(sqlalchemy.select(sqlalchemy.func.count()).select_from(ConsentRow)) == 3


def test_withdrawal_stops_matching_at_once(gallery: Gallery) -> None:
    carl = person_vectors(7)
    gallery.enroll_templates("members", "carl", carl, consent=FORM)
    withdrawn = gallery.withdraw_consent("members", "carl", "desk:alice")
    assert not withdrawn.matchable and withdrawn.consent is not None
    assert withdrawn.consent.withdrawn_by == "desk:alice" and withdrawn.consent.withdrawn_at is not None
    assert gallery.identify_embedding("members", carl[0].embedding).candidates == []
    with pytest.raises(ConflictError) as again:
        gallery.withdraw_consent("members", "carl", "desk:alice")
    assert again.value.code == "no_active_consent"
    assert gallery.store.unmatchable_persons() == [("members", "carl")]  # what retention will erase


def test_the_api_takes_consent_with_the_enrolment_and_audits_it(tmp_path: Path, analyzer: FaceAnalyzer,
                                                                astronaut_bytes: bytes) -> None:
    settings = Settings(data_dir=tmp_path)
    ctx = build_services(settings, Gallery(settings, analyzer=analyzer))
    admin = {"Authorization": f"Bearer {ctx.keys.create('admin', ['admin'])[1]}"}
    with TestClient(create_app(services=ctx)) as client:
        made = client.post("/v1/galleries", json={"name": "club"}, headers=admin).json()
        assert made["legal_basis"] is None
        no_reason = client.post("/v1/galleries", json={"name": "x", "legal_basis": "public_task"}, headers=admin)
        assert no_reason.status_code == 422 and no_reason.json()["code"] == "justification_required"
        photo = [("images", ("a.jpg", astronaut_bytes, "image/jpeg"))]
        refused = client.post("/v1/galleries/club/persons", headers=admin, data={"external_id": "eileen"}, files=photo)
        assert refused.status_code == 422 and refused.json()["code"] == "consent_required"
        half = client.post("/v1/galleries/club/persons", headers=admin,
                           data={"external_id": "eileen", "consent_basis": "consent"}, files=photo)
        assert half.status_code == 422 and half.json()["code"] == "consent_incomplete"
        enrolled = client.post("/v1/galleries/club/persons", headers=admin, files=photo,
                               data={"external_id": "eileen", "consent_basis": "consent",
                                     "consent_evidence": "paper form 12", "consent_expires_at": "2099-01-31"})
        assert enrolled.status_code == 201, enrolled.text
        person = client.get("/v1/galleries/club/persons/eileen", headers=admin).json()
        assert person["consent"]["evidence"] == "paper form 12" and person["consent"]["recorded_by"].startswith("key:")
        assert person["consent"]["expires_at"].startswith("2099-01-31") and person["matchable"]

        withdrawn = client.delete("/v1/galleries/club/persons/eileen/consent", headers=admin)
        assert withdrawn.status_code == 200 and withdrawn.json()["matchable"] is False
        found = client.post("/v1/galleries/club/identify", headers=admin, files={"image": ("a.jpg", astronaut_bytes)})
        assert found.json()[0]["candidates"] == []
        renewed = client.post("/v1/galleries/club/persons/eileen/consent", headers=admin,
                              json={"basis": "consent", "evidence": "form 13"})
        assert renewed.status_code == 200 and renewed.json()["matchable"] is True
        actions = [e["action"] for e in client.get("/v1/audit", headers=admin).json()["items"]]
        assert {"consent.withdraw", "consent.record", "enroll"} <= set(actions)
        assert actions.count("enroll") == 3  # refusals are recorded too


def test_upgrading_a_database_from_before_consent_keeps_every_row(tmp_path: Path, database_url: str) -> None:
    """The 0005 migration rebuilds the persons table on SQLite: templates must not cascade away with it."""
    engine = sqlalchemy.create_engine(database_url)
    migrate(engine, "0004")
    with engine.begin() as connection:
        now = datetime.now(UTC)
        connection.execute(sqlalchemy.text(
            "INSERT INTO galleries (id, name, model_id, model_name, model_version, model_sha256, dim, watchlist, "
            "revision, created_at) VALUES (1, 'old', 'm', 'm', '1', :sha, 128, false, 1, :now)"),
            {"sha": "0" * 64, "now": now})
        connection.execute(sqlalchemy.text(
            "INSERT INTO persons (id, gallery_id, external_id, metadata, consent_id, created_at, updated_at) "
            "VALUES (1, 1, 'kept', '{}', 'c-1', :now, :now)"), {"now": now})
        connection.execute(sqlalchemy.text(
            "INSERT INTO templates (id, gallery_id, person_id, embedding, model_id, source_sha256, box, quality, "
            "created_at) VALUES (1, 1, 1, :blob, 'm', :sha, '[0, 0, 1, 1]', 1.0, :now)"),
            {"blob": np.ones(128, "<f4").tobytes(), "sha": "0" * 64, "now": now})
    engine.dispose()
    database = Database(database_url)  # upgrades to the newest revision
    try:
        with database.engine.connect() as connection:
            assert connection.scalar(sqlalchemy.text("SELECT count(*) FROM templates")) == 1
            assert connection.scalar(sqlalchemy.text("SELECT external_id FROM persons")) == "kept"
            columns = {c["name"] for c in sqlalchemy.inspect(connection).get_columns("persons")}
            assert "matchable_until" in columns and "consent_id" not in columns
    finally:
        database.close()


def test_the_console_offers_exactly_the_legal_bases_the_api_accepts() -> None:
    import json
    import re
    from importlib import resources

    from visage.privacy.consent import LEGAL_BASES

    script = resources.files("visage").joinpath("web/app.js").read_text(encoding="utf-8")
    found = re.search(r"const LEGAL_BASES = (\[[^\]]*\]);", script)
    assert found is not None and tuple(json.loads(found.group(1))) == LEGAL_BASES
