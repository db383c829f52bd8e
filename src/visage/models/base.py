"""The small protocols every swappable model implements, and the batch they exchange."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from visage.types import FloatArray, ModelInfo


@dataclass(frozen=True)
class Detections:
    """Raw detector output in original-image pixels: ``(N, 4)`` boxes, ``(N,)`` scores, ``(N, 5, 2)`` landmarks.

    Landmark order (image coordinates): image-left eye, image-right eye, nose tip,
    image-left mouth corner, image-right mouth corner.
    """

    boxes: FloatArray
    scores: FloatArray
    landmarks: FloatArray

    def __post_init__(self) -> None:
        n = len(self.boxes)
        if self.boxes.shape != (n, 4) or self.scores.shape != (n,) or self.landmarks.shape != (n, 5, 2):
            raise ValueError(
                f"inconsistent detections: boxes {self.boxes.shape}, scores {self.scores.shape}, "
                f"landmarks {self.landmarks.shape}"
            )

    @classmethod
    def empty(cls) -> Detections:
        return cls(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros((0, 5, 2), np.float32))

    def __len__(self) -> int:
        return len(self.boxes)

    def take(self, rows: np.ndarray) -> Detections:
        return Detections(self.boxes[rows], self.scores[rows], self.landmarks[rows])


class Detector(Protocol):
    """Finds faces. Implementations must be safe to call from several threads."""

    model: ModelInfo

    def detect(self, image: np.ndarray) -> Detections: ...


class Aligner(Protocol):
    """Cuts the normalised face chip an embedder expects from an image and its detections."""

    chip_size: int

    def align(self, image: np.ndarray, boxes: FloatArray, landmarks: FloatArray) -> np.ndarray:
        """Return ``(N, chip_size, chip_size, 3)`` uint8 RGB chips."""
        ...

    def align_views(self, image: np.ndarray, boxes: FloatArray, landmarks: FloatArray) -> np.ndarray:
        """Return ``(N, V, chip_size, chip_size, 3)``: V slightly different cuts of each face, view 0 = ``align``.

        V is 1 unless the aligner was configured for several views (test-time augmentation).
        """
        ...


class Embedder(Protocol):
    """Maps aligned chips to unit-length vectors. Safe to call from several threads."""

    model: ModelInfo
    dim: int

    @property
    def aligner(self) -> Aligner:
        """The aligner producing the chips this embedder was trained on."""
        ...

    def embed(self, chips: np.ndarray, *, flip: bool = False) -> FloatArray:
        """``(N, S, S, 3)`` uint8 chips → ``(N, dim)`` float32 unit vectors."""
        ...


def l2_normalize(vectors: np.ndarray) -> FloatArray:
    """Unit-normalise rows; a zero row stays zero rather than becoming NaN."""
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    return (vectors / np.maximum(norms, 1e-12)).astype(np.float32)


def embed_views(embedder: Embedder, views: np.ndarray, *, flip: bool) -> FloatArray:
    """One unit vector per face from ``(N, V, S, S, 3)`` views: the re-normalised mean of the views' vectors."""
    count, per_face = views.shape[:2]
    vectors = embedder.embed(views.reshape(count * per_face, *views.shape[2:]), flip=flip)
    if per_face == 1:
        return vectors
    return l2_normalize(vectors.reshape(count, per_face, -1).mean(axis=1))


def embed_chips(
    chips: np.ndarray,
    *,
    chip_size: int,
    dim: int,
    flip: bool,
    forward: Callable[[np.ndarray], np.ndarray],
    name: str,
) -> FloatArray:
    """Shared embedder logic: check chip shape, run ``forward`` once on the chips (and their mirrors
    in the same batch when ``flip``), and return unit vectors; with flip, the mean of the two unit
    vectors of each face, re-normalised."""
    if chips.ndim != 4 or chips.shape[1:] != (chip_size, chip_size, 3):
        raise ValueError(f"{name} needs (N, {chip_size}, {chip_size}, 3) chips, got {chips.shape}")
    n = len(chips)
    if n == 0:
        return np.zeros((0, dim), np.float32)
    batch = np.concatenate([chips, chips[:, :, ::-1]]) if flip else chips
    vectors = l2_normalize(forward(batch))
    return l2_normalize(vectors[:n] + vectors[n:]) if flip else vectors
