"""Visage never infers age, gender, race, ethnicity or emotion: no output, field, parameter or model carries one.

The line is part of the product (README, "What Visage will not do"). These tests read every
surface a caller can reach: the result types, what the library returns for a real face, the
REST contract (every schema property and parameter), the CLI's JSON and the shipped models.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from fastapi.testclient import TestClient

from tests.test_cli import visage
from visage import FaceAnalyzer, Settings, types
from visage.api.app import build_services, create_app
from visage.gallery import Gallery, api
from visage.models.weights import WEIGHTS
from visage.privacy import audit

FORBIDDEN = {"age", "ages", "gender", "genders", "sex", "race", "races", "racial", "ethnicity", "ethnic", "emotion",
             "emotions", "emotional", "mood", "smile", "smiling", "attractiveness", "beauty", "skin", "facial_hair"}


def words(name: str) -> set[str]:
    """``maxAgeYears`` and ``max_age_years`` both give {"max", "age", "years"}."""
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", name)
    return {w.lower() for w in re.split(r"[^A-Za-z0-9]+", spaced) if w}


def offending(names: Iterator[str] | list[str]) -> list[str]:
    return sorted({n for n in names if words(n) & FORBIDDEN})


def keys_of(document: Any) -> Iterator[str]:
    if isinstance(document, dict):
        for key, value in document.items():
            yield str(key)
            yield from keys_of(value)
    elif isinstance(document, list):
        for item in document:
            yield from keys_of(item)


def test_the_word_list_catches_what_it_should() -> None:
    assert offending(["estimated_age", "genderLabel", "emotion", "race", "quality", "image", "average", "storage",
                      "message", "page", "usage"]) == ["emotion", "estimated_age", "genderLabel", "race"]


def test_no_result_type_has_a_demographic_field() -> None:
    classes = [value for module in (types, api, audit) for value in vars(module).values()
               if isinstance(value, type) and dataclasses.is_dataclass(value)]
    assert len(classes) >= 8
    assert offending(f"{c.__name__}.{f.name}" for c in classes for f in dataclasses.fields(c)) == []


def test_what_the_library_returns_for_a_face_has_no_demographic_field(analyzer: FaceAnalyzer,
                                                                     astronaut: np.ndarray) -> None:
    face = analyzer.analyze(astronaut)[0]
    assert offending([f.name for f in dataclasses.fields(face)] + [f.name for f in dataclasses.fields(face.quality)]
                     + list(face.quality.reasons)) == []


def test_the_rest_contract_has_no_demographic_property_or_parameter(tmp_path: Path, analyzer: FaceAnalyzer) -> None:
    settings = Settings(data_dir=tmp_path)
    app = create_app(services=build_services(settings, Gallery(settings, analyzer=analyzer)))
    spec = TestClient(app).get("/openapi.json").json()
    properties = [name for schema in spec["components"]["schemas"].values()
                  for name in schema.get("properties", {})]
    parameters = [p["name"] for path in spec["paths"].values() for operation in path.values()
                  for p in operation.get("parameters", [])]
    assert len(properties) > 50 and parameters
    assert offending(properties + parameters + list(spec["paths"])) == []


def test_the_cli_and_the_models_carry_nothing_demographic(tmp_path: Path, astronaut_bytes: bytes) -> None:
    photo = tmp_path / "a.jpg"
    photo.write_bytes(astronaut_bytes)
    detected = json.loads(visage("detect", str(photo), "--json", env_data_dir=tmp_path).stdout)
    assert detected and offending(keys_of(detected)) == []
    listed = json.loads(visage("models", "--json", env_data_dir=tmp_path).stdout)
    names = [str(model["name"]) for model in listed]
    assert sorted(names) == sorted(w.name for w in WEIGHTS.values())  # detection, landmarks, identity only
    assert offending(names + list(keys_of(listed))) == []
