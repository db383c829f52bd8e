"""Operating points: per-comparison FMR from the model card, and FPIR targets scaled by gallery size."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from visage.errors import ConfigError
from visage.model_cards import Threshold, calibrated_rates, card_key, load_cards, threshold_for
from visage.types import ModelInfo

CARD_KEY = next(key for key in load_cards() if key.endswith("+flip+views"))
CARD = load_cards()[CARD_KEY]
MODEL = ModelInfo(name=CARD["model"], version="v1", sha256=CARD["sha256"])


def decide(point: str, candidates: int = 1) -> Threshold:
    return threshold_for(MODEL, True, "multi", point, candidates=candidates)


def test_the_shipped_card_is_the_default_pipeline_and_strictly_ordered() -> None:
    assert card_key(MODEL, True, "multi") == CARD_KEY
    rates = calibrated_rates(CARD)
    assert [r for r, _ in rates][:4] == [1e-2, 1e-3, 1e-4, 1e-5]
    assert all(a[1] < b[1] for a, b in itertools.pairwise(rates))  # stricter rate, higher threshold


def test_named_points_are_exact_and_rates_between_them_interpolate() -> None:
    for name, value in CARD["operating_points"].items():
        assert decide(name).value == pytest.approx(value, abs=1e-5)
    between = decide("fmr=3e-4").value
    assert decide("fmr=1e-3").value < between < decide("fmr=1e-4").value


@given(st.floats(min_value=-5.0, max_value=-2.0), st.floats(min_value=-5.0, max_value=-2.0))
def test_a_stricter_rate_never_lowers_the_threshold(a: float, b: float) -> None:
    loose, strict = sorted((a, b), reverse=True)
    assert decide(f"fmr={10 ** strict!r}").value >= decide(f"fmr={10 ** loose!r}").value


def test_fpir_divides_by_the_people_a_search_can_falsely_match() -> None:
    ten = decide("fpir=1e-2", candidates=10)
    assert ten.fmr == pytest.approx(1e-3) and ten.value == pytest.approx(decide("fmr=1e-3").value)
    assert decide("fpir=1e-2", candidates=0).fmr == pytest.approx(1e-2)  # an empty gallery: one comparison
    huge = decide("fpir=1e-2", candidates=10**9)
    strictest = calibrated_rates(CARD)[-1]
    assert huge.clamped and huge.fmr == strictest[0] and huge.value == pytest.approx(strictest[1])
    loose = decide("fpir=0.5", candidates=2)  # looser than calibrated: the loosest calibrated point, safe side
    assert not loose.clamped and loose.fmr == pytest.approx(1e-2)


@pytest.mark.parametrize(("point", "code"), [("fmr=1e-9", "no_threshold"), ("fmr=2", "bad_operating_point"),
                                             ("fpir=0", "bad_operating_point"), ("far=1e-3", "no_threshold"),
                                             ("fmr=abc", "no_threshold")])
def test_bad_operating_points_are_named_in_the_error(point: str, code: str) -> None:
    with pytest.raises(ConfigError) as error:
        decide(point)
    assert error.value.code == code and point in error.value.message


def test_a_model_without_a_card_needs_an_explicit_threshold() -> None:
    other = ModelInfo(name="user_model", version="1", sha256="0" * 64)
    with pytest.raises(ConfigError) as error:
        threshold_for(other, False, "single", "fmr=1e-3")
    assert error.value.code == "no_threshold"
    assert np.isfinite(decide("accuracy").value)
