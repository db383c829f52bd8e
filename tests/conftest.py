"""Shared fixtures: one analyzer per session (models load once), sample images, shared data paths."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
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


def postgres_admin_url() -> str | None:
    """The PostgreSQL server for the tests: CI starts one (``.ci/postgres.sh``) and exports its URL."""
    return os.environ.get("VISAGE_TEST_POSTGRES_URL")


BACKENDS = [("sqlite", "faiss"), ("postgresql", "faiss"), ("sqlite", "milvus")]


@pytest.fixture(params=BACKENDS, ids=["sqlite+faiss", "postgresql+faiss", "sqlite+milvus"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[dict[str, str]]:
    """Gallery settings for each supported store + index pair, on fresh, empty storage."""
    database, index = request.param
    with _database(database, tmp_path) as url:
        yield {"database_url": url, "index": index}


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database of each supported kind."""
    with _database(request.param, tmp_path) as url:
        yield url


@contextmanager
def _database(kind: str, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database (PostgreSQL: a throw-away database on the test server)."""
    if kind == "sqlite":
        yield f"sqlite:///{tmp_path / 'visage.db'}"
        return
    admin = postgres_admin_url()
    if admin is None:
        if os.environ.get("CI"):
            pytest.fail("CI must provide VISAGE_TEST_POSTGRES_URL (.ci/run starts PostgreSQL)")
        pytest.skip("no PostgreSQL server: run .ci/postgres.sh and export VISAGE_TEST_POSTGRES_URL")
    import sqlalchemy

    name = f"visage_test_{uuid.uuid4().hex[:12]}"
    engine = sqlalchemy.create_engine(admin, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as connection:
            connection.execute(sqlalchemy.text(f'CREATE DATABASE "{name}"'))
    except sqlalchemy.exc.OperationalError as exc:
        engine.dispose()
        pytest.fail(f"PostgreSQL at {admin} is not reachable: {exc}")
    try:
        yield admin.rsplit("/", 1)[0] + "/" + name
    finally:
        with engine.connect() as connection:
            connection.execute(sqlalchemy.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        engine.dispose()


# A gallery-wide legal basis for tests that are not about consent (those enrol synthetic or public images).
BASIS = {"legal_basis": "legitimate_interest", "justification": "test gallery of synthetic and public images"}
