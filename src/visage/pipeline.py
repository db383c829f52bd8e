"""FaceAnalyzer: decode → detect → align → quality → embed, and batch analysis over files.

One analyzer loads its models once and can be shared by threads: onnxruntime
sessions are thread-safe and every dlib object is guarded by its own lock.
dlib holds the GIL, so to use several cores on many files use
:func:`analyze_files`, which runs one analyzer per worker process.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from visage.align import landmarks_in_box
from visage.config import Settings
from visage.errors import EmbeddingError, NoFaceError, VisageError
from visage.io.image import ImageSource, load_image
from visage.model_cards import Threshold, threshold_for
from visage.models.base import Detections, Detector, Embedder, embed_views
from visage.models.registry import build_models
from visage.quality import assess
from visage.types import Faces, ModelInfo, Verification

log = logging.getLogger(__name__)

Selection = Literal["all", "largest", "central"]


def similarity(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine similarity of two embeddings (1 = identical direction, 0 = unrelated)."""
    a = np.asarray(a, dtype=np.float64).ravel()
    b = np.asarray(b, dtype=np.float64).ravel()
    if a.shape != b.shape:
        raise EmbeddingError(f"cannot compare embeddings of sizes {a.size} and {b.size}")
    denominator = np.linalg.norm(a) * np.linalg.norm(b)
    return float(a @ b / denominator) if denominator > 0 else 0.0


def central_box(height: int, width: int, fraction: float = 0.44) -> np.ndarray:
    """A square box of ``fraction`` of the short side, centred: the face position in aligned datasets."""
    side = fraction * min(height, width)
    cx, cy = width / 2, height / 2
    return np.array([[cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2]], np.float32)


def _select(detections: Detections, height: int, width: int, selection: Selection) -> Detections:
    if selection == "all" or len(detections) <= 1:
        return detections
    boxes = detections.boxes
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    if selection == "largest":
        return detections.take(np.array([int(np.argmax(areas))]))
    cx, cy = width / 2, height / 2
    contains = (boxes[:, 0] <= cx) & (boxes[:, 2] >= cx) & (boxes[:, 1] <= cy) & (boxes[:, 3] >= cy)
    if contains.any():
        best = int(np.argmax(np.where(contains, areas, -1)))
    else:
        centres = (boxes[:, :2] + boxes[:, 2:]) / 2
        best = int(np.argmin(np.hypot(centres[:, 0] - cx, centres[:, 1] - cy)))
    return detections.take(np.array([best]))


class FaceAnalyzer:
    """Finds, aligns, scores and embeds faces. Build once, reuse (models load in ``__init__``)."""

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        detector: Detector | None = None,
        embedder: Embedder | None = None,
    ) -> None:
        self.settings = settings or Settings()
        if detector is None or embedder is None:
            built_detector, built_embedder = build_models(self.settings)
            detector = detector or built_detector
            embedder = embedder or built_embedder
        self.detector = detector
        self.embedder = embedder

    @property
    def model(self) -> ModelInfo:
        """The embedding model: every embedding this analyzer returns was made by it."""
        return self.embedder.model

    def load(self, source: ImageSource) -> np.ndarray:
        """Decode any supported input with this analyzer's size limits."""
        return load_image(source, max_pixels=self.settings.max_pixels, max_file_bytes=self.settings.max_file_bytes)

    def detect(self, source: ImageSource) -> Faces:
        """Faces with boxes, landmarks and quality, without embeddings (cheaper)."""
        return self.analyze(source, embed=False)

    def analyze(
        self,
        source: ImageSource,
        *,
        embed: bool = True,
        faces: Selection = "all",
        fallback_to_centre: bool = False,
    ) -> Faces:
        """Every face (or the ``largest`` / ``central`` one) of an image, columnar.

        An image without a face gives an empty ``Faces``, unless ``fallback_to_centre``
        asks for the central region to be treated as a face (aligned datasets such as LFW);
        such a result has ``quality_reasons`` containing ``"no_face_detected"``.
        """
        image = self.load(source)
        height, width = image.shape[:2]
        detections = _select(self.detector.detect(image), height, width, faces)
        fallback = False
        if len(detections) == 0 and fallback_to_centre:
            box = central_box(height, width)
            detections = Detections(box, np.zeros(1, np.float32), landmarks_in_box(box))
            fallback = True
        return self._describe(image, detections, embed=embed, fallback=fallback)

    def analyze_regions(self, source: ImageSource, boxes: np.ndarray, *, embed: bool = True,
                        landmarks: np.ndarray | None = None) -> Faces:
        """Treat given boxes as faces (no detection), with their 5 ``landmarks`` when known (e.g. from an earlier
        detection), else estimated inside each box."""
        image = self.load(source)
        boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
        points = landmarks_in_box(boxes) if landmarks is None else np.asarray(landmarks, np.float32).reshape(-1, 5, 2)
        detections = Detections(boxes, np.ones(len(boxes), np.float32), points)
        return self._describe(image, detections, embed=embed, fallback=False)

    def _describe(self, image: np.ndarray, detections: Detections, *, embed: bool, fallback: bool) -> Faces:
        height, width = image.shape[:2]
        model = self.model if embed else None
        if len(detections) == 0:
            return Faces.empty((height, width), model)
        views = self.embedder.aligner.align_views(image, detections.boxes, detections.landmarks)
        scores, reasons, measures = assess(detections.landmarks, views[:, 0], self.settings.quality)
        if fallback:
            reasons = tuple(("no_face_detected", *r) for r in reasons)
        embeddings = embed_views(self.embedder, views, flip=self.settings.embedding.flip) if embed else None
        return Faces(
            boxes=detections.boxes,
            scores=detections.scores,
            landmarks=detections.landmarks,
            quality=scores,
            quality_reasons=reasons,
            quality_measures=measures,
            embeddings=embeddings,
            model=model,
            image_size=(height, width),
        )

    def threshold(self, operating_point: str | None = None) -> float:
        """Similarity threshold of an operating point for this analyzer's model and augmentation."""
        return self.decision_threshold(operating_point).value

    def decision_threshold(self, operating_point: str | None = None, *, candidates: int = 1) -> Threshold:
        """The threshold with what it stands for; ``candidates``: people a 1:N search compares against."""
        embedding = self.settings.embedding
        return threshold_for(self.model, embedding.flip, embedding.views,
                             operating_point or self.settings.operating_point, candidates=candidates)

    def verify(
        self,
        image_a: ImageSource,
        image_b: ImageSource,
        *,
        threshold: float | None = None,
        operating_point: str | None = None,
    ) -> Verification:
        """Is the largest face of ``image_a`` the same person as the largest face of ``image_b``?"""
        point = operating_point or self.settings.operating_point
        limit = self.threshold(point) if threshold is None else float(threshold)
        embeddings = []
        for label, source in (("first", image_a), ("second", image_b)):
            faces = self.analyze(source, faces="largest")
            if len(faces) == 0 or faces.embeddings is None:
                raise NoFaceError(f"no face found in the {label} image")
            embeddings.append(faces.embeddings[0])
        value = similarity(embeddings[0], embeddings[1])
        return Verification(
            same=value >= limit,
            similarity=value,
            threshold=limit,
            operating_point=point if threshold is None else "explicit",
        )


@dataclass(frozen=True)
class FileResult:
    """Outcome of analysing one file in a batch: faces, or the error that stopped it."""

    path: Path
    faces: Faces | None
    error: VisageError | None


_worker_analyzer: FaceAnalyzer | None = None


def _init_worker(settings: Settings) -> None:
    global _worker_analyzer
    _worker_analyzer = FaceAnalyzer(settings)


def _analyze_one(job: tuple[str, Selection, bool]) -> FileResult:
    path, faces, fallback = job
    assert _worker_analyzer is not None
    try:
        faces_found = _worker_analyzer.analyze(path, faces=faces, fallback_to_centre=fallback)
        return FileResult(Path(path), faces_found, None)
    except VisageError as exc:
        return FileResult(Path(path), None, exc)


def analyze_files(
    paths: Sequence[str | Path],
    settings: Settings | None = None,
    *,
    workers: int = 0,
    faces: Selection = "all",
    fallback_to_centre: bool = False,
    on_result: Callable[[FileResult], None] | None = None,
) -> Iterator[FileResult]:
    """Analyse many files in order, one analyzer per worker process (``workers=0``: one per core).

    Bad files yield a ``FileResult`` with ``error`` set; they never stop the batch.
    """
    settings = settings or Settings()
    workers = workers or os.cpu_count() or 1
    jobs = [(str(p), faces, fallback_to_centre) for p in paths]
    if workers == 1 or len(jobs) <= 1:
        _init_worker(settings)
        results: Iterator[FileResult] = map(_analyze_one, jobs)
        yield from _notify(results, on_result)
        return
    worker_settings = settings.model_copy(update={"threads": max(1, (os.cpu_count() or 1) // workers)})
    # fork needs no ``__main__`` guard in user scripts; the workers build their own models,
    # so nothing thread-bound is inherited. Elsewhere, spawn is the only safe choice.
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    context = multiprocessing.get_context(method)
    pool = ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker, initargs=(worker_settings,))
    with pool:
        yield from _notify(pool.map(_analyze_one, jobs, chunksize=4), on_result)


def _notify(results: Iterator[FileResult], on_result: Callable[[FileResult], None] | None) -> Iterator[FileResult]:
    for result in results:
        if on_result is not None:
            on_result(result)
        yield result
