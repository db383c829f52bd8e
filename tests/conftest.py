"""Shared fixtures: one analyzer per session (models load once), sample images, shared data paths."""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

import numpy as np
import pytest

from visage import FaceAnalyzer, Settings, load_image

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def shared_path(*parts: str) -> Path:
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"shared data not available: {path} (../shared/data is present in CI)")
    return path


@pytest.fixture(scope="session", autouse=True)
def private_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every test (and CLI subprocess) keeps its state, e.g. the converted model cache, in a fresh dir."""
    path = tmp_path_factory.mktemp("visage-data")
    os.environ["VISAGE_DATA_DIR"] = str(path)
    return path


@pytest.fixture(scope="session")
def analyzer() -> FaceAnalyzer:
    return FaceAnalyzer(Settings())


@pytest.fixture(scope="session")
def astronaut_bytes() -> bytes:
    return resources.files("visage.data").joinpath("astronaut.jpg").read_bytes()


@pytest.fixture(scope="session")
def astronaut(astronaut_bytes: bytes) -> np.ndarray:
    return load_image(astronaut_bytes)


@pytest.fixture(scope="session")
def astronaut_face(astronaut: np.ndarray) -> np.ndarray:
    """The astronaut's face with a margin (about 140x170 px)."""
    return astronaut[30:200, 160:300].copy()
