"""Maps configuration names to model classes; the only place that knows every implementation."""

from __future__ import annotations

from pathlib import Path

from visage.config import Settings
from visage.errors import ConfigError
from visage.models.base import Detector, Embedder
from visage.models.landmarks_dlib import DlibFivePoint
from visage.models.weights import WEIGHTS, status

DETECTORS = ("centerface", "dlib_hog")
EMBEDDERS = ("dlib_resnet", "onnx")


def model_cache_dir(settings: Settings) -> Path:
    """Where converted models are cached (keyed by their source file's sha256)."""
    return settings.data_dir / "models"


def build_models(settings: Settings) -> tuple[Detector, Embedder]:
    """Instantiate the configured detector and embedder, sharing the dlib 5-point model between them."""
    from visage.models.detect_centerface import CenterFaceDetector
    from visage.models.detect_dlib_hog import DlibHogDetector
    from visage.models.embed_dlib_resnet import DlibResNetEmbedder
    from visage.models.embed_dlib_resnet_onnx import OnnxDlibResNetEmbedder
    from visage.models.embed_onnx import OnnxEmbedder

    five_point: DlibFivePoint | None = None

    def shared_five_point() -> DlibFivePoint:
        nonlocal five_point
        if five_point is None:
            five_point = DlibFivePoint()
        return five_point

    detection = settings.detection
    detector: Detector
    if detection.detector == "centerface":
        detector = CenterFaceDetector(detection, threads=settings.threads)
    elif detection.detector == "dlib_hog":
        detector = DlibHogDetector(detection, shared_five_point())
    else:  # pragma: no cover - pydantic restricts the literal
        raise ConfigError(f"unknown detector '{detection.detector}'; choose one of {DETECTORS}")

    embedding = settings.embedding
    embedder: Embedder
    if embedding.embedder == "dlib_resnet" and embedding.runtime == "onnxruntime":
        embedder = OnnxDlibResNetEmbedder(
            model_cache_dir(settings),
            shared_five_point(),
            threads=settings.threads,
            batch_size=embedding.batch_size,
            box_source=embedding.dlib_box,
            views=embedding.views,
        )
    elif embedding.embedder == "dlib_resnet":
        embedder = DlibResNetEmbedder(
            shared_five_point(), batch_size=embedding.batch_size, box_source=embedding.dlib_box, views=embedding.views
        )
    elif embedding.embedder == "onnx":
        assert embedding.onnx_path is not None  # enforced by EmbeddingSettings
        embedder = OnnxEmbedder(
            embedding.onnx_path,
            embedding.onnx_name,
            threads=settings.threads,
            batch_size=embedding.batch_size,
            views=embedding.views,
        )
    else:  # pragma: no cover
        raise ConfigError(f"unknown embedder '{embedding.embedder}'; choose one of {EMBEDDERS}")
    return detector, embedder


def list_models() -> list[dict[str, str]]:
    """Every shipped model with its version, licence, checksum, location and status."""
    return [status(name) for name in WEIGHTS]
