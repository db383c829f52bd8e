"""dlib's face ResNet read from its file, converted to ONNX, and checked against dlib itself."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from visage import FaceAnalyzer, ModelError, Settings
from visage.models.dlib_dnn_reader import read_dlib_resnet
from visage.models.dlib_resnet_onnx import cached_onnx_path, convert
from visage.models.embed_dlib_resnet import DlibResNetEmbedder
from visage.models.embed_dlib_resnet_onnx import OnnxDlibResNetEmbedder
from visage.models.weights import verified_path


@pytest.fixture(scope="module")
def dlib_embedder() -> DlibResNetEmbedder:
    return DlibResNetEmbedder()


@pytest.fixture(scope="module")
def onnx_embedder(tmp_path_factory: pytest.TempPathFactory) -> OnnxDlibResNetEmbedder:
    return OnnxDlibResNetEmbedder(tmp_path_factory.mktemp("model-cache"))


def raw_descriptors(embedder: DlibResNetEmbedder | OnnxDlibResNetEmbedder, chips: np.ndarray) -> np.ndarray:
    return embedder._forward(chips)


def test_reader_recovers_the_whole_network() -> None:
    path, _ = verified_path("dlib_resnet_v1")
    net = read_dlib_resnet(path)
    kinds = [layer.kind for layer in net.layers]
    assert kinds.count("con") == 29 and kinds.count("affine") == 29  # ResNet-29, one frozen batch-norm each
    assert kinds.count("add_prev") == 14 and kinds.count("fc") == 1
    assert net.input_size == 150
    assert all(100 < channel < 130 for channel in net.input_mean)  # mean RGB of the training chips
    assert net.layers[-1].params["weight"].shape == (256, 128)
    assert net.parameter_count() == 5_614_592


def test_reader_refuses_truncated_and_foreign_files(tmp_path: Path) -> None:
    path, _ = verified_path("dlib_resnet_v1")
    truncated = tmp_path / "truncated.dat"
    truncated.write_bytes(path.read_bytes()[:1_000_000])
    with pytest.raises(ModelError, match="ends early"):
        read_dlib_resnet(truncated)
    predictor, _ = verified_path("dlib_shape_predictor_5")
    with pytest.raises(ModelError, match="not dlib's face ResNet"):
        read_dlib_resnet(predictor)
    with pytest.raises(ModelError, match="cannot read"):
        read_dlib_resnet(tmp_path / "missing.dat")


def test_onnx_matches_dlib(
    dlib_embedder: DlibResNetEmbedder, onnx_embedder: OnnxDlibResNetEmbedder, analyzer: FaceAnalyzer,
    astronaut: np.ndarray,
) -> None:
    faces = analyzer.detect(astronaut)
    face_chips = onnx_embedder.aligner.align(astronaut, faces.boxes, faces.landmarks)
    rng = np.random.default_rng(7)
    shifted = np.roll(face_chips, (5, -4), axis=(1, 2))
    noise = rng.integers(0, 256, (3, 150, 150, 3), dtype=np.uint8)
    chips = np.concatenate([face_chips, shifted, noise, np.zeros((1, 150, 150, 3), np.uint8)])
    reference, converted = raw_descriptors(dlib_embedder, chips), raw_descriptors(onnx_embedder, chips)
    cosine = (reference * converted).sum(1) / np.linalg.norm(reference, axis=1) / np.linalg.norm(converted, axis=1)
    assert cosine.min() >= 0.9999, cosine
    assert np.allclose(np.linalg.norm(reference, axis=1), np.linalg.norm(converted, axis=1), rtol=1e-4)
    # batching and flip give the same vectors one chip at a time
    single = np.stack([onnx_embedder.embed(chip[None], flip=True)[0] for chip in chips[:3]])
    assert np.allclose(single, onnx_embedder.embed(chips[:3], flip=True), atol=1e-5)


def test_conversion_is_cached_by_source_checksum_and_rebuilt_when_damaged(tmp_path: Path) -> None:
    source, model = verified_path("dlib_resnet_v1")
    first = convert(source, model.sha256, tmp_path)
    assert first == cached_onnx_path(tmp_path, model.sha256) and model.sha256[:16] in first.name
    stamp = first.stat().st_mtime_ns
    assert convert(source, model.sha256, tmp_path) == first and first.stat().st_mtime_ns == stamp
    first.write_bytes(b"not an onnx file")
    embedder = OnnxDlibResNetEmbedder(tmp_path)
    assert embedder.onnx_path == first and first.stat().st_size > 20_000_000
    vector = embedder.embed(np.full((1, 150, 150, 3), 128, np.uint8))
    assert vector.shape == (1, 128) and np.isclose(np.linalg.norm(vector), 1.0)
    assert [p.name for p in tmp_path.iterdir()] == [first.name]  # no temporary files left behind


def test_conversion_reports_an_unwritable_cache(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        blocker = tmp_path / "file"
        blocker.write_text("a file where the cache directory should be")
        cache = blocker / "models"
    else:  # pragma: no cover - CI runs as root
        cache = tmp_path / "ro"
        cache.mkdir(mode=0o500)
    source, model = verified_path("dlib_resnet_v1")
    with pytest.raises(ModelError, match="cannot write the converted model"):
        convert(source, model.sha256, cache)


def test_runtime_setting_picks_the_implementation_and_both_share_the_model_id(tmp_path: Path) -> None:
    fast = FaceAnalyzer(Settings(data_dir=tmp_path))
    reference = FaceAnalyzer(Settings(data_dir=tmp_path, embedding={"runtime": "dlib"}))
    assert isinstance(fast.embedder, OnnxDlibResNetEmbedder)
    assert isinstance(reference.embedder, DlibResNetEmbedder)
    assert fast.model == reference.model
    assert (tmp_path / "models").is_dir()
