"""Shared pieces of the command line: consoles, options, settings from flags, progress, one-line errors."""

from __future__ import annotations

import getpass
import json
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from visage.config import DetectionSettings, EmbeddingSettings, Settings
from visage.errors import VisageError

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"}

JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON document instead of text.")]
DetectorOption = Annotated[str | None, typer.Option(help="Face detector: centerface or dlib_hog.")]
EmbedderOption = Annotated[str | None, typer.Option(help="Embedder: dlib_resnet, or onnx with --onnx-model.")]
OnnxOption = Annotated[Path | None, typer.Option("--onnx-model", help="ArcFace-style ONNX file for --embedder onnx.")]
FlipOption = Annotated[bool | None, typer.Option("--flip/--no-flip", help="Flip test-time augmentation.")]
ViewsOption = Annotated[
    str | None, typer.Option(help="single, or multi: average ten cuts of each face (most accurate, 10x the work).")
]
MinFaceOption = Annotated[float | None, typer.Option(help="Smallest face side to report, in pixels.")]


def cli_actor() -> str:
    """Who the audit log names for a command run here: the operating-system user."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid()) if hasattr(os, "getuid") else "unknown"
    return f"cli:{user}"


def fail(error: VisageError | str, code: str = "error", exit_code: int = 2) -> NoReturn:
    if isinstance(error, VisageError):
        code, message = error.code, error.message
    else:
        message = error
    err.print(f"error [{code}]: {message}", markup=False)
    raise typer.Exit(exit_code)


def build_settings(
    detector: str | None = None,
    embedder: str | None = None,
    onnx_model: Path | None = None,
    flip: bool | None = None,
    views: str | None = None,
    min_face_size: float | None = None,
) -> Settings:
    """Settings from the environment (``VISAGE_*``), with the options given on the command line on top."""

    def given(**options: object) -> dict[str, object]:
        return {name: value for name, value in options.items() if value is not None}

    try:
        base = Settings()
        return base.model_copy(
            update={
                "detection": DetectionSettings.model_validate(
                    {**base.detection.model_dump(), **given(detector=detector, min_face_size=min_face_size)}
                ),
                "embedding": EmbeddingSettings.model_validate(
                    {
                        **base.embedding.model_dump(),
                        **given(embedder=embedder, onnx_path=onnx_model, flip=flip, views=views),
                    }
                ),
            }
        )
    except ValueError as exc:
        fail(f"invalid option: {exc}".replace("\n", " "), code="invalid_config")


def make_analyzer(settings: Settings) -> Any:
    from visage.pipeline import FaceAnalyzer

    try:
        return FaceAnalyzer(settings)
    except VisageError as exc:
        fail(exc)


@contextmanager
def progress_bar(total: int, label: str) -> Iterator[Callable[..., None]]:
    """A rich progress bar on a terminal, advanced by ``step(n=1)``; a no-op when stderr is piped."""
    if not err.is_terminal:
        yield lambda n=1: None
        return
    columns = (TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=err, transient=True) as progress:
        task = progress.add_task(label, total=total)
        yield lambda n=1: progress.advance(task, n)


@contextmanager
def progress_counter(label: str) -> Iterator[Callable[[int, int], None]]:
    """Like :func:`progress_bar` for work whose size is known only once it starts: ``update(done, total)``."""
    if not err.is_terminal:
        yield lambda done, total: None
        return
    columns = (TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=err, transient=True) as progress:
        task = progress.add_task(label, total=None)
        yield lambda done, total: progress.update(task, completed=done, total=total)


def expand_images(paths: list[Path]) -> list[Path]:
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files.extend(sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES))
        else:
            files.append(path)
    return files


def print_json(document: Any) -> None:
    sys.stdout.write(json.dumps(document, indent=2) + "\n")
