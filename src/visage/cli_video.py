"""``visage video scan``: footage → sightings (who passed, when, for how long), optionally named from a gallery."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from visage.cli_support import JsonOption, build_settings, cli_actor, err, fail, out, print_json
from visage.errors import VisageError

video_app = typer.Typer(help="Find, follow and name the faces in footage.", no_args_is_help=True)


def _clock(seconds: float) -> str:
    minutes, rest = divmod(seconds, 60)
    return f"{int(minutes)}:{rest:04.1f}"


@video_app.command("scan")
def video_scan(
    source: Annotated[Path, typer.Argument(help="A video file (mp4, mkv, avi, mov, …) or a folder of images.")],
    gallery: Annotated[str | None, typer.Option(help="Name each sighting from this gallery.")] = None,
    purpose: Annotated[str | None, typer.Option(help="Why the footage is searched (required for watchlists).")]
    = None,
    every: Annotated[int, typer.Option(help="Detect faces on every N-th frame; tracks carry them between.")] = 3,
    views: Annotated[str, typer.Option(help="single (fast) or multi (10 cuts per shot) embedding.")] = "single",
    fps: Annotated[float | None, typer.Option(help="Frame rate of an image folder (default 1).")] = None,
    report: Annotated[Path | None, typer.Option(help="Write the sightings here as JSON.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Every person in the footage as one sighting: time range, frames, best quality, and who (with --gallery)."""
    from visage.pipeline import FaceAnalyzer
    from visage.video.scanner import VideoScanner
    from visage.video.sources import open_source

    settings = build_settings(views=views)
    try:
        frames = open_source(source, fps=fps)
        analyzer = FaceAnalyzer(settings)
    except VisageError as exc:
        fail(exc)
    scanner = VideoScanner(analyzer, detect_every=every)
    total = getattr(frames, "frame_count", 0) or len(getattr(frames, "paths", [])) or None
    columns = (TextColumn("scanning"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[rate]:.1f} fps"), TimeRemainingColumn())
    with Progress(*columns, console=err, transient=True, disable=not err.is_terminal) as progress:
        task = progress.add_task("scan", total=total, rate=0.0)

        def seen(frame: Any, _ids: list[int]) -> None:
            progress.update(task, completed=frame.index + 1, rate=progress.tasks[0].speed or 0.0)

        try:
            sightings = list(scanner.scan(frames, on_frame=seen))
        except VisageError as exc:
            fail(exc)
    rows = [_row(s) for s in sightings]
    if gallery is not None:
        rows = _named(analyzer, gallery, purpose, sightings)
    document = {"source": str(source), "frames": frames.stats.decoded, "corrupt_frames": frames.stats.corrupt,
                "model": analyzer.model.id, "sightings": rows}
    if report is not None:
        try:
            report.write_text(json.dumps(document, indent=2))
        except OSError as exc:
            fail(f"cannot write {report}: {exc.strerror}", code="file_unwritable")
    if as_json:
        print_json(document)
        return
    for row in rows:
        who = row.get("external_id") or ("unknown" if gallery else "")
        named = f": {who}" + (f" ({row['similarity']:.3f})" if row.get("similarity") else "") if who else ""
        out.print(f"track {row['track_id']}: {_clock(row['start_seconds'])}–{_clock(row['end_seconds'])} "
                  f"({row['frames']} frames, best quality {row['best_quality']:.2f}){named}", markup=False)
    err.print(f"{len(rows)} sighting(s) in {frames.stats.decoded} frames ({frames.stats.corrupt} unreadable)",
              markup=False)


def _row(s: Any) -> dict[str, Any]:
    return {"track_id": s.track_id, "start_seconds": round(s.start_seconds, 3), "end_seconds": round(s.end_seconds, 3),
            "start_wall": s.start_wall.isoformat(), "end_wall": s.end_wall.isoformat(), "frames": s.frames,
            "best_quality": round(s.best_quality, 3), "best_frame": s.best_frame,
            "best_box": [round(v, 1) for v in s.best_box]}


def _named(analyzer: Any, gallery_name: str, purpose: str | None, sightings: list[Any]) -> list[dict[str, Any]]:
    """Sightings named from the gallery (with the scan's analyzer: no second model load); audited like identify."""
    from visage.gallery.api import Gallery
    from visage.privacy.audit import open_audit_log
    from visage.video.identify import name_sightings

    try:
        with Gallery(analyzer.settings, analyzer=analyzer) as g:
            audit = open_audit_log(g.store.db, g.settings)
            with audit.operation(cli_actor(), "identify", gallery=gallery_name, purpose=purpose,
                                 details={"video": True, "sightings": len(sightings)}) as note:
                named = list(name_sightings(g, gallery_name, sightings, purpose=purpose))
                note.result_count = len(named)
                note.details["matches"] = sum(n.external_id is not None for n in named)
    except VisageError as exc:
        fail(exc)
    return [{**_row(n.sighting), "external_id": n.external_id, "display_name": n.display_name,
             "similarity": None if n.similarity is None else round(n.similarity, 4)} for n in named]


def register(app: typer.Typer) -> None:
    app.add_typer(video_app, name="video")
