"""FaceAnalyzer behaviour: columnar results, verification, thread safety, batch files."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from visage import FaceAnalyzer, Faces, NoFaceError, analyze_files, similarity
from visage.errors import EmbeddingError


def make_faces(n: int, dim: int = 4) -> Faces:
    rng = np.random.default_rng(n)
    boxes = np.sort(rng.uniform(0, 100, (n, 4)), axis=1)[:, [0, 1, 2, 3]]
    return Faces(
        boxes=boxes,
        scores=rng.uniform(size=n),
        landmarks=rng.uniform(size=(n, 5, 2)),
        quality=rng.uniform(size=n),
        quality_reasons=tuple(("blurred",) if i % 2 else () for i in range(n)),
        quality_measures=tuple({"sharpness": float(i)} for i in range(n)),
        embeddings=rng.normal(size=(n, dim)),
    )


@given(st.integers(0, 12), st.data())
def test_faces_slicing_keeps_columns_aligned(n: int, data: st.DataObject) -> None:
    faces = make_faces(n)
    mask = np.array(data.draw(st.lists(st.booleans(), min_size=n, max_size=n)), dtype=bool)
    subset = faces[mask]
    assert len(subset) == int(mask.sum())
    for j, i in enumerate(np.flatnonzero(mask)):
        face = subset[j]
        np.testing.assert_array_equal(face.box, faces.boxes[i])
        assert face.quality.reasons == faces.quality_reasons[i]
        assert face.quality.measures == faces.quality_measures[i]
        assert face.embedding is not None and faces.embeddings is not None
        np.testing.assert_array_equal(face.embedding, faces.embeddings[i])
    assert len(faces[1:3]) == len(range(n)[1:3])


def test_faces_validation() -> None:
    with pytest.raises(ValueError, match="boxes"):
        Faces(np.zeros((2, 3)), np.zeros(2), np.zeros((2, 5, 2)), np.zeros(2), ((), ()), ({}, {}))
    with pytest.raises(ValueError, match="one row per face"):
        Faces(np.zeros((2, 4)), np.zeros(2), np.zeros((2, 5, 2)), np.zeros(2), ((),), ({}, {}))
    with pytest.raises(IndexError):
        make_faces(2)[5]


def test_similarity() -> None:
    assert similarity(np.array([1.0, 0]), np.array([2.0, 0])) == pytest.approx(1.0)
    assert similarity(np.array([1.0, 0]), np.array([0, 3.0])) == pytest.approx(0.0)
    with pytest.raises(EmbeddingError):
        similarity(np.zeros(128), np.zeros(512))


def test_analyze_records_everything(analyzer: FaceAnalyzer, astronaut_bytes: bytes) -> None:
    faces = analyzer.analyze(astronaut_bytes)
    assert len(faces) == 1
    face = faces[0]
    x1, y1, x2, y2 = face.box
    assert 160 < x1 < 200 and 40 < y1 < 80 and 250 < x2 < 290 and 160 < y2 < 200
    assert face.quality.score > 0.7 and face.quality.reasons == ()
    as_dict = face.as_dict(with_embedding=True)
    assert len(as_dict["embedding"]) == 128 and as_dict["model"]["sha256"]


def test_detect_skips_embedding(analyzer: FaceAnalyzer, astronaut: np.ndarray) -> None:
    faces = analyzer.detect(astronaut)
    assert len(faces) == 1 and faces.embeddings is None and faces.model is None


def test_verify_same_and_different(analyzer: FaceAnalyzer, astronaut: np.ndarray) -> None:
    mirrored = np.ascontiguousarray(astronaut[:, ::-1])
    result = analyzer.verify(astronaut, mirrored, threshold=0.9)
    assert result.same and result.similarity > 0.9 and result.operating_point == "explicit"
    with pytest.raises(NoFaceError):
        analyzer.verify(astronaut, np.full((200, 200, 3), 90, np.uint8), threshold=0.9)


def test_centre_fallback_is_flagged(analyzer: FaceAnalyzer) -> None:
    blank = np.full((250, 250, 3), 128, np.uint8)
    faces = analyzer.analyze(blank, fallback_to_centre=True)
    assert len(faces) == 1 and "no_face_detected" in faces.quality_reasons[0]
    assert faces.embeddings is not None


def test_one_analyzer_shared_by_threads(analyzer: FaceAnalyzer, astronaut: np.ndarray) -> None:
    images = [astronaut, np.ascontiguousarray(astronaut[:, ::-1]), np.roll(astronaut, 31, axis=1)]
    expected = [analyzer.analyze(img).embeddings for img in images]
    with ThreadPoolExecutor(6) as pool:
        results = list(pool.map(lambda i: (i, analyzer.analyze(images[i % 3]).embeddings), range(18)))
    for i, embeddings in results:
        np.testing.assert_allclose(embeddings, expected[i % 3], atol=1e-6)  # type: ignore[arg-type]


def test_analyze_files_in_worker_processes(tmp_path: Path, astronaut_bytes: bytes) -> None:
    good = tmp_path / "a.jpg"
    good.write_bytes(astronaut_bytes)
    bad = tmp_path / "b.jpg"
    bad.write_text("not an image")
    paths = [good, bad, good]
    seen: list[Path] = []
    results = list(analyze_files(paths, workers=2, on_result=lambda r: seen.append(r.path)))
    assert [r.path for r in results] == paths == seen
    assert results[1].error is not None and results[1].error.code == "unsupported_format"
    assert results[0].faces is not None and results[2].faces is not None
    np.testing.assert_allclose(results[0].faces.embeddings, results[2].faces.embeddings, atol=1e-6)  # type: ignore[arg-type]
