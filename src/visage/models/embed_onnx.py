"""A user-supplied ArcFace-style ONNX embedder (112x112 RGB input, any output size).

Input convention (the ArcFace/InsightFace one): RGB, ``(pixel - 127.5) / 127.5``;
NCHW or NHWC is read from the model's input shape. Faces are aligned by a
similarity transform of the detector's five landmarks onto the standard template.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx

from visage.align import ARCFACE_TEMPLATE_112, VIEW_SHIFTS, warp_chips
from visage.errors import ModelError
from visage.models.base import embed_chips
from visage.models.onnx_runtime import make_session
from visage.models.weights import file_info
from visage.types import FloatArray

ARCFACE_SIZE = 112


class ArcFaceAligner:
    """Landmarks → the ArcFace template; ``views="multi"`` adds four cuts shifted by 3 % of the chip side."""

    chip_size = ARCFACE_SIZE

    def __init__(self, views: str = "single") -> None:
        self.views = views

    def align(self, image: np.ndarray, boxes: FloatArray, landmarks: FloatArray) -> np.ndarray:
        return warp_chips(image, landmarks, ARCFACE_TEMPLATE_112, ARCFACE_SIZE)

    def align_views(self, image: np.ndarray, boxes: FloatArray, landmarks: FloatArray) -> np.ndarray:
        shifts = VIEW_SHIFTS if self.views == "multi" else VIEW_SHIFTS[:1]
        templates = [ARCFACE_TEMPLATE_112 - ARCFACE_SIZE * np.array(shift, np.float32) for shift in shifts]
        views = [warp_chips(image, landmarks, template, ARCFACE_SIZE) for template in templates]
        return np.stack(views, axis=1)


class OnnxEmbedder:
    def __init__(
        self, path: Path, name: str | None = None, threads: int = 0, batch_size: int = 32, views: str = "single"
    ) -> None:
        path = Path(path)
        self.model = file_info(path, name or path.stem)
        try:
            graph = onnx.load(str(path))
            self._session = make_session(graph, threads)
        except Exception as exc:  # onnx/onnxruntime raise many types for a bad file
            raise ModelError(f"{path} is not a usable ONNX model: {exc}", code="model_invalid") from None
        inputs = self._session.get_inputs()
        if len(inputs) != 1:
            raise ModelError(f"{path}: an embedder must take exactly one input, it takes {len(inputs)}",
                             code="model_invalid")
        self._input = inputs[0].name
        shape = list(inputs[0].shape)
        if len(shape) != 4:
            raise ModelError(f"{path}: input must be 4-D (N, C, H, W) or (N, H, W, C), got {shape}",
                             code="model_invalid")
        self._channels_first = shape[1] == 3
        spatial = shape[2:4] if self._channels_first else shape[1:3]
        if any(isinstance(d, int) and d != ARCFACE_SIZE for d in spatial):
            raise ModelError(f"{path}: input must be {ARCFACE_SIZE}x{ARCFACE_SIZE}, got {shape}", code="model_invalid")
        self._fixed_batch = shape[0] if isinstance(shape[0], int) else None
        self.batch_size = self._fixed_batch or batch_size
        self.aligner = ArcFaceAligner(views)
        probe = self._run(np.zeros((1, ARCFACE_SIZE, ARCFACE_SIZE, 3), np.uint8))
        self.dim = probe.shape[1]

    def embed(self, chips: np.ndarray, *, flip: bool = False) -> FloatArray:
        return embed_chips(chips, chip_size=ARCFACE_SIZE, dim=self.dim, flip=flip, forward=self._forward,
                           name="ONNX embedder")

    def _forward(self, batch: np.ndarray) -> np.ndarray:
        vectors = np.concatenate(
            [self._run(batch[i : i + self.batch_size]) for i in range(0, len(batch), self.batch_size)]
        )
        if not np.all(np.isfinite(vectors)):
            raise ModelError(f"{self.model.name} produced non-finite embeddings", code="model_invalid")
        return vectors

    def _run(self, chips: np.ndarray) -> np.ndarray:
        x = (chips.astype(np.float32) - 127.5) / 127.5
        if self._channels_first:
            x = x.transpose(0, 3, 1, 2)
        count = len(x)
        if self._fixed_batch and count < self._fixed_batch:  # pad a short last batch
            x = np.concatenate([x, np.zeros((self._fixed_batch - count, *x.shape[1:]), np.float32)])
        out = self._session.run(None, {self._input: np.ascontiguousarray(x)})[0]
        return np.asarray(out, dtype=np.float32).reshape(len(x), -1)[:count]
