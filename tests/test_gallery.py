"""Galleries on SQLite + FAISS: enrol, verify, identify, erase, rebuild, bad input, concurrency."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from visage import FaceAnalyzer, Settings
from visage.config import PrivacySettings
from visage.errors import ConflictError, EmbeddingError, InvalidInputError, NotFoundError, StoreError
from visage.gallery.api import Gallery
from visage.gallery.index_faiss import FaissIndex
from visage.gallery.store_sql import NewTemplate, SqlStore
from visage.privacy.crypto import DataCipher
from visage.privacy.data_keys import open_key_provider
from visage.types import ModelInfo

from .conftest import BASIS


@pytest.fixture()
def gallery(tmp_path: Path, analyzer: FaceAnalyzer, backend: dict[str, str]) -> Iterator[Gallery]:
    g = Gallery(settings_for(tmp_path, backend), analyzer=analyzer)
    g.create("staff", **BASIS)
    yield g
    g.close()


def settings_for(data_dir: Path, backend: dict[str, str]) -> Settings:
    return Settings(data_dir=data_dir, gallery=backend)


def unit_vectors(count: int, dim: int = 128, seed: int = 0) -> np.ndarray:
    vectors = np.random.default_rng(seed).normal(size=(count, dim)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def enroll_vectors(g: Gallery, name: str, external_id: str, vectors: np.ndarray) -> None:
    """Enrol raw vectors through the store, the way a migration from another system would."""
    record = g.get(name)
    templates = [NewTemplate(v, "0" * 64, (0.0, 0.0, 1.0, 1.0), 1.0) for v in vectors]
    g.store.enroll(record, external_id, templates)


def two_faces(face: np.ndarray) -> np.ndarray:
    canvas = np.full((face.shape[0] + 40, face.shape[1] * 2 + 60, 3), 255, np.uint8)
    canvas[20 : 20 + face.shape[0], 20 : 20 + face.shape[1]] = face
    canvas[20 : 20 + face.shape[0], 40 + face.shape[1] : 40 + 2 * face.shape[1]] = face
    return canvas


def test_enrol_identify_verify_and_erase_with_a_real_face(gallery: Gallery, astronaut: np.ndarray,
                                                          astronaut_face: np.ndarray) -> None:
    result = gallery.enroll("staff", "eileen", [astronaut], display_name="Eileen Collins", metadata={"team": "sts"})
    assert result.person is not None and result.person.templates == 1 and not result.rejected
    assert gallery.person("staff", "eileen").metadata == {"team": "sts"}
    template = gallery.templates("staff", "eileen")[0]
    assert len(template.source_sha256) == 64 and template.model_id == gallery.analyzer.model.id

    shifted = np.roll(astronaut, (9, -13), axis=(0, 1))
    [match] = gallery.identify("staff", shifted)
    assert match.candidates[0].external_id == "eileen" and match.candidates[0].same
    assert match.operating_point == "fpir=1e-2" and match.fmr == pytest.approx(1e-2) and not match.clamped
    verdict = gallery.verify("staff", "eileen", astronaut_face)
    assert verdict.same and verdict.similarity > verdict.threshold

    gallery.erase("staff", "eileen")
    assert gallery.identify("staff", astronaut)[0].candidates == []
    with pytest.raises(NotFoundError):
        gallery.person("staff", "eileen")


def test_bad_images_are_rejected_with_reasons_and_the_rest_enrol(gallery: Gallery, astronaut: np.ndarray,
                                                                 astronaut_face: np.ndarray, tmp_path: Path,
                                                                 astronaut_bytes: bytes) -> None:
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    truncated = astronaut_bytes[:3000]
    blank = np.full((200, 200, 3), 128, np.uint8)
    result = gallery.enroll("staff", "eileen", [astronaut, empty, truncated, blank, two_faces(astronaut_face)])
    assert result.person is not None and len(result.template_ids) == 1
    assert [r.code for r in result.rejected] == ["empty_file", "truncated_image", "no_face", "several_faces"]
    picked = gallery.enroll("staff", "eileen", [two_faces(astronaut_face)], face_index=1)
    assert len(picked.template_ids) == 1 and gallery.person("staff", "eileen").templates == 2
    nothing = gallery.enroll("staff", "ghost", [blank])
    assert nothing.person is None
    with pytest.raises(NotFoundError):
        gallery.person("staff", "ghost")


def test_identify_ranks_people_and_uses_every_template(gallery: Gallery) -> None:
    people = unit_vectors(50, seed=1)
    second_templates = []
    for i, vector in enumerate(people):
        noisy = vector + 0.05 * unit_vectors(1, seed=100 + i)[0]
        second_templates.append(noisy / np.linalg.norm(noisy))
        enroll_vectors(gallery, "staff", f"p{i:02d}", np.stack([vector, second_templates[-1]]))
    result = gallery.identify_embedding("staff", people[17] * 3.0, top_k=3)  # any scale: normalised
    assert result.candidates[0].external_id == "p17" and len(result.candidates) == 3
    expected = (1.0 + float(second_templates[17] @ people[17])) / 2  # default scoring: mean of the best two
    assert result.candidates[0].similarity == pytest.approx(expected, abs=1e-5) and result.candidates[0].same
    assert not result.candidates[1].same  # random vectors are far apart
    assert len({c.external_id for c in result.candidates}) == 3  # people, not templates


def test_a_watchlist_is_searched_only_for_a_stated_purpose(gallery: Gallery, astronaut: np.ndarray) -> None:
    gallery.create("wanted", watchlist=True, **BASIS)
    vector = unit_vectors(1, seed=8)[0]
    enroll_vectors(gallery, "wanted", "w1", vector[None])
    for missing in (None, "", "   "):
        with pytest.raises(InvalidInputError) as refused:
            gallery.identify_embedding("wanted", vector, purpose=missing)
        assert refused.value.code == "purpose_required" and "watchlist" in refused.value.message
    with pytest.raises(InvalidInputError):
        gallery.identify("wanted", astronaut)  # refused before any face is analysed
    assert gallery.identify_embedding("wanted", vector, purpose="incident 4711").candidates[0].external_id == "w1"
    assert gallery.identify_embedding("staff", vector).candidates == []  # ordinary galleries need none by default
    gallery.settings = gallery.settings.model_copy(update={"privacy": PrivacySettings(require_purpose=True)})
    with pytest.raises(InvalidInputError):
        gallery.identify_embedding("staff", vector)


def test_enrol_templates_normalises_and_checks_vectors(gallery: Gallery) -> None:
    vectors = unit_vectors(3, seed=4)
    result = gallery.enroll_templates("staff", "imported", [NewTemplate(v * 7.0, "a" * 64, (0, 0, 1, 1), 0.8)
                                                            for v in vectors[:2]])
    assert result.person is not None and result.person.templates == 2 and len(result.template_ids) == 2
    stored = gallery.store.person_vectors(gallery.get("staff"), result.person.id)
    assert np.allclose(np.linalg.norm(stored, axis=1), 1.0, atol=1e-5)
    assert gallery.identify_embedding("staff", vectors[1]).candidates[0].external_id == "imported"
    for bad, code in ((np.ones(64), "wrong_dimension"), (np.zeros(128), "invalid_embedding")):
        with pytest.raises(EmbeddingError) as error:
            gallery.enroll_templates("staff", "broken", [NewTemplate(vectors[2], "b" * 64, (0, 0, 1, 1), 1.0),
                                                         NewTemplate(bad, "c" * 64, (0, 0, 1, 1), 1.0)])
        assert error.value.code == code
    with pytest.raises(NotFoundError):
        gallery.person("staff", "broken")  # one bad vector: nothing of that call is stored
    with pytest.raises(EmbeddingError):
        gallery.enroll_templates("staff", "empty", [])


@pytest.mark.parametrize(("scoring", "winner"), [("max", "one_lucky_match"), ("mean_best2", "two_good_matches")])
def test_person_scoring_rule_decides_between_template_sets(tmp_path: Path, analyzer: FaceAnalyzer,
                                                            scoring: str, winner: str) -> None:
    settings = Settings(data_dir=tmp_path, gallery={"scoring": scoring})
    basis = np.eye(128, dtype=np.float32)
    query = basis[0]
    near = lambda cos, axis: cos * basis[0] + np.sqrt(1 - cos**2) * basis[axis]  # noqa: E731
    with Gallery(settings, analyzer=analyzer) as g:
        g.create("g", **BASIS)
        enroll_vectors(g, "g", "one_lucky_match", np.stack([near(0.95, 1), near(0.10, 2)]))
        enroll_vectors(g, "g", "two_good_matches", np.stack([near(0.90, 3), near(0.90, 4)]))
        top = g.identify_embedding("g", query).candidates
    assert top[0].external_id == winner
    expected = {"max": 0.95, "mean_best2": 0.90}[scoring]
    assert top[0].similarity == pytest.approx(expected, abs=1e-5)


def test_bad_embeddings_and_unknown_ids(gallery: Gallery) -> None:
    with pytest.raises(EmbeddingError, match="128-d") as wrong:
        gallery.identify_embedding("staff", np.ones(64))
    assert wrong.value.code == "wrong_dimension"
    for bad in (np.full(128, np.nan), np.zeros(128)):
        with pytest.raises(EmbeddingError) as error:
            gallery.identify_embedding("staff", bad)
        assert error.value.code == "invalid_embedding"
    with pytest.raises(NotFoundError) as missing:
        gallery.identify_embedding("nowhere", unit_vectors(1)[0])
    assert missing.value.code == "gallery_not_found"
    with pytest.raises(NotFoundError):
        gallery.erase("staff", "nobody")
    with pytest.raises(ConflictError) as exists:
        gallery.create("staff", **BASIS)
    assert exists.value.code == "gallery_exists"
    record = gallery.get("staff")
    with pytest.raises(StoreError) as nan_template:
        gallery.store.enroll(record, "x", [NewTemplate(np.full(128, np.nan, np.float32), "0" * 64, (0, 0, 1, 1), 1)])
    assert nan_template.value.code == "invalid_embedding"
    with pytest.raises(NotFoundError):
        gallery.person("staff", "x")  # nothing stored half-way


def test_gallery_refuses_another_model(tmp_path: Path, analyzer: FaceAnalyzer, backend: dict[str, str]) -> None:
    settings = settings_for(tmp_path, backend)
    store = SqlStore(backend["database_url"], DataCipher(open_key_provider(settings)))
    other = ModelInfo(name="someone_else", version="1", sha256="f" * 64)
    store.create_gallery("foreign", other, 128)
    g = Gallery(settings, analyzer=analyzer, store=store)
    with pytest.raises(ConflictError) as error:
        g.identify_embedding("foreign", unit_vectors(1)[0])
    assert error.value.code == "model_mismatch"


def test_index_is_rebuilt_when_stale_or_missing(tmp_path: Path, analyzer: FaceAnalyzer,
                                                backend: dict[str, str]) -> None:
    settings = settings_for(tmp_path, backend)
    first = Gallery(settings, analyzer=analyzer)
    first.create("g", **BASIS)
    vectors = unit_vectors(20, seed=3)
    for i, v in enumerate(vectors):
        enroll_vectors(first, "g", f"p{i}", v[None])  # SQL only: the index has not seen these
    assert first.identify_embedding("g", vectors[4]).candidates[0].external_id == "p4"
    first.erase("g", "p4")
    first.close()
    # a second process: the persisted index is current; then SQL changes behind its back
    second = Gallery(settings, analyzer=analyzer)
    enroll_vectors(second, "g", "late", vectors[4][None])
    assert second.identify_embedding("g", vectors[4]).candidates[0].external_id == "late"
    second.close()
    for file in (tmp_path / "index").rglob("*"):
        if file.is_file():
            file.write_bytes(b"garbage")
    third = Gallery(settings, analyzer=analyzer)
    top = third.identify_embedding("g", vectors[7], top_k=50).candidates
    assert top[0].external_id == "p7" and "p4" not in {c.external_id for c in top} and len(top) == 20


def test_faiss_index_removal_and_persistence(tmp_path: Path) -> None:
    index = FaissIndex(8, tmp_path / "i.index")
    vectors = unit_vectors(10, dim=8)
    index.add(np.arange(10, dtype=np.int64) + 100, vectors)
    index.remove(np.array([103, 999], np.int64))
    _, ids = index.search(vectors[3], 10)
    assert 103 not in ids[0] and ids[0, -1] == -1 and len(index) == 9
    index.revision = 7
    index.save()
    again = FaissIndex(8, tmp_path / "i.index")
    assert again.revision == 7 and len(again) == 9
    assert FaissIndex(16, tmp_path / "i.index").revision == -1  # wrong dimension: treated as stale


def test_faiss_switches_to_hnsw_and_tombstones_deletions(tmp_path: Path) -> None:
    vectors = unit_vectors(3000, dim=32, seed=9)
    index = FaissIndex(32, tmp_path / "h.index", hnsw_threshold=1000)
    index.add(np.arange(800, dtype=np.int64), vectors[:800])
    assert index.kind == "flat"
    index.add(np.arange(800, 3000, dtype=np.int64), vectors[800:])
    assert index.kind == "hnsw" and len(index) == 3000
    _, ids = index.search(vectors[:200], 1)
    assert np.mean(ids[:, 0] == np.arange(200)) >= 0.99  # each vector finds itself
    index.remove(np.array([5, 6, 99_999], np.int64))  # an unknown id is ignored
    assert len(index) == 2998
    _, ids = index.search(vectors[5], 10)
    assert 5 not in ids[0] and 6 not in ids[0] and (ids[0] >= 0).all()
    index.revision = 3
    index.save()
    reloaded = FaissIndex(32, tmp_path / "h.index", hnsw_threshold=1000)
    assert reloaded.kind == "hnsw" and len(reloaded) == 2998 and reloaded.revision == 3
    assert 5 not in reloaded.search(vectors[5], 10)[1][0]
    reloaded.remove(np.arange(100, 500, dtype=np.int64))  # past 10 % tombstones: compacted
    assert len(reloaded) == 2598 and reloaded.kind == "hnsw" and not reloaded._tombstones
    assert 300 not in reloaded.search(vectors[300], 5)[1][0]


def test_threads_enrol_and_identify_at_once(gallery: Gallery) -> None:
    vectors = unit_vectors(80, seed=5)
    errors: list[BaseException] = []

    def enrol(rows: range) -> None:
        try:
            for i in rows:
                enroll_vectors(gallery, "staff", f"t{i}", vectors[i][None])
                if i % 10 == 9:
                    gallery.delete_template("staff", gallery.templates("staff", f"t{i}")[0].id)
        except BaseException as exc:  # collected and reported below
            errors.append(exc)

    def search() -> None:
        try:
            for i in range(40):
                result = gallery.identify_embedding("staff", vectors[i], top_k=1)
                assert all(c.external_id.startswith("t") for c in result.candidates)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=enrol, args=(range(k, 80, 4),)) for k in range(4)]
    threads += [threading.Thread(target=search) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    for i in range(80):
        top = gallery.identify_embedding("staff", vectors[i], top_k=1).candidates
        if i % 10 == 9:
            assert not top or top[0].external_id != f"t{i}"  # its only template was deleted
        else:
            assert top[0].external_id == f"t{i}" and top[0].similarity == pytest.approx(1.0, abs=1e-5)
