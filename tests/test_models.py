"""Detectors, embedders and weights: real models on real pixels, plus a test-built ONNX embedder."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from visage import FaceAnalyzer, ModelError, Settings
from visage.config import DetectionSettings, EmbeddingSettings
from visage.models import weights
from visage.models.detect_centerface import CenterFaceDetector, plan_passes
from visage.models.detect_dlib_hog import DlibHogDetector
from visage.models.embed_onnx import OnnxEmbedder
from visage.models.nms import iou_matrix
from visage.models.registry import list_models


def test_every_shipped_model_is_present_and_verified() -> None:
    rows = list_models()
    assert {r["name"] for r in rows} == {"centerface", "dlib_shape_predictor_5", "dlib_resnet_v1"}
    for row in rows:
        assert row["status"] == "ok", row
        assert len(row["sha256"]) == 64 and Path(row["path"]).is_file()
        assert row["licence"] and row["version"] != "unknown"


def test_checksum_mismatch_names_the_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = tmp_path / "fakepkg"
    fake.mkdir()
    (fake / "__init__.py").write_text("")
    (fake / "model.bin").write_bytes(b"not the real weights")
    monkeypatch.syspath_prepend(str(tmp_path))
    entry = weights.WeightFile("fake", "fakepkg", ("fakepkg",), "model.bin", "0" * 64, "MIT",
                               "pip install fakepkg==1.0", "test")
    monkeypatch.setitem(weights.WEIGHTS, "fake", entry)
    with pytest.raises(ModelError, match=r"pip install fakepkg==1\.0") as info:
        weights.verified_path("fake")
    assert info.value.code == "model_checksum_mismatch"
    missing = weights.WeightFile("gone", "no_such_package_xyz", ("x",), "m", "0" * 64, "MIT", "pip install xyz", "t")
    monkeypatch.setitem(weights.WEIGHTS, "gone", missing)
    with pytest.raises(ModelError, match="pip install xyz") as info:
        weights.locate("gone")
    assert info.value.code == "model_missing"


def test_plan_single_pass_for_hd_and_tiles_for_huge_photos() -> None:
    config = DetectionSettings()
    hd = plan_passes(1080, 1920, config)
    assert len(hd) == 1 and 30 * hd[0].scale >= 20  # a 30 px face stays visible
    huge = plan_passes(3000, 4000, config)
    assert huge[0].crop == (0, 0, 4000, 3000) and huge[0].scale == pytest.approx(0.4)
    tiles = huge[1:]
    assert tiles and all(t.scale * config.min_face_size >= 20 for t in tiles)
    covered = np.zeros((3000, 4000), bool)
    for t in tiles:
        x0, y0, x1, y1 = t.crop
        covered[y0:y1, x0:x1] = True
        assert max(x1 - x0, y1 - y0) * t.scale <= config.max_side + 1
    assert covered.all()
    bigger_faces = plan_passes(3000, 4000, DetectionSettings(min_face_size=50))
    assert len(bigger_faces) == 1


def _scene_with_faces(
    face: np.ndarray, size: tuple[int, int], face_px: int, spots: list[tuple[int, int]]
) -> np.ndarray:
    rng = np.random.default_rng(1)
    height, width = size
    scene = cv2.GaussianBlur(rng.integers(60, 200, (height, width, 3), dtype=np.uint8), (0, 0), 8)
    small = cv2.resize(face, (face_px, round(face_px * face.shape[0] / face.shape[1])), interpolation=cv2.INTER_AREA)
    for x, y in spots:
        scene[y : y + small.shape[0], x : x + small.shape[1]] = small
    return scene


def test_centerface_finds_30_pixel_faces_in_a_1080p_frame(astronaut_face: np.ndarray) -> None:
    spots = [(200, 300), (900, 500), (1600, 800)]
    scene = _scene_with_faces(astronaut_face, (1080, 1920), 44, spots)  # the face inside is ~30 px
    detections = CenterFaceDetector(DetectionSettings()).detect(scene)
    assert len(detections) == 3
    centres = (detections.boxes[:, :2] + detections.boxes[:, 2:]) / 2
    for x, y in spots:
        assert np.min(np.hypot(centres[:, 0] - (x + 22), centres[:, 1] - (y + 27))) < 12
    sides = detections.boxes[:, 2] - detections.boxes[:, 0]
    assert (sides < 45).all()


def test_centerface_tiles_a_12_megapixel_photo(astronaut_face: np.ndarray) -> None:
    spots = [(300, 400), (2000, 1500), (3600, 2700)]
    scene = _scene_with_faces(astronaut_face, (3000, 4000), 44, spots)
    detections = CenterFaceDetector(DetectionSettings()).detect(scene)
    assert len(detections) == 3


def test_no_face_gives_empty_result(analyzer: FaceAnalyzer) -> None:
    blank = np.full((300, 400, 3), 128, np.uint8)
    faces = analyzer.analyze(blank)
    assert len(faces) == 0 and faces.image_size == (300, 400)


def test_min_face_size_and_threshold_filter(astronaut: np.ndarray) -> None:
    assert len(CenterFaceDetector(DetectionSettings(min_face_size=200)).detect(astronaut)) == 0
    assert len(CenterFaceDetector(DetectionSettings(score_threshold=0.99)).detect(astronaut)) == 0


def test_hog_and_centerface_agree_on_the_astronaut(astronaut: np.ndarray) -> None:
    centre = CenterFaceDetector().detect(astronaut)
    hog = DlibHogDetector().detect(astronaut)
    assert len(centre) == 1 and len(hog) == 1
    assert iou_matrix(centre.boxes, hog.boxes)[0, 0] > 0.4
    # Both give eyes above nose above mouth, left eye left of right eye.
    for marks in (centre.landmarks[0], hog.landmarks[0]):
        assert marks[0, 0] < marks[1, 0] and marks[:2, 1].max() < marks[2, 1] < marks[3:, 1].min()


def test_dlib_embedding_is_unit_and_stable_under_shift(analyzer: FaceAnalyzer, astronaut: np.ndarray) -> None:
    faces = analyzer.analyze(astronaut)
    assert faces.embeddings is not None and faces.embeddings.shape == (1, 128)
    assert np.linalg.norm(faces.embeddings[0]) == pytest.approx(1.0, abs=1e-5)
    assert faces.model is not None and faces.model.id.startswith("dlib_resnet_v1@55533b28a958")
    shifted = np.roll(astronaut, (17, -23), axis=(0, 1))
    other = analyzer.analyze(shifted)
    assert other.embeddings is not None
    assert float(faces.embeddings[0] @ other.embeddings[0]) > 0.97


def test_flip_augmentation_changes_and_normalises(astronaut: np.ndarray) -> None:
    plain = FaceAnalyzer(Settings(embedding=EmbeddingSettings(flip=False, views="single")))
    flipped = FaceAnalyzer(Settings(embedding=EmbeddingSettings(flip=True, views="single")))
    a, b = plain.analyze(astronaut).embeddings, flipped.analyze(astronaut).embeddings
    assert a is not None and b is not None
    assert np.linalg.norm(b[0]) == pytest.approx(1.0, abs=1e-5)
    assert 0.9 < float(a[0] @ b[0]) < 0.99999


def test_multi_view_averages_ten_distinct_cuts(astronaut: np.ndarray) -> None:
    multi = FaceAnalyzer(Settings(embedding=EmbeddingSettings(views="multi", flip=False)))
    analyzer = FaceAnalyzer(Settings(embedding=EmbeddingSettings(views="single", flip=False)))
    faces = analyzer.detect(astronaut)
    views = multi.embedder.aligner.align_views(astronaut, faces.boxes, faces.landmarks)
    assert views.shape == (1, 10, 150, 150, 3)
    # view 0 is exactly the single-view chip; every other view is a different cut of the same face
    np.testing.assert_array_equal(views[:, 0], analyzer.embedder.aligner.align(astronaut, faces.boxes, faces.landmarks))
    flat = views[0].reshape(10, -1).astype(np.int32)
    assert all(np.abs(flat[i] - flat[j]).mean() > 1 for i in range(10) for j in range(i))
    single, averaged = analyzer.analyze(astronaut).embeddings, multi.analyze(astronaut).embeddings
    assert single is not None and averaged is not None
    assert np.linalg.norm(averaged[0]) == pytest.approx(1.0, abs=1e-5)
    assert 0.95 < float(single[0] @ averaged[0]) < 0.9999
    assert len(multi.analyze(np.zeros((64, 64, 3), np.uint8))) == 0


def _tiny_arcface(path: Path, dim: int = 16, layout: str = "nchw") -> None:
    """A real ONNX graph: conv → global average pool → flatten → linear, deterministic weights."""
    rng = np.random.default_rng(3)
    conv_w = rng.normal(size=(8, 3, 3, 3)).astype(np.float32)
    fc_w = rng.normal(size=(8, dim)).astype(np.float32)
    nodes = []
    source = "input"
    if layout == "nhwc":
        nodes.append(helper.make_node("Transpose", ["input"], ["nchw"], perm=[0, 3, 1, 2]))
        source = "nchw"
    nodes += [
        helper.make_node("Conv", [source, "conv_w"], ["conv"], strides=[2, 2]),
        helper.make_node("Relu", ["conv"], ["relu"]),
        helper.make_node("GlobalAveragePool", ["relu"], ["pool"]),
        helper.make_node("Flatten", ["pool"], ["flat"]),
        helper.make_node("MatMul", ["flat", "fc_w"], ["embedding"]),
    ]
    shape = ["batch", 3, 112, 112] if layout == "nchw" else ["batch", 112, 112, 3]
    graph = helper.make_graph(
        nodes,
        "tiny_arcface",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", dim])],
        [onnx.numpy_helper.from_array(conv_w, "conv_w"), onnx.numpy_helper.from_array(fc_w, "fc_w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


@pytest.mark.parametrize("layout", ["nchw", "nhwc"])
def test_onnx_embedder_with_a_test_built_model(tmp_path: Path, astronaut: np.ndarray, layout: str) -> None:
    path = tmp_path / "tiny.onnx"
    _tiny_arcface(path, dim=16, layout=layout)
    analyzer = FaceAnalyzer(Settings(embedding=EmbeddingSettings(embedder="onnx", onnx_path=path, onnx_name="tiny")))
    faces = analyzer.analyze(astronaut)
    assert faces.embeddings is not None and faces.embeddings.shape == (1, 16)
    assert np.linalg.norm(faces.embeddings[0]) == pytest.approx(1.0, abs=1e-5)
    assert faces.model is not None and faces.model.name == "tiny" and len(faces.model.sha256) == 64
    # The ArcFace aligner puts the eyes where the template says: the chip is a face, not background.
    embedder = analyzer.embedder
    assert isinstance(embedder, OnnxEmbedder)
    chips = embedder.aligner.align(astronaut, faces.boxes, faces.landmarks)
    assert chips.shape == (1, 112, 112, 3)
    # Batched and one-by-one inference agree; flip averaging stays unit length.
    batch = np.concatenate([chips, chips[:, ::-1]])
    together = embedder.embed(batch)
    apart = np.concatenate([embedder.embed(batch[:1]), embedder.embed(batch[1:])])
    np.testing.assert_allclose(together, apart, atol=1e-5)
    assert np.linalg.norm(embedder.embed(chips, flip=True)[0]) == pytest.approx(1.0, abs=1e-5)
    # multi-view: the canonical cut plus four shifted ones
    embedder.aligner.views = "multi"
    views = embedder.aligner.align_views(astronaut, faces.boxes, faces.landmarks)
    assert views.shape == (1, 5, 112, 112, 3)
    np.testing.assert_array_equal(views[:, 0], chips)
    assert len({v.tobytes() for v in views[0]}) == 5


def test_onnx_embedder_rejects_wrong_input_size(tmp_path: Path) -> None:
    graph = helper.make_graph(
        [helper.make_node("Flatten", ["input"], ["out"])],
        "wrong",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 64, 64])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 3 * 64 * 64])],
    )
    path = tmp_path / "wrong.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path))
    with pytest.raises(ModelError, match="112x112"):
        OnnxEmbedder(path)
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"\x00\x01not onnx")
    with pytest.raises(ModelError) as info:
        OnnxEmbedder(garbage)
    assert info.value.code == "model_invalid"
