"""Per-model decision thresholds shipped with the package (``data/model_cards.json``).

Thresholds are calibrated offline by ``visage.eval.calibrate`` (LFW View 1
DevTrain) and looked up by model id and test-time augmentation (flip, multi-view), since
both shift the similarity distribution. A model without a card (a
user-supplied ONNX file) has no default threshold: callers must pass one.
"""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources
from typing import Any

from visage.errors import ConfigError
from visage.types import ModelInfo

CARDS_FILE = "model_cards.json"


def card_key(model: ModelInfo, flip: bool, views: str = "single") -> str:
    """Cards are per model and test-time augmentation: both shift the similarity distribution."""
    return model.id + ("+flip" if flip else "") + ("+views" if views == "multi" else "")


@lru_cache(maxsize=1)
def load_cards() -> dict[str, Any]:
    text = resources.files("visage.data").joinpath(CARDS_FILE).read_text(encoding="utf-8")
    cards: dict[str, Any] = json.loads(text)
    return cards


def threshold_for(model: ModelInfo, flip: bool, views: str, operating_point: str) -> float:
    """The similarity threshold of ``operating_point`` for this exact model; raises ``ConfigError``."""
    key = card_key(model, flip, views)
    card = load_cards().get(key)
    if card is None:
        raise ConfigError(
            f"no calibrated thresholds for model {key}; pass a threshold explicitly "
            "or calibrate it with `python -m visage.eval.calibrate`",
            code="no_threshold",
        )
    points: dict[str, float] = card["operating_points"]
    if operating_point not in points:
        raise ConfigError(
            f"unknown operating point '{operating_point}' for {key}; "
            f"known: {', '.join(sorted(points))}",
            code="no_threshold",
        )
    return float(points[operating_point])
