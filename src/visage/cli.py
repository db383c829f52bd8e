"""``visage`` command line: thin wrappers that parse, call the library and format.

Every command takes ``--json`` for machine-readable output. Progress bars appear
only when stderr is a terminal. Errors print one line (``error [code]: message``)
and exit non-zero, never a traceback.
"""

from __future__ import annotations

import json
import sys
import time
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer
from rich.table import Table

from visage import cli_gallery, cli_service, cli_video
from visage.cli_support import (
    DetectorOption,
    EmbedderOption,
    FlipOption,
    JsonOption,
    MinFaceOption,
    OnnxOption,
    ViewsOption,
    build_settings,
    err,
    expand_images,
    fail,
    make_analyzer,
    out,
    print_json,
    progress_bar,
)
from visage.config import Settings
from visage.errors import VisageError

app = typer.Typer(help="Visage: self-hosted, consent-first face recognition.", no_args_is_help=True,
                  pretty_exceptions_enable=False)
eval_app = typer.Typer(help="Measure accuracy on public benchmarks.", no_args_is_help=True)
app.add_typer(eval_app, name="eval")
models_app = typer.Typer(help="The shipped models.")
app.add_typer(models_app, name="models")
cli_gallery.register(app)
cli_service.register(app)
cli_video.register(app)

@app.command()
def detect(
    images: Annotated[list[Path], typer.Argument(help="Image files or folders.")],
    draw: Annotated[
        Path | None, typer.Option(help="Write the image with faces drawn (a folder for several images).")
    ] = None,
    as_json: JsonOption = False,
    detector: DetectorOption = None,
    min_face_size: MinFaceOption = None,
) -> None:
    """Find faces: boxes, five landmarks and quality for each."""
    from PIL import Image

    from visage.draw import draw_faces

    analyzer = make_analyzer(build_settings(detector=detector, min_face_size=min_face_size))
    files = expand_images(images)
    if draw is not None and len(files) > 1:
        draw.mkdir(parents=True, exist_ok=True)
    report: list[dict[str, Any]] = []
    failures = 0
    for path in files:
        try:
            image = analyzer.load(path)
            faces = analyzer.analyze(image, embed=False)
        except VisageError as exc:
            failures += 1
            report.append({"image": str(path), "error": {"code": exc.code, "message": exc.message}})
            if not as_json:
                err.print(f"{path}: error [{exc.code}]: {exc.message}", markup=False)
            continue
        report.append({"image": str(path), "faces": [face.as_dict() for face in faces]})
        if draw is not None:
            target = draw / f"{path.stem}_faces.jpg" if len(files) > 1 else draw
            Image.fromarray(draw_faces(image, faces)).save(target, quality=92)
        if not as_json:
            out.print(f"{path}: {len(faces)} face(s)", markup=False)
            for i, face in enumerate(faces):
                x1, y1, x2, y2 = face.box
                reasons = ", ".join(face.quality.reasons) or "ok"
                out.print(f"  #{i} box=({x1:.0f},{y1:.0f},{x2:.0f},{y2:.0f}) score={face.score:.2f} "
                          f"quality={face.quality.score:.2f} ({reasons})", markup=False)
    if as_json:
        print_json(report)
    if failures:
        raise typer.Exit(1)


@app.command()
def compare(
    image_a: Annotated[Path, typer.Argument(help="First image (its largest face is used).")],
    image_b: Annotated[Path, typer.Argument(help="Second image (its largest face is used).")],
    threshold: Annotated[float | None, typer.Option(help="Decision threshold (default: the model card's).")] = None,
    operating_point: Annotated[str | None, typer.Option(help="Named operating point from the model card.")] = None,
    as_json: JsonOption = False,
    flip: FlipOption = None,
    views: ViewsOption = None,
    embedder: EmbedderOption = None,
    onnx_model: OnnxOption = None,
) -> None:
    """Are two photos the same person? Prints similarity and decision."""
    analyzer = make_analyzer(build_settings(embedder=embedder, onnx_model=onnx_model, flip=flip, views=views))
    try:
        result = analyzer.verify(image_a, image_b, threshold=threshold, operating_point=operating_point)
    except VisageError as exc:
        fail(exc)
    if as_json:
        print_json({"same": result.same, "similarity": result.similarity, "threshold": result.threshold,
                    "operating_point": result.operating_point, "model": analyzer.model.as_dict()})
        return
    verdict = "same person" if result.same else "different people"
    out.print(f"similarity {result.similarity:.4f} (threshold {result.threshold:.4f}, "
              f"{result.operating_point}): {verdict}", markup=False)


@app.command()
def embed(
    folder: Annotated[Path, typer.Argument(help="Folder of images (searched recursively).")],
    output: Annotated[Path, typer.Option("--out", help="Output .npz file.")],
    workers: Annotated[int, typer.Option(help="Worker processes (0 = one per core).")] = 0,
    as_json: JsonOption = False,
    flip: FlipOption = None,
    views: ViewsOption = None,
    detector: DetectorOption = None,
    embedder: EmbedderOption = None,
    onnx_model: OnnxOption = None,
) -> None:
    """Embed every face of every image under FOLDER into one .npz file."""
    from visage.pipeline import analyze_files

    if not folder.is_dir():
        fail(f"{folder} is not a folder", code="not_a_folder")
    settings = build_settings(
        detector=detector, embedder=embedder, onnx_model=onnx_model, flip=flip, views=views
    )
    make_analyzer(settings)  # fail fast on a bad model before starting workers
    files = expand_images([folder])
    if not files:
        fail(f"no images found under {folder}", code="no_images")
    rows: dict[str, list[Any]] = {k: [] for k in ("paths", "face_index", "boxes", "scores", "landmarks", "quality",
                                                   "embeddings")}
    errors: list[dict[str, str]] = []
    model: dict[str, str] = {}
    with progress_bar(len(files), "embedding") as advance:
        for result in analyze_files(files, settings, workers=workers, on_result=lambda _: advance()):
            if result.error is not None or result.faces is None:
                assert result.error is not None
                errors.append({"image": str(result.path), "code": result.error.code, "message": result.error.message})
                continue
            faces = result.faces
            if faces.model is not None:
                model = faces.model.as_dict()
            for i, face in enumerate(faces):
                rows["paths"].append(str(result.path))
                rows["face_index"].append(i)
                rows["boxes"].append(face.box)
                rows["scores"].append(face.score)
                rows["landmarks"].append(face.landmarks)
                rows["quality"].append(face.quality.score)
                rows["embeddings"].append(face.embedding)
    dim = len(rows["embeddings"][0]) if rows["embeddings"] else 0
    np.savez_compressed(
        output,
        paths=np.array(rows["paths"], dtype=str),
        face_index=np.array(rows["face_index"], dtype=np.int32),
        boxes=np.array(rows["boxes"], dtype=np.float32).reshape(-1, 4),
        scores=np.array(rows["scores"], dtype=np.float32),
        landmarks=np.array(rows["landmarks"], dtype=np.float32).reshape(-1, 5, 2),
        quality=np.array(rows["quality"], dtype=np.float32),
        embeddings=np.array(rows["embeddings"], dtype=np.float32).reshape(-1, dim),
        model=np.array(json.dumps(model)),
    )
    summary = {"images": len(files), "faces": len(rows["paths"]), "errors": errors, "output": str(output),
               "model": model}
    if as_json:
        print_json(summary)
    else:
        out.print(f"{len(rows['paths'])} face(s) from {len(files) - len(errors)} image(s) written to {output}",
                  markup=False)
        for e in errors:
            err.print(f"  skipped {e['image']}: [{e['code']}] {e['message']}", markup=False)


@models_app.callback(invoke_without_command=True)
def models(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """List every shipped model: name, version, licence, sha256, path, status."""
    from visage.models.registry import list_models

    if ctx.invoked_subcommand is not None:
        return

    rows = list_models()
    if as_json:
        print_json(rows)
    else:
        table = Table("name", "version", "licence", "sha256", "status", "path")
        for row in rows:
            table.add_row(row["name"], row["version"], row["licence"], row["sha256"][:16] + "…", row["status"],
                          row["path"])
        out.print(table)
    if any(row["status"] != "ok" for row in rows):
        raise typer.Exit(1)


@models_app.command("convert")
def models_convert(as_json: JsonOption = False) -> None:
    """Convert dlib's face ResNet to ONNX now (otherwise done on first use) and show the cached file."""
    from visage.models.dlib_resnet_onnx import convert
    from visage.models.registry import model_cache_dir
    from visage.models.weights import verified_path

    source, model = verified_path("dlib_resnet_v1")
    started = time.perf_counter()
    target = convert(source, model.sha256, model_cache_dir(Settings()), force=True)
    row = {"model": model.id, "source": str(source), "onnx": str(target), "seconds": time.perf_counter() - started}
    if as_json:
        print_json(row)
    else:
        out.print(f"converted {model.id} in {row['seconds']:.1f} s → {target}", markup=False)


@app.command()
def demo(as_json: JsonOption = False) -> None:
    """Analyse the shipped sample photo and print its faces (what `make run` does)."""
    analyzer = make_analyzer(Settings())
    sample = resources.files("visage.data").joinpath("astronaut.jpg").read_bytes()
    faces = analyzer.analyze(sample)
    if as_json:
        print_json({"image": "astronaut.jpg (NASA, public domain)", "faces": [f.as_dict() for f in faces]})
        return
    out.print(f"Visage demo — sample photo (NASA, public domain): {len(faces)} face(s), "
              f"model {analyzer.model.id}", markup=False)
    for i, face in enumerate(faces):
        x1, y1, x2, y2 = face.box
        dim = 0 if face.embedding is None else len(face.embedding)
        out.print(f"  #{i} box=({x1:.0f},{y1:.0f},{x2:.0f},{y2:.0f}) detector score={face.score:.2f} "
                  f"quality={face.quality.score:.2f} embedding={dim}-d", markup=False)
    out.print("Try: visage detect PHOTO.jpg --draw faces.jpg   |   visage compare A.jpg B.jpg", markup=False)


@eval_app.command("pairs")
def eval_pairs(
    pairs: Annotated[Path, typer.Option(help="LFW-format pairs file.")],
    root: Annotated[Path, typer.Option(help="Image root: ROOT/Name/Name_0001.jpg.")],
    plot: Annotated[Path | None, typer.Option(help="Write the ROC curve to this image file.")] = None,
    workers: Annotated[int, typer.Option(help="Worker processes (0 = one per core).")] = 0,
    as_json: JsonOption = False,
    flip: FlipOption = None,
    views: ViewsOption = None,
    detector: DetectorOption = None,
    embedder: EmbedderOption = None,
    onnx_model: OnnxOption = None,
) -> None:
    """Verification accuracy on an LFW pairs list (10-fold, threshold chosen on the other folds)."""
    from visage.eval.pairs import evaluate_pairs, plot_roc, read_pairs

    settings = build_settings(
        detector=detector, embedder=embedder, onnx_model=onnx_model, flip=flip, views=views
    )
    make_analyzer(settings)
    try:
        pair_list = read_pairs(pairs, root)
        images = len({p for pair in pair_list for p in (pair.first, pair.second)})
        with progress_bar(images, "analysing") as advance:
            report = evaluate_pairs(pair_list, settings, workers=workers, on_result=lambda _: advance())
    except VisageError as exc:
        fail(exc)
    if plot is not None:
        plot_roc(report, plot)
    if as_json:
        print_json(report.as_dict())
        return
    out.print(f"pairs {report.pairs}, images {report.images}, model {report.model}", markup=False)
    out.print(f"accuracy {report.accuracy:.2%} ± {report.accuracy_std:.2%} (10-fold)", markup=False)
    out.print(f"ROC AUC {report.auc:.5f}", markup=False)
    for far, tar in report.tar_at_far.items():
        out.print(f"TAR @ FAR={far}: {tar:.2%}", markup=False)
    out.print(f"detection misses {report.misses}", markup=False)
    out.print(f"{report.images_per_second:.1f} images/s", markup=False)


def main() -> None:
    try:
        app()
    except VisageError as exc:  # a library error that escaped a command
        err.print(f"error [{exc.code}]: {exc.message}", markup=False)
        sys.exit(2)
    except KeyboardInterrupt:
        err.print("interrupted", markup=False)
        sys.exit(130)


if __name__ == "__main__":
    main()
