"""Per-model decision thresholds shipped with the package (``data/model_cards.json``).

Thresholds are calibrated offline by ``visage.eval.calibrate`` (LFW View 1
DevTrain) and looked up by model id and test-time augmentation (flip, multi-view), since
both shift the similarity distribution. A model without a card (a
user-supplied ONNX file) has no default threshold: callers must pass one.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any

import numpy as np

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


@dataclass(frozen=True)
class Threshold:
    """A decision threshold and the per-comparison false-match rate it stands for."""

    value: float
    operating_point: str  # as asked: "fmr=1e-3", "fpir=1e-2", "accuracy"
    fmr: float | None  # per-comparison false-match rate used (None for "accuracy")
    clamped: bool = False  # the rate lay beyond the calibrated range; the nearest calibrated point was used


def parse_rate(operating_point: str) -> tuple[str, float] | None:
    """``("fmr" | "fpir", rate)`` for a rate-named operating point, None for other names."""
    kind, _, number = operating_point.partition("=")
    if kind not in ("fmr", "fpir") or not number:
        return None
    try:
        rate = float(number)
    except ValueError:
        return None
    if not 0 < rate < 1:
        raise ConfigError(f"operating point '{operating_point}': the rate must lie between 0 and 1",
                          code="bad_operating_point")
    return kind, rate


def _card(model: ModelInfo, flip: bool, views: str) -> dict[str, Any]:
    key = card_key(model, flip, views)
    card = load_cards().get(key)
    if card is None:
        raise ConfigError(
            f"no calibrated thresholds for model {key}; pass a threshold explicitly "
            "or calibrate it with `python -m visage.eval.calibrate`",
            code="no_threshold",
        )
    return card


def calibrated_rates(card: dict[str, Any]) -> list[tuple[float, float]]:
    """The card's ``(fmr, threshold)`` points, loosest first."""
    points = [(parse_rate(name), value) for name, value in card["operating_points"].items()]
    return sorted(((rate[1], float(value)) for rate, value in points if rate and rate[0] == "fmr"), reverse=True)


def threshold_for(model: ModelInfo, flip: bool, views: str, operating_point: str, *, candidates: int = 1) -> Threshold:
    """The threshold of ``operating_point`` for this exact model; raises ``ConfigError``.

    ``fmr=R``: the similarity a single impostor comparison passes with probability R,
    interpolated log-linearly between the calibrated points (R must lie within them).
    ``fpir=R`` (identification): the rate at which a search by someone not enrolled returns a
    false candidate. Each of the ``candidates`` enrolled people is one chance of a false
    match, so it needs FMR ~ R / candidates; beyond the strictest calibrated FMR that point
    is used and the result is marked ``clamped`` (the FPIR is then higher than asked).
    Other names (``accuracy``) are looked up as they are.
    """
    card = _card(model, flip, views)
    named: dict[str, float] = card["operating_points"]
    rate = parse_rate(operating_point)
    if rate is None:
        if operating_point not in named:
            raise ConfigError(f"unknown operating point '{operating_point}' for {card_key(model, flip, views)}; "
                              f"use fmr=R, fpir=R or one of: {', '.join(sorted(named))}", code="no_threshold")
        return Threshold(float(named[operating_point]), operating_point, None)
    kind, target = rate
    points = calibrated_rates(card)
    loosest, strictest = points[0][0], points[-1][0]
    fmr = target / max(1, candidates) if kind == "fpir" else target
    if kind == "fmr" and not strictest * (1 - 1e-9) <= fmr <= loosest * (1 + 1e-9):
        raise ConfigError(f"operating point '{operating_point}' is outside the calibrated range "
                          f"fmr={strictest:g}..{loosest:g}", code="no_threshold")
    clamped = fmr < strictest * (1 - 1e-9)
    fmr = float(np.clip(fmr, strictest, loosest))
    logs = np.log10([p[0] for p in points])[::-1]
    values = np.array([p[1] for p in points])[::-1]
    value = float(np.interp(np.log10(fmr), logs, values))
    return Threshold(round(value, 5), operating_point, fmr, clamped)
