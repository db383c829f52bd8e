"""``visage video scan``, ``visage watch`` and ``visage sightings``: footage → sightings in the archive → search."""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from visage.cli_support import JsonOption, build_settings, cli_actor, err, fail, out, print_json
from visage.errors import InvalidInputError, VisageError

video_app = typer.Typer(help="Find, follow and name the faces in footage.", no_args_is_help=True)
sightings_app = typer.Typer(help="The archive of sightings: list them, search them by face.", no_args_is_help=True)

GalleryOption = Annotated[list[str] | None, typer.Option("--gallery", help="Name sightings from this gallery "
                                                         "(repeat for several; watchlists raise alerts).")]
PurposeOption = Annotated[str | None, typer.Option(help="Why the footage is searched (required for watchlists).")]


def _clock(seconds: float) -> str:
    minutes, rest = divmod(seconds, 60)
    return f"{int(minutes)}:{rest:04.1f}"


def sighting_row(record: Any) -> dict[str, Any]:
    return {"id": record.id, "source": record.source, "track_id": record.track_id,
            "start_seconds": round(record.start_seconds, 3), "end_seconds": round(record.end_seconds, 3),
            "started_at": record.started_at.isoformat(), "ended_at": record.ended_at.isoformat(),
            "frames": record.frames, "best_quality": round(record.best_quality, 3), "gallery": record.gallery,
            "external_id": record.external_id, "display_name": record.display_name,
            "similarity": None if record.similarity is None else round(record.similarity, 4),
            "unknown": record.unknown, "has_thumbnail": record.has_thumbnail}


def _describe(row: dict[str, Any]) -> str:
    who = row["external_id"] or row["unknown"] or "no face embedding"
    similarity = f" ({row['similarity']:.3f})" if row.get("similarity") is not None else ""
    return (f"track {row['track_id']}: {_clock(row['start_seconds'])}–{_clock(row['end_seconds'])} "
            f"({row['frames']} frames, best quality {row['best_quality']:.2f}): {who}{similarity}")


@contextmanager
def _archive(views: str | None = None) -> Iterator[tuple[Any, Any]]:
    """The sighting archive of the configured database, and its audit log."""
    from visage.gallery.api import Gallery
    from visage.privacy.audit import open_audit_log
    from visage.video.archive import SightingArchive

    settings = build_settings(views=views)
    try:
        gallery = Gallery(settings)
    except VisageError as exc:
        fail(exc)
    archive = SightingArchive(gallery)
    try:
        yield archive, open_audit_log(gallery.store.db, settings)
    finally:
        archive.close()
        gallery.close()


@video_app.command("scan")
def video_scan(
    source: Annotated[Path, typer.Argument(help="A video file (mp4, mkv, avi, mov, …) or a folder of images.")],
    gallery: GalleryOption = None,
    purpose: PurposeOption = None,
    every: Annotated[int | None, typer.Option(help="Detect faces on every N-th frame (default video.detect_every); "
                                              "tracks carry them between.")] = None,
    views: Annotated[str, typer.Option(help="single (fast) or multi (10 cuts per shot) embedding.")] = "single",
    fps: Annotated[float | None, typer.Option(help="Frame rate of an image folder (default 1).")] = None,
    out_video: Annotated[Path | None, typer.Option("--out", help="Write an annotated copy (boxes, track ids, "
                                                   "names) here (.mp4).")] = None,
    report: Annotated[Path | None, typer.Option(help="Write the sightings here as JSON.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Every person in the footage as one sighting in the archive: time range, frames, best quality, who or which
    unknown."""
    from visage.video.annotate import AnnotatedVideo
    from visage.video.watch import open_watch

    rows: list[dict[str, Any]] = []
    with _archive(views) as (archive, audit):
        try:
            with audit.operation(cli_actor(), "video.scan", gallery=",".join(gallery or []) or None, purpose=purpose,
                                 details={"source": str(source)}) as note:
                writer: AnnotatedVideo | None = None

                def annotate(frame: Any, track_ids: list[int], boxes: Any) -> None:
                    if writer is not None:
                        writer.write(frame, track_ids, boxes, job.recorder.labels)

                job = open_watch(archive, str(source), galleries=gallery or [], purpose=purpose, actor=cli_actor(),
                                 audit=audit, detect_every=every, folder_fps=fps, name_in_view=out_video is not None,
                                 on_frame=annotate, on_sighting=lambda r: rows.append(sighting_row(r)))
                if out_video is not None:
                    writer = AnnotatedVideo(out_video, (job.source.fps or 1.0) / job.scanner.detect_every)
                status = _run_with_progress(job)
                if writer is not None:
                    writer.close()
                if status.state == "failed":
                    raise InvalidInputError(status.error or "the scan failed", code="scan_failed")
                note.result_count = len(rows)
                note.details["matches"] = sum(r["external_id"] is not None for r in rows)
        except VisageError as exc:
            fail(exc)
        document = {"source": str(source), "frames": status.frames, "corrupt_frames": status.corrupt,
                    "model": archive.model_id, "alerts": status.alerts, "sightings": rows}
    if report is not None:
        try:
            report.write_text(json.dumps(document, indent=2))
        except OSError as exc:
            fail(f"cannot write {report}: {exc.strerror}", code="file_unwritable")
    if as_json:
        print_json(document)
        return
    for row in rows:
        out.print(_describe(row), markup=False)
    err.print(f"{len(rows)} sighting(s) in {status.frames} frames ({status.corrupt} unreadable), "
              f"{status.alerts} alert(s)", markup=False)


def _run_with_progress(job: Any) -> Any:
    total = getattr(job.source, "frame_count", 0) or len(getattr(job.source, "paths", [])) or None
    columns = (TextColumn("scanning"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[rate]:.1f} fps"), TimeRemainingColumn())
    with Progress(*columns, console=err, transient=True, disable=not err.is_terminal) as progress:
        task = progress.add_task("scan", total=total, rate=0.0)
        chained = job.on_frame

        def seen(frame: Any, track_ids: list[int], boxes: Any) -> None:
            progress.update(task, completed=frame.index + 1, rate=progress.tasks[0].speed or 0.0)
            chained(frame, track_ids, boxes)

        job.on_frame = seen
        return job.run()


def watch(
    url: Annotated[str, typer.Argument(help="A stream (rtsp://…, http://…) or a video file / image folder.")],
    gallery: GalleryOption = None,
    purpose: PurposeOption = None,
    webhook: Annotated[list[str] | None, typer.Option(help="POST each alert here (repeatable), signed.")] = None,
    webhook_secret: Annotated[str | None, typer.Option(envvar="VISAGE_VIDEO__WEBHOOK_SECRET",
                                                       help="HMAC key of the webhook signature.")] = None,
    transport: Annotated[str | None, typer.Option(help="RTSP transport: udp or tcp (default: FFmpeg's choice).")]
    = None,
    views: Annotated[str, typer.Option(help="single (fast) or multi embedding.")] = "single",
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line (sightings and alerts).")] = False,
) -> None:
    """Watch a stream until stopped (Ctrl-C ends cleanly: open tracks are archived, webhooks drain)."""
    from visage.video.alerts import alert_payload
    from visage.video.watch import open_watch

    if transport not in (None, "udp", "tcp"):
        fail("--transport is udp or tcp", code="invalid_transport")

    def sighting(record: Any) -> None:
        row = sighting_row(record)
        out.print(json.dumps({"sighting": row}) if as_json else _describe(row), markup=False)

    def alerted(alert: Any) -> None:
        payload = alert_payload(alert)
        out.print(json.dumps({"alert": payload}) if as_json else
                  f"ALERT {alert.gallery}: {alert.external_id} ({alert.similarity:.3f}) on track {alert.track_id}",
                  markup=False)

    with _archive(views) as (archive, audit):
        try:
            with audit.operation(cli_actor(), "video.watch", gallery=",".join(gallery or []) or None,
                                 purpose=purpose, details={"source": url, "webhooks": len(webhook or [])}) as note:
                job = open_watch(archive, url, galleries=gallery or [], purpose=purpose, webhooks=webhook or [],
                                 webhook_secret=webhook_secret, actor=cli_actor(), audit=audit, transport=transport,
                                 on_alert=alerted, on_sighting=sighting)

                def interrupted(*_: object) -> None:
                    err.print("stopping: archiving open tracks…", markup=False)
                    signal.signal(signal.SIGINT, signal.SIG_DFL)  # a second Ctrl-C ends at once
                    job.stop(wait_s=0)

                previous = {sig: signal.signal(sig, interrupted) for sig in (signal.SIGINT, signal.SIGTERM)}
                try:
                    status = job.run()
                finally:
                    for sig, handler in previous.items():
                        signal.signal(sig, handler)
                note.result_count = status.sightings
                note.details.update(alerts=status.alerts, matches=status.alerts, reconnects=status.reconnects)
                if status.state == "failed":
                    raise InvalidInputError(status.error or "the watch failed", code="watch_failed")
        except VisageError as exc:
            fail(exc)
    err.print(f"{status.state}: {status.sightings} sighting(s), {status.alerts} alert(s), {status.frames} frames "
              f"({status.dropped} dropped to keep up, {status.corrupt} unreadable), {status.reconnects} "
              f"reconnection(s)", markup=False)


def _moment(value: str | None, option: str) -> datetime | None:
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        fail(f"{option} takes an ISO date or time (2026-12-01 or 2026-12-01T08:00:00+00:00)", code="invalid_time")
    return moment if moment.tzinfo else moment.astimezone()


@sightings_app.command("list")
def sightings_list(
    source: Annotated[str | None, typer.Option(help="Only this source (file path or stream URL).")] = None,
    since: Annotated[str | None, typer.Option(help="Seen at or after (ISO time).")] = None,
    until: Annotated[str | None, typer.Option(help="Seen at or before (ISO time).")] = None,
    gallery: Annotated[str | None, typer.Option(help="Only sightings named from this gallery.")] = None,
    person: Annotated[str | None, typer.Option(help="Only this person (with --gallery).")] = None,
    unknown: Annotated[str | None, typer.Option(help="Only this unknown (its pseudonym).")] = None,
    limit: Annotated[int, typer.Option(min=1, max=10_000)] = 100,
    as_json: JsonOption = False,
) -> None:
    """Stored sightings, newest first."""
    if person is not None and gallery is None:
        fail("--person needs --gallery", code="gallery_required")
    with _archive() as (archive, _audit):
        try:
            gallery_id = archive.gallery.get(gallery).id if gallery else None
            person_id = archive.gallery.person(gallery, person).id if gallery and person else None
            records = archive.store.sightings(source=source, since=_moment(since, "--since"),
                                              until=_moment(until, "--until"), gallery_id=gallery_id,
                                              person_id=person_id, unknown=unknown, limit=limit)
        except VisageError as exc:
            fail(exc)
    rows = [sighting_row(r) for r in records]
    if as_json:
        print_json({"sightings": rows})
        return
    for row in rows:
        out.print(f"{row['started_at']}  {row['source']}  " + _describe(row), markup=False)
    err.print(f"{len(rows)} sighting(s)", markup=False)


@sightings_app.command("search")
def sightings_search(
    image: Annotated[Path | None, typer.Argument(help="A photo of the face to look for.")] = None,
    gallery: Annotated[str | None, typer.Option(help="Look for an enrolled person of this gallery…")] = None,
    person: Annotated[str | None, typer.Option(help="…this one (by external id).")] = None,
    purpose: Annotated[str | None, typer.Option(help="Why the footage is searched (required, audited).")] = None,
    since: Annotated[str | None, typer.Option(help="Seen at or after (ISO time).")] = None,
    until: Annotated[str | None, typer.Option(help="Seen at or before (ISO time).")] = None,
    limit: Annotated[int, typer.Option(min=1, max=10_000)] = 100,
    as_json: JsonOption = False,
) -> None:
    """Where and when did this face appear? Sightings of a photo's face or an enrolled person, newest first."""
    with _archive() as (archive, audit):
        try:
            with audit.operation(cli_actor(), "sightings.search", gallery=gallery, person=person, purpose=purpose,
                                 details={"by": "image" if image else "person"}) as note:
                found = archive.find(image=image, gallery_name=gallery, external_id=person, purpose=purpose,
                                     limit=limit, since=_moment(since, "--since"), until=_moment(until, "--until"))
                note.result_count = len(found.hits)
                note.details["matches"] = len(found.hits)
        except VisageError as exc:
            fail(exc)
    rows = [{**sighting_row(h.sighting), "match_similarity": round(h.similarity, 4)} for h in found.hits]
    if as_json:
        print_json({"threshold": found.threshold.value, "operating_point": found.threshold.operating_point,
                    "searched": found.searched, "hits": rows})
        return
    for row in rows:
        out.print(f"{row['started_at']}  {row['source']}  {_clock(row['start_seconds'])}–"
                  f"{_clock(row['end_seconds'])}  similarity {row['match_similarity']:.3f}", markup=False)
    err.print(f"{len(rows)} sighting(s) of {found.searched} at {found.threshold.operating_point} "
              f"(threshold {found.threshold.value:.3f})", markup=False)


@sightings_app.command("unknowns")
def sightings_unknowns(limit: Annotated[int, typer.Option(min=1, max=10_000)] = 100, as_json: JsonOption = False
                       ) -> None:
    """Pseudonymous unknowns (faces nobody enrolled), most often seen first."""
    with _archive() as (archive, _audit):
        unknowns = archive.store.unknowns(limit=limit)
    rows = [{"unknown": u.label, "sightings": u.sightings, "first_seen": u.first_seen.isoformat(),
             "last_seen": u.last_seen.isoformat()} for u in unknowns]
    if as_json:
        print_json({"unknowns": rows})
        return
    for row in rows:
        out.print(f"{row['unknown']}: {row['sightings']} sighting(s), {row['first_seen']} – {row['last_seen']}",
                  markup=False)


@sightings_app.command("alerts")
def sightings_alerts(limit: Annotated[int, typer.Option(min=1, max=10_000)] = 100, as_json: JsonOption = False
                     ) -> None:
    """Watchlist alerts, newest first, with their webhook deliveries."""
    from visage.video.alerts import alert_payload

    with _archive() as (archive, _audit):
        alerts = archive.store.alerts(limit=limit, newest_first=True)
        rows = [{**alert_payload(a), "deliveries": [{"url": d.url, "attempt": d.attempt, "status": d.status,
                                                     "delivered": d.delivered, "error": d.error}
                                                    for d in archive.store.deliveries(a.id)]} for a in alerts]
    if as_json:
        print_json({"alerts": rows})
        return
    for row in rows:
        delivered = sum(d["delivered"] for d in row["deliveries"])
        out.print(f"{row['raised_at']}  {row['source']}  {row['gallery']}: {row['external_id']} "
                  f"({row['similarity']:.3f}), delivered to {delivered} webhook(s)", markup=False)


def register(app: typer.Typer) -> None:
    app.add_typer(video_app, name="video")
    app.add_typer(sightings_app, name="sightings")
    app.command("watch")(watch)
