"""dlib's ResNet-29 face embedder (128-d), on dlib itself.

dlib's PyPI build has no BLAS, so a chip costs tens of milliseconds and the call
holds the GIL: throughput across cores comes from worker processes
(:func:`visage.pipeline.analyze_files`), not threads.
"""

from __future__ import annotations

import threading

import dlib
import numpy as np

from visage.models.base import embed_chips
from visage.models.landmarks_dlib import CHIP_SIZE, DlibChipAligner, DlibFivePoint
from visage.models.weights import verified_path
from visage.types import FloatArray


class DlibResNetEmbedder:
    dim = 128

    def __init__(
        self,
        five_point: DlibFivePoint | None = None,
        batch_size: int = 32,
        box_source: str = "detector",
        views: str = "single",
    ) -> None:
        path, self.model = verified_path("dlib_resnet_v1")
        self._net = dlib.face_recognition_model_v1(str(path))
        self._lock = threading.Lock()
        self.aligner = DlibChipAligner(five_point, box_source=box_source, views=views)
        self.batch_size = batch_size

    def embed(self, chips: np.ndarray, *, flip: bool = False) -> FloatArray:
        return embed_chips(chips, chip_size=CHIP_SIZE, dim=self.dim, flip=flip, forward=self._forward,
                           name="dlib ResNet")

    def _forward(self, batch: np.ndarray) -> np.ndarray:
        rows: list[np.ndarray] = []
        with self._lock:
            for start in range(0, len(batch), self.batch_size):
                part = [np.ascontiguousarray(c) for c in batch[start : start + self.batch_size]]
                rows.extend(np.asarray(v, dtype=np.float32) for v in self._net.compute_face_descriptor(part))
        return np.stack(rows)
