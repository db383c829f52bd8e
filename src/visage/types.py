"""Result types: frozen dataclasses, with ``Faces`` as a columnar numpy batch.

``Faces`` keeps every per-face attribute as one array with the face count as
its first dimension, so batches stay numpy end to end; ``faces[i]`` gives a
single ``Face`` and ``faces[mask]`` / ``faces[1:3]`` give a smaller ``Faces``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, overload

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float32]


@dataclass(frozen=True)
class ModelInfo:
    """Identifies the exact weights that produced a result; stored with every template."""

    name: str
    version: str
    sha256: str

    @property
    def id(self) -> str:
        """Short stable id: a gallery never mixes two different ids."""
        return f"{self.name}@{self.sha256[:12]}"

    def as_dict(self) -> dict[str, str]:
        return {"name": self.name, "version": self.version, "sha256": self.sha256, "id": self.id}


@dataclass(frozen=True)
class Quality:
    """A score in [0, 1] (1 = ideal for recognition) and why it is lower, if it is."""

    score: float
    reasons: tuple[str, ...] = ()
    measures: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Face:
    """One face: box ``x1, y1, x2, y2`` in pixels, ``(5, 2)`` landmarks, optional embedding."""

    box: FloatArray
    score: float
    landmarks: FloatArray
    quality: Quality
    embedding: FloatArray | None
    model: ModelInfo | None

    def as_dict(self, *, with_embedding: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {
            "box": [round(float(v), 2) for v in self.box],
            "score": round(self.score, 4),
            "landmarks": [[round(float(x), 2), round(float(y), 2)] for x, y in self.landmarks],
            "quality": {
                "score": round(self.quality.score, 4),
                "reasons": list(self.quality.reasons),
                "measures": {k: round(v, 4) for k, v in self.quality.measures.items()},
            },
        }
        if with_embedding and self.embedding is not None:
            out["embedding"] = [float(v) for v in self.embedding]
        if self.model is not None:
            out["model"] = self.model.as_dict()
        return out


def _as_float32(value: Any, shape_tail: tuple[int, ...], name: str) -> FloatArray:
    arr = np.asarray(value, dtype=np.float32)
    if arr.ndim != 1 + len(shape_tail) or tuple(arr.shape[1:]) != shape_tail:
        raise ValueError(f"{name} must have shape (N, {', '.join(map(str, shape_tail))}), got {arr.shape}")
    return arr


@dataclass(frozen=True)
class Faces:
    """All faces of one image, columnar. Validated on creation so shapes never drift apart."""

    boxes: FloatArray
    scores: FloatArray
    landmarks: FloatArray
    quality: FloatArray
    quality_reasons: tuple[tuple[str, ...], ...]
    quality_measures: tuple[dict[str, float], ...]
    embeddings: FloatArray | None = None
    model: ModelInfo | None = None
    image_size: tuple[int, int] = (0, 0)

    def __post_init__(self) -> None:
        object.__setattr__(self, "boxes", _as_float32(self.boxes, (4,), "boxes"))
        n = len(self.boxes)
        object.__setattr__(self, "scores", np.asarray(self.scores, dtype=np.float32).reshape(n))
        object.__setattr__(self, "landmarks", _as_float32(self.landmarks, (5, 2), "landmarks"))
        object.__setattr__(self, "quality", np.asarray(self.quality, dtype=np.float32).reshape(n))
        if self.embeddings is not None:
            emb = np.asarray(self.embeddings, dtype=np.float32)
            if emb.ndim != 2 or len(emb) != n:
                raise ValueError(f"embeddings must have shape ({n}, D), got {emb.shape}")
            object.__setattr__(self, "embeddings", emb)
        if len(self.landmarks) != n or len(self.quality_reasons) != n or len(self.quality_measures) != n:
            raise ValueError("every per-face column must have one row per face")

    @classmethod
    def empty(cls, image_size: tuple[int, int] = (0, 0), model: ModelInfo | None = None) -> Faces:
        return cls(
            boxes=np.zeros((0, 4), np.float32),
            scores=np.zeros(0, np.float32),
            landmarks=np.zeros((0, 5, 2), np.float32),
            quality=np.zeros(0, np.float32),
            quality_reasons=(),
            quality_measures=(),
            embeddings=None,
            model=model,
            image_size=image_size,
        )

    def __len__(self) -> int:
        return len(self.boxes)

    @overload
    def __getitem__(self, index: int) -> Face: ...

    @overload
    def __getitem__(self, index: slice | npt.NDArray[Any] | list[int]) -> Faces: ...

    def __getitem__(self, index: int | slice | npt.NDArray[Any] | list[int]) -> Face | Faces:
        if isinstance(index, (int, np.integer)):
            i = int(index)
            if not -len(self) <= i < len(self):
                raise IndexError(f"face index {i} out of range for {len(self)} faces")
            return Face(
                box=self.boxes[i],
                score=float(self.scores[i]),
                landmarks=self.landmarks[i],
                quality=Quality(float(self.quality[i]), self.quality_reasons[i], self.quality_measures[i]),
                embedding=None if self.embeddings is None else self.embeddings[i],
                model=self.model,
            )
        rows = np.arange(len(self))[index]
        return Faces(
            boxes=self.boxes[rows],
            scores=self.scores[rows],
            landmarks=self.landmarks[rows],
            quality=self.quality[rows],
            quality_reasons=tuple(self.quality_reasons[i] for i in rows),
            quality_measures=tuple(self.quality_measures[i] for i in rows),
            embeddings=None if self.embeddings is None else self.embeddings[rows],
            model=self.model,
            image_size=self.image_size,
        )

    def __iter__(self):  # type: ignore[no-untyped-def]
        return (self[i] for i in range(len(self)))

    @property
    def areas(self) -> FloatArray:
        return (self.boxes[:, 2] - self.boxes[:, 0]) * (self.boxes[:, 3] - self.boxes[:, 1])


@dataclass(frozen=True)
class Verification:
    """Answer to "are these the same person?" with the numbers behind it."""

    same: bool
    similarity: float
    threshold: float
    operating_point: str
