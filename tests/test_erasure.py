"""Erasure leaves nothing, receipts are verifiable, access requests return everything, retention purges on time."""

from __future__ import annotations

import io
import json
import time
import zipfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy
from fastapi.testclient import TestClient

from visage import FaceAnalyzer, Settings
from visage.api.app import build_services, create_app
from visage.gallery.api import Gallery
from visage.gallery.index_faiss import FaissIndex
from visage.gallery.retention import RetentionScheduler, run_retention
from visage.gallery.store_sql import NewTemplate, PersonRow, TemplateRow
from visage.privacy.audit import open_audit_log
from visage.privacy.consent import Consent, ConsentRow

from .test_cli import visage

NAME, BADGE, EVIDENCE = "Zebediah Quux-Marlow", "BADGE-7731-XYZ", "FORM-EVIDENCE-5521"


def templates_near(seed: int, count: int = 3) -> list[NewTemplate]:
    rng = np.random.default_rng(seed)
    base = rng.normal(size=128)
    return [NewTemplate(base + rng.normal(scale=0.05, size=128), f"{seed:02d}" * 32, (1.0, 2.0, 30.0, 40.0), 0.9)
            for _ in range(count)]


@pytest.fixture()
def gallery(tmp_path: Path, analyzer: FaceAnalyzer, database_url: str) -> Iterator[Gallery]:
    g = Gallery(Settings(data_dir=tmp_path / "data", gallery={"database_url": database_url, "hnsw_threshold": 4}),
                analyzer=analyzer)
    g.create("members")
    g.enroll_templates("members", "zeb", templates_near(1), display_name=NAME, metadata={"badge": BADGE},
                       consent=Consent("consent", EVIDENCE, "desk:alice"))
    g.enroll_templates("members", "kept", templates_near(2), consent=Consent("consent", "form 1", "desk:alice"))
    yield g
    g.close()


def stored_bytes(g: Gallery) -> bytes:
    """Every file of the data dir and the SQLite database (with WAL), concatenated."""
    files = [p for p in g.settings.data_dir.rglob("*") if p.is_file()]
    if g.store.db.is_sqlite:
        database = Path(g.store.db.url.split("///", 1)[1])
        files += list(database.parent.glob(database.name + "*"))
    return b"".join(p.read_bytes() for p in files)


def test_erasure_leaves_nothing_in_sql_index_or_files(gallery: Gallery) -> None:
    probe = templates_near(1)[0].embedding
    assert gallery.identify_embedding("members", probe).candidates[0].external_id == "zeb"
    with gallery.store.db.engine.connect() as connection:
        sealed = list(connection.scalars(sqlalchemy.select(TemplateRow.embedding).join(PersonRow)
                                         .where(PersonRow.external_id == "zeb")))
    assert len(sealed) == 3
    if gallery.store.db.is_sqlite:  # the scan below can see what it looks for
        before = stored_bytes(gallery)
        assert NAME.encode() in before and BADGE.encode() in before and sealed[0] in before

    receipt = gallery.erase("members", "zeb")

    assert [t.source_sha256 for t in receipt.templates] == ["01" * 32] * 3
    assert receipt.consent_records == 1 and receipt.index_vectors_removed == 3 and len(receipt.digest) == 64
    with gallery.store.db.engine.connect() as connection:
        for table in ("persons", "templates", "consents"):
            rows = connection.execute(sqlalchemy.text(f"SELECT * FROM {table}")).all()
            assert not any(str(value).find("zeb") >= 0 or NAME in str(value) or BADGE in str(value)
                           or EVIDENCE in str(value) for row in rows for value in row), table
        assert connection.scalar(sqlalchemy.select(sqlalchemy.func.count()).select_from(ConsentRow)) == 1
    assert [c.external_id for c in gallery.identify_embedding("members", probe, top_k=10).candidates] == ["kept"]
    index_file = next(gallery.settings.data_dir.rglob("faiss.index"))
    on_disk = FaissIndex(128, index_file, cipher=gallery.store.cipher,
                         context=f"faiss-index|gallery={gallery.get('members').id}".encode())
    assert len(on_disk) == 3  # only "kept"'s vectors are in the saved index
    if gallery.store.db.is_sqlite:
        after = stored_bytes(gallery)
        assert receipt.database_files_purged
        for trace in (NAME.encode(), BADGE.encode(), EVIDENCE.encode(), *sealed):
            assert trace not in after


def test_access_request_returns_everything_stored(tmp_path: Path, analyzer: FaceAnalyzer) -> None:
    settings = Settings(data_dir=tmp_path)
    ctx = build_services(settings, Gallery(settings, analyzer=analyzer))
    admin = {"Authorization": f"Bearer {ctx.keys.create('admin', ['admin'])[1]}"}
    reader = {"Authorization": f"Bearer {ctx.keys.create('reader', ['read'])[1]}"}
    ctx.gallery.create("members")
    vectors = templates_near(3, 2)
    ctx.gallery.enroll_templates("members", "zeb/1", vectors, display_name=NAME, metadata={"badge": BADGE},
                                 consent=Consent("consent", EVIDENCE, "desk:alice"))
    ctx.gallery.withdraw_consent("members", "zeb/1", "desk:bob")
    ctx.gallery.record_consent("members", "zeb/1", Consent("contract", "contract 9", "desk:bob"))
    with TestClient(create_app(services=ctx)) as client:
        client.post("/v1/galleries/members/persons/zeb/1/verify", headers=admin, files={"image": ("x.jpg", b"no")})
        assert client.get("/v1/galleries/members/persons/zeb/1/export", headers=reader).status_code == 403
        response = client.get("/v1/galleries/members/persons/zeb/1/export", headers=admin)
        assert response.status_code == 200 and response.headers["content-type"] == "application/zip"
        assert 'filename="visage-zeb_1.zip"' in response.headers["content-disposition"]
        missing = client.get("/v1/galleries/members/persons/nobody/export", headers=admin)
        assert missing.status_code == 404 and missing.json()["code"] == "person_not_found"
    archive = zipfile.ZipFile(io.BytesIO(response.content))
    assert sorted(archive.namelist()) == ["README.txt", "audit.json", "person.json"]
    person = json.loads(archive.read("person.json"))
    assert person["person"]["display_name"] == NAME and person["person"]["metadata"] == {"badge": BADGE}
    assert [c["basis"] for c in person["consents"]] == ["consent", "contract"]
    assert person["consents"][0]["withdrawn_by"] == "desk:bob"
    assert len(person["templates"]) == 2 and person["templates"][0]["source_sha256"] == "03" * 32
    exported = np.array([t["embedding"] for t in person["templates"]])
    stored = ctx.gallery.store.person_vectors(ctx.gallery.get("members"),
                                              ctx.gallery.person("members", "zeb/1").id)
    assert np.allclose(exported, stored, atol=1e-6)
    audit = json.loads(archive.read("audit.json"))
    assert [e["action"] for e in audit] == ["verify"] and audit[0]["outcome"] == "unsupported_format"
    assert "photos" in archive.read("README.txt").decode()


def test_cli_receipt_is_checked_against_the_audit_log(tmp_path: Path, astronaut_bytes: bytes) -> None:
    data = tmp_path / "data"
    (tmp_path / "eileen.jpg").write_bytes(astronaut_bytes)
    visage("gallery", "create", "crew", env_data_dir=data)
    visage("enroll", "crew", "eileen", str(tmp_path / "eileen.jpg"), "--consent-basis", "consent",
           "--consent-evidence", "form 3", env_data_dir=data)
    receipt_file = tmp_path / "receipt.json"
    receipt_file.write_text(visage("person", "erase", "crew", "eileen", "--yes", "--json", env_data_dir=data).stdout)
    receipt = json.loads(receipt_file.read_text())
    assert receipt["external_id"] == "eileen" and len(receipt["templates"]) == 1 and receipt["consent_records"] == 1
    checked = visage("audit", "receipt", str(receipt_file), env_data_dir=data)
    assert "receipt genuine" in checked.stdout

    altered = {**receipt, "consent_records": 0}
    receipt_file.write_text(json.dumps(altered))
    refused = visage("audit", "receipt", str(receipt_file), check=False, env_data_dir=data)
    assert refused.returncode == 1 and "ALTERED" in refused.stderr
    from visage.gallery.receipts import receipt_digest

    receipt_file.write_text(json.dumps({**altered, "digest": receipt_digest(altered)}))  # a forged, consistent one
    forged = visage("audit", "receipt", str(receipt_file), check=False, env_data_dir=data)
    assert forged.returncode == 1 and "NOT RECORDED" in forged.stderr
    receipt_file.write_text("{}")
    junk = visage("audit", "receipt", str(receipt_file), check=False, env_data_dir=data)
    assert junk.returncode == 2 and "invalid_receipt" in junk.stderr


def backdate(g: Gallery, external_id: str, days: int) -> None:
    with g.store.db.engine.begin() as connection:
        person = connection.scalar(sqlalchemy.select(PersonRow.id).where(PersonRow.external_id == external_id))
        connection.execute(sqlalchemy.update(TemplateRow).where(TemplateRow.person_id == person)
                           .values(created_at=datetime.now(UTC) - timedelta(days=days)))


def test_retention_erases_ended_consents_and_old_templates_with_an_audit_trail(gallery: Gallery) -> None:
    audit = open_audit_log(gallery.store.db, gallery.settings)
    gallery.enroll_templates("members", "old", templates_near(4), consent=Consent("consent", "f", "desk"))
    gallery.withdraw_consent("members", "zeb", "desk:alice")
    assert run_retention(gallery, audit).persons == 1  # no retention_days yet: only the withdrawn consent
    assert [p.external_id for p in gallery.persons("members")] == ["kept", "old"]

    gallery.set_retention("members", 30)
    backdate(gallery, "old", 31)
    backdate(gallery, "kept", 29)
    done = run_retention(gallery, audit)
    assert [(p.gallery, p.reason, p.persons, p.templates) for p in done.purges] == [("members", "template_age", 1, 3)]
    assert [p.external_id for p in gallery.persons("members")] == ["kept"]
    assert gallery.identify_embedding("members", templates_near(4)[0].embedding, top_k=5).candidates[0] \
        .external_id == "kept"  # the old vectors left the index too
    assert run_retention(gallery, audit).purges == []  # idempotent

    entries, _ = audit.entries(actor="retention", limit=100)
    erasures = [e for e in entries if e.action == "erase"]
    assert {e.person for e in erasures} == {"zeb", "old"}
    assert all(len(e.details["receipt"]) == 64 for e in erasures)
    purges = [e.details for e in entries if e.action == "retention.purge"]
    assert {"reason": "consent_ended", "persons": 1, "templates": 3} in purges
    assert audit.verify().ok


def test_the_service_scheduler_applies_retention(gallery: Gallery) -> None:
    gallery.withdraw_consent("members", "zeb", "desk:alice")
    scheduler = RetentionScheduler(gallery, open_audit_log(gallery.store.db, gallery.settings), interval_s=0.2)
    scheduler.start()
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and len(gallery.persons("members")) == 2:
            time.sleep(0.1)
    finally:
        scheduler.stop()
    assert [p.external_id for p in gallery.persons("members")] == ["kept"]
