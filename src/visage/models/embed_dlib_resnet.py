"""dlib's ResNet-29 face embedder (128-d), on dlib itself.

dlib's PyPI build has no BLAS, so a chip costs tens of milliseconds and the call
holds the GIL: throughput across cores comes from worker processes
(:func:`visage.pipeline.analyze_files`), not threads.
"""

from __future__ import annotations

import threading

import dlib
import numpy as np

from visage.models.base import l2_normalize, mean_of_flipped
from visage.models.landmarks_dlib import CHIP_SIZE, DlibChipAligner, DlibFivePoint
from visage.models.weights import verified_path
from visage.types import FloatArray


class DlibResNetEmbedder:
    dim = 128

    def __init__(
        self, five_point: DlibFivePoint | None = None, batch_size: int = 32, box_source: str = "detector"
    ) -> None:
        path, self.model = verified_path("dlib_resnet_v1")
        self._net = dlib.face_recognition_model_v1(str(path))
        self._lock = threading.Lock()
        self.aligner = DlibChipAligner(five_point, box_source=box_source)
        self.batch_size = batch_size

    def embed(self, chips: np.ndarray, *, flip: bool = False) -> FloatArray:
        if chips.ndim != 4 or chips.shape[1:] != (CHIP_SIZE, CHIP_SIZE, 3):
            raise ValueError(f"dlib ResNet needs (N, {CHIP_SIZE}, {CHIP_SIZE}, 3) chips, got {chips.shape}")
        n = len(chips)
        if n == 0:
            return np.zeros((0, self.dim), np.float32)
        batch = np.concatenate([chips, chips[:, :, ::-1]]) if flip else chips
        rows: list[np.ndarray] = []
        with self._lock:
            for start in range(0, len(batch), self.batch_size):
                part = [np.ascontiguousarray(c) for c in batch[start : start + self.batch_size]]
                rows.extend(np.asarray(v, dtype=np.float32) for v in self._net.compute_face_descriptor(part))
        vectors = np.stack(rows)
        return mean_of_flipped(vectors, n) if flip else l2_normalize(vectors)
