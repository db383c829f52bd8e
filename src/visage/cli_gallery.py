"""Gallery commands: ``visage gallery …``, ``enroll``, ``enroll-dir``, ``identify``, ``verify``, ``person …``."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from visage.cli_support import (
    EmbedderOption,
    FlipOption,
    JsonOption,
    OnnxOption,
    ViewsOption,
    build_settings,
    cli_actor,
    err,
    expand_images,
    fail,
    out,
    print_json,
    progress_bar,
)
from visage.errors import VisageError
from visage.gallery.api import Enrollment, Gallery, Identification
from visage.gallery.store_sql import GalleryRecord, PersonRecord
from visage.privacy.audit import AuditNote, open_audit_log
from visage.privacy.consent import LEGAL_BASES, Consent, ConsentRecord

gallery_app = typer.Typer(help="Create, list and delete galleries.", no_args_is_help=True)
person_app = typer.Typer(help="List, show and erase enrolled people.", no_args_is_help=True)

GalleryArg = Annotated[str, typer.Argument(help="Gallery name.")]
PersonArg = Annotated[str, typer.Argument(help="The person's external id (unique in the gallery).")]
OperatingPointOption = Annotated[
    str | None, typer.Option(help="False-match rate per comparison, e.g. fmr=1e-4 (default: the setting, fmr=1e-3).")
]
IdentifyPointOption = Annotated[
    str | None,
    typer.Option("--operating-point", help="fpir=R: rate at which someone not enrolled gets a false match (default "
                 "fpir=1e-2, scaled by the gallery's size), or fmr=R per comparison."),
]


BasisOption = Annotated[str | None, typer.Option(
    "--basis", help="A legal basis covering everyone in the gallery: " + ", ".join(LEGAL_BASES) + ".")]
JustificationOption = Annotated[str | None, typer.Option(help="Why the gallery-wide basis applies (required with it).")]
ConsentBasisOption = Annotated[str | None, typer.Option(
    "--consent-basis", help="The person's consent record: its legal basis (" + ", ".join(LEGAL_BASES) + ").")]
ConsentEvidenceOption = Annotated[str | None, typer.Option(
    "--consent-evidence", help="Where the proof of consent is (a form number, a contract id).")]
ConsentExpiresOption = Annotated[datetime | None, typer.Option(
    "--consent-expires", help="When the consent ends (UTC), e.g. 2027-12-31.")]


def consent_from(basis: str | None, evidence: str | None, expires: datetime | None) -> Consent | None:
    """The consent record given on the command line, recorded by this operating-system user."""
    if basis is None and evidence is None and expires is None:
        return None
    if not basis or not evidence:
        fail("a consent record needs both --consent-basis and --consent-evidence", code="consent_incomplete")
    return Consent(basis, evidence, cli_actor(), expires)


@contextmanager
def audited(g: Gallery, action: str, *, gallery: str | None = None, person: str | None = None,
            purpose: str | None = None, details: dict[str, Any] | None = None) -> Iterator[AuditNote]:
    """Record a command's operation in the audit log (as the service does for API calls), success or failure."""
    with open_audit_log(g.store.db, g.settings).operation(cli_actor(), action, gallery=gallery, person=person,
                                                          purpose=purpose, details=details) as note:
        yield note


def open_gallery() -> Gallery:
    """The galleries of the configured database (models load only when a command analyses images)."""
    try:
        return Gallery(build_settings())
    except VisageError as exc:
        fail(exc)


def gallery_dict(g: GalleryRecord) -> dict[str, Any]:
    return {"name": g.name, "model": g.model.id, "dim": g.dim, "watchlist": g.watchlist,
            "legal_basis": g.legal_basis, "justification": g.justification, "retention_days": g.retention_days,
            "keep_chips": g.keep_chips, "created_at": g.created_at.isoformat()}


def consent_dict(c: ConsentRecord | None) -> dict[str, Any] | None:
    if c is None:
        return None
    return {"basis": c.basis, "evidence": c.evidence, "recorded_by": c.recorded_by,
            "recorded_at": c.recorded_at.isoformat(), "expires_at": c.expires_at.isoformat() if c.expires_at else None,
            "withdrawn_at": c.withdrawn_at.isoformat() if c.withdrawn_at else None, "withdrawn_by": c.withdrawn_by,
            "active": c.active()}


def person_dict(p: PersonRecord) -> dict[str, Any]:
    return {"external_id": p.external_id, "display_name": p.display_name, "metadata": p.metadata,
            "templates": p.templates, "created_at": p.created_at.isoformat(), "updated_at": p.updated_at.isoformat(),
            "consent": consent_dict(p.consent), "matchable": p.matchable}


def enrollment_dict(e: Enrollment) -> dict[str, Any]:
    return {"person": person_dict(e.person) if e.person else None, "template_ids": e.template_ids,
            "rejected": [{"image": r.image, "code": r.code, "message": r.message, "reasons": list(r.reasons)}
                         for r in e.rejected]}


def identification_dict(image: str, i: Identification) -> dict[str, Any]:
    return {"image": image, "box": [round(float(v), 1) for v in i.face.box] if i.face else None,
            "threshold": i.threshold, "operating_point": i.operating_point, "fmr": i.fmr, "clamped": i.clamped,
            "candidates": [{"external_id": c.external_id, "display_name": c.display_name,
                            "similarity": round(c.similarity, 5), "same": c.same} for c in i.candidates]}


@gallery_app.command("create")
def gallery_create(name: GalleryArg, watchlist: Annotated[bool, typer.Option(help="Flag for video alerts.")] = False,
                   basis: BasisOption = None, justification: JustificationOption = None,
                   keep_chips: Annotated[bool, typer.Option(
                       "--keep-chips", help="Keep each template's face chip (encrypted) so that `gallery migrate` "
                       "can re-embed the gallery with a new model without the photos.")] = False,
                   as_json: JsonOption = False) -> None:
    """Create a gallery bound to the configured embedding model.

    Without --basis, everyone enrolled needs a consent record (--consent-basis and --consent-evidence).
    """
    with open_gallery() as g:
        try:
            with audited(g, "gallery.create", gallery=name,
                         details={"watchlist": watchlist, "legal_basis": basis, "keep_chips": keep_chips}):
                record = g.create(name, watchlist=watchlist, legal_basis=basis, justification=justification,
                                  keep_chips=keep_chips)
        except VisageError as exc:
            fail(exc)
    print_json(gallery_dict(record)) if as_json else out.print(f"created gallery '{name}' ({record.model.id})",
                                                               markup=False)


@gallery_app.command("list")
def gallery_list(as_json: JsonOption = False) -> None:
    """Every gallery with its model."""
    with open_gallery() as g:
        rows = [gallery_dict(r) for r in g.galleries()]
    if as_json:
        print_json(rows)
        return
    for row in rows:
        basis = f"basis={row['legal_basis']}" if row["legal_basis"] else "per-person consent"
        out.print(f"{row['name']}  model={row['model']}  watchlist={row['watchlist']}  {basis}", markup=False)


@gallery_app.command("delete")
def gallery_delete(name: GalleryArg, yes: Annotated[bool, typer.Option("--yes", help="Do not ask.")] = False) -> None:
    """Delete a gallery with every person and template in it."""
    if not yes and not typer.confirm(f"Delete gallery '{name}' and everyone enrolled in it?"):
        raise typer.Exit(1)
    with open_gallery() as g:
        try:
            with audited(g, "gallery.delete", gallery=name):
                g.delete(name)
        except VisageError as exc:
            fail(exc)
    out.print(f"deleted gallery '{name}'", markup=False)


@gallery_app.command("retention")
def gallery_retention(name: GalleryArg,
                      days: Annotated[int | None, typer.Option(help="Purge templates older than this many days.")]
                      = None,
                      keep: Annotated[bool, typer.Option("--keep", help="Keep templates (no age limit).")] = False,
                      as_json: JsonOption = False) -> None:
    """Set how long the gallery keeps templates (applied by `visage retention run` and by the service)."""
    if (days is None) == (not keep):
        fail("give either --days N or --keep", code="invalid_retention")
    with open_gallery() as g:
        try:
            with audited(g, "gallery.retention", gallery=name, details={"days": days}):
                record = g.set_retention(name, days)
        except VisageError as exc:
            fail(exc)
    if as_json:
        print_json(gallery_dict(record))
    else:
        out.print(f"gallery '{name}' keeps templates " + (f"{days} day(s)" if days else "with no age limit"),
                  markup=False)


@gallery_app.command("migrate")
def gallery_migrate(source: GalleryArg,
                    target: Annotated[str, typer.Argument(help="Name of the new gallery.")],
                    embedder: EmbedderOption = None, onnx_model: OnnxOption = None, flip: FlipOption = None,
                    views: ViewsOption = None, as_json: JsonOption = False) -> None:
    """Re-embed SOURCE into a new gallery TARGET with the configured (or given) model, from the kept face chips.

    People, metadata and consent histories are carried over; SOURCE is left as it is.
    """
    from visage.cli_support import progress_counter
    from visage.gallery.model_migration import migrate_gallery

    settings = build_settings(embedder=embedder, onnx_model=onnx_model, flip=flip, views=views)
    try:
        g = Gallery(settings)
    except VisageError as exc:
        fail(exc)
    with g:
        try:
            with audited(g, "gallery.migrate", gallery=source, details={"target": target}) as note, \
                    progress_counter("re-embedding") as update:
                done = migrate_gallery(g, source, target, progress=update)
                note.result_count = done.templates
                note.details.update(model=done.model, persons=done.persons, skipped=len(done.skipped))
        except VisageError as exc:
            fail(exc)
    if as_json:
        print_json(dataclasses.asdict(done))
        return
    out.print(f"'{target}' ({done.model}): {done.persons} people, {done.templates} templates re-embedded from "
              f"'{source}' in {done.seconds:.1f} s; {len(done.skipped)} skipped", markup=False)
    for s in done.skipped:
        where = f" template {s.template_id}" if s.template_id is not None else ""
        err.print(f"  skipped {s.external_id}{where}: {s.reason}", markup=False)


retention_app = typer.Typer(help="Apply the retention rules.", no_args_is_help=True)


@retention_app.command("run")
def retention_run(as_json: JsonOption = False) -> None:
    """Erase people whose consent ended and purge templates past their gallery's retention, now; all audited."""
    from visage.gallery.retention import run_retention

    with open_gallery() as g:
        try:
            done = run_retention(g, open_audit_log(g.store.db, g.settings))
        except VisageError as exc:
            fail(exc)
    if as_json:
        print_json({"at": done.at.isoformat(), "purges": [dataclasses.asdict(p) for p in done.purges]})
        return
    if not done.purges:
        out.print("nothing to purge", markup=False)
    for p in done.purges:
        out.print(f"{p.gallery}: {p.persons} person(s) erased, {p.templates} template(s) removed ({p.reason})",
                  markup=False)


def register(app: typer.Typer) -> None:
    app.add_typer(gallery_app, name="gallery")
    app.add_typer(person_app, name="person")
    app.add_typer(retention_app, name="retention")

    @app.command()
    def enroll(
        gallery: GalleryArg,
        person: PersonArg,
        images: Annotated[list[Path], typer.Argument(help="One or more images of the person.")],
        name: Annotated[str | None, typer.Option(help="Display name.")] = None,
        face_index: Annotated[int | None, typer.Option(help="Which face when an image holds several.")] = None,
        consent_basis: ConsentBasisOption = None,
        consent_evidence: ConsentEvidenceOption = None,
        consent_expires: ConsentExpiresOption = None,
        as_json: JsonOption = False,
    ) -> None:
        """Enrol a person from images (each must hold one face passing the quality gate).

        Unless the gallery has a legal basis for everyone, a new person needs a consent record.
        """
        consent = consent_from(consent_basis, consent_evidence, consent_expires)
        with open_gallery() as g:
            try:
                with audited(g, "enroll", gallery=gallery, person=person,
                             details={"images": len(images), "consent": consent_basis}) as note:
                    result = g.enroll(gallery, person, list(images), display_name=name, face_index=face_index,
                                      consent=consent)
                    note.result_count = len(result.template_ids)
            except VisageError as exc:
                fail(exc)
        if as_json:
            print_json(enrollment_dict(result))
        else:
            out.print(f"{person}: {len(result.template_ids)} template(s) added, {len(result.rejected)} rejected",
                      markup=False)
            for r in result.rejected:
                err.print(f"  rejected {r.image}: [{r.code}] {r.message}", markup=False)
        if result.person is None:
            raise typer.Exit(1)

    @app.command("enroll-dir")
    def enroll_dir(
        gallery: GalleryArg,
        folder: Annotated[Path, typer.Argument(help="One sub-folder per person, named by external id.")],
        consent_basis: ConsentBasisOption = None,
        consent_evidence: ConsentEvidenceOption = None,
        consent_expires: ConsentExpiresOption = None,
        as_json: JsonOption = False,
    ) -> None:
        """Enrol every sub-folder of FOLDER as one person; prints a summary of rejected images.

        The consent options record the same consent for each person (e.g. a batch of signed forms).
        """
        consent = consent_from(consent_basis, consent_evidence, consent_expires)
        if not folder.is_dir():
            fail(f"{folder} is not a folder", code="not_a_folder")
        people = sorted(p for p in folder.iterdir() if p.is_dir())
        if not people:
            fail(f"no person sub-folders under {folder}", code="no_images")
        enrolled, templates, rejected = 0, 0, []
        with open_gallery() as g, progress_bar(len(people), "enrolling") as advance:
            for person_dir in people:
                images = expand_images([person_dir])
                try:
                    with audited(g, "enroll", gallery=gallery, person=person_dir.name,
                                 details={"images": len(images), "consent": consent_basis}) as note:
                        result = g.enroll(gallery, person_dir.name, images, consent=consent)
                        note.result_count = len(result.template_ids)
                except VisageError as exc:
                    fail(exc)
                enrolled += result.person is not None
                templates += len(result.template_ids)
                rejected += [{"person": person_dir.name, "image": r.image, "code": r.code} for r in result.rejected]
                if not as_json:  # one line per person as soon as it is committed
                    state = f"enrolled, {len(result.template_ids)} template(s)" if result.person else "not enrolled"
                    out.print(f"{person_dir.name}: {state}", markup=False)
                    out.file.flush()
                advance()
        summary = {"people": len(people), "enrolled": enrolled, "templates": templates, "rejected": rejected}
        if as_json:
            print_json(summary)
            return
        out.print(f"{enrolled}/{len(people)} people enrolled, {templates} templates, {len(rejected)} images rejected",
                  markup=False)
        for r in rejected:
            err.print(f"  rejected {r['image']}: [{r['code']}]", markup=False)

    @app.command()
    def identify(
        gallery: GalleryArg,
        images: Annotated[list[Path], typer.Argument(help="Images whose faces to identify.")],
        top_k: Annotated[int | None, typer.Option(help="Candidates per face.")] = None,
        operating_point: IdentifyPointOption = None,
        purpose: Annotated[str | None, typer.Option(help="Why this search is made (required for watchlists).")] = None,
        as_json: JsonOption = False,
    ) -> None:
        """Who is in these images? Every face with its best candidates."""
        rows: list[dict[str, Any]] = []
        with open_gallery() as g:
            for image in expand_images(list(images)):
                try:
                    with audited(g, "identify", gallery=gallery, purpose=purpose,
                                 details={"image": image.name}) as note:
                        found = g.identify(gallery, image, top_k=top_k, operating_point=operating_point,
                                           purpose=purpose)
                        note.result_count = sum(len(i.candidates) for i in found)
                        note.details["matches"] = sum(c.same for i in found for c in i.candidates)
                except VisageError as exc:
                    if exc.code in ("gallery_not_found", "model_mismatch", "no_threshold", "purpose_required"):
                        fail(exc)
                    rows.append({"image": str(image), "error": {"code": exc.code, "message": exc.message}})
                    continue
                rows += [identification_dict(str(image), i) for i in found]
        if as_json:
            print_json(rows)
            return
        clamped = next((row for row in rows if row.get("clamped")), None)
        if clamped:
            err.print(f"warning: {clamped['operating_point']} needs a lower false-match rate than calibrated for a "
                      f"gallery this large; using fmr={clamped['fmr']:g} (false matches will be more frequent)",
                      markup=False)
        for row in rows:
            if "error" in row:
                err.print(f"{row['image']}: error [{row['error']['code']}] {row['error']['message']}", markup=False)
                continue
            best = row["candidates"][0] if row["candidates"] else None
            verdict = "no candidates"
            if best:
                verdict = f"{best['external_id']} ({best['similarity']:.3f}{', match' if best['same'] else ''})"
            out.print(f"{row['image']} face at {row['box']}: {verdict}", markup=False)

    @app.command()
    def verify(
        gallery: GalleryArg,
        person: PersonArg,
        image: Annotated[Path, typer.Argument(help="Image to check (its largest face).")],
        operating_point: OperatingPointOption = None,
        as_json: JsonOption = False,
    ) -> None:
        """Is the face in IMAGE this enrolled person? Exit code 0 if yes, 1 if not."""
        with open_gallery() as g:
            try:
                with audited(g, "verify", gallery=gallery, person=person) as note:
                    result = g.verify(gallery, person, image, operating_point=operating_point)
                    note.details["matches"] = int(result.same)
            except VisageError as exc:
                fail(exc)
        if as_json:
            print_json({"same": result.same, "similarity": result.similarity, "threshold": result.threshold,
                        "operating_point": result.operating_point})
        else:
            out.print(f"similarity {result.similarity:.4f} (threshold {result.threshold:.4f}, "
                      f"{result.operating_point}): {'same person' if result.same else 'not this person'}",
                      markup=False)
        if not result.same:
            raise typer.Exit(1)


@person_app.command("list")
def person_list(gallery: GalleryArg, offset: int = 0, limit: int = 100, as_json: JsonOption = False) -> None:
    """Enrolled people, by external id."""
    with open_gallery() as g:
        try:
            rows = [person_dict(p) for p in g.persons(gallery, offset=offset, limit=limit)]
        except VisageError as exc:
            fail(exc)
    if as_json:
        print_json(rows)
        return
    for row in rows:
        out.print(f"{row['external_id']}  {row['display_name'] or ''}  templates={row['templates']}", markup=False)


@person_app.command("show")
def person_show(gallery: GalleryArg, person: PersonArg, as_json: JsonOption = False) -> None:
    """One person with their templates."""
    with open_gallery() as g:
        try:
            record = g.person(gallery, person)
            templates = g.templates(gallery, person)
        except VisageError as exc:
            fail(exc)
    document = {**person_dict(record), "template_list": [
        {"id": t.id, "source_sha256": t.source_sha256, "box": list(t.box), "quality": t.quality,
         "model": t.model_id, "created_at": t.created_at.isoformat()} for t in templates]}
    if as_json:
        print_json(document)
        return
    out.print(f"{record.external_id} ({record.display_name or 'no name'}), {len(templates)} template(s)",
              markup=False)
    for t in document["template_list"]:
        out.print(f"  #{t['id']} quality={t['quality']:.2f} source={t['source_sha256'][:12]}…", markup=False)


@person_app.command("erase")
def person_erase(gallery: GalleryArg, person: PersonArg,
                 yes: Annotated[bool, typer.Option("--yes", help="Do not ask.")] = False,
                 as_json: JsonOption = False) -> None:
    """Erase a person: their records, consent records and vectors. Prints the erasure receipt."""
    if not yes and not typer.confirm(f"Erase '{person}' from '{gallery}'?"):
        raise typer.Exit(1)
    with open_gallery() as g:
        try:
            with audited(g, "erase", gallery=gallery, person=person) as note:
                receipt = g.erase(gallery, person)
                note.result_count = len(receipt.templates)
                note.details["receipt"] = receipt.digest
        except VisageError as exc:
            fail(exc)
    if as_json:
        print_json(receipt.as_dict())
        return
    out.print(f"erased {person} from {gallery}: {len(receipt.templates)} template(s), {receipt.consent_records} "
              f"consent record(s), {receipt.index_vectors_removed} index vector(s); receipt {receipt.digest}",
              markup=False)


@person_app.command("export")
def person_export(gallery: GalleryArg, person: PersonArg,
                  out_file: Annotated[Path, typer.Option("--out", help="Where to write the zip.")]) -> None:
    """Everything stored about a person (a data-subject access request), as a zip of JSON files."""
    from visage.gallery.subject_access import export_person

    with open_gallery() as g:
        try:
            with audited(g, "person.export", gallery=gallery, person=person):
                archive = export_person(g, open_audit_log(g.store.db, g.settings), gallery, person)
            out_file.write_bytes(archive)
        except VisageError as exc:
            fail(exc)
        except OSError as exc:
            fail(f"cannot write {out_file}: {exc.strerror}", code="file_unwritable")
    out.print(f"wrote {out_file} ({len(archive):,} bytes)", markup=False)


@person_app.command("consent")
def person_consent(gallery: GalleryArg, person: PersonArg,
                   basis: Annotated[str, typer.Option(help="Legal basis: " + ", ".join(LEGAL_BASES) + ".")],
                   evidence: Annotated[str, typer.Option(help="Where the proof is (a form number, a contract id).")],
                   expires: Annotated[datetime | None, typer.Option(help="When it ends (UTC), e.g. 2027-12-31.")]
                   = None,
                   as_json: JsonOption = False) -> None:
    """Record a new consent for an enrolled person (a renewal): they match again until it ends."""
    with open_gallery() as g:
        try:
            with audited(g, "consent.record", gallery=gallery, person=person, details={"basis": basis}):
                record = g.record_consent(gallery, person, Consent(basis, evidence, cli_actor(), expires))
        except VisageError as exc:
            fail(exc)
    print_json(person_dict(record)) if as_json else out.print(f"consent recorded for {person}", markup=False)


@person_app.command("withdraw-consent")
def person_withdraw_consent(gallery: GalleryArg, person: PersonArg, as_json: JsonOption = False) -> None:
    """The person withdrew consent: they stop matching now; `visage retention run` erases them."""
    with open_gallery() as g:
        try:
            with audited(g, "consent.withdraw", gallery=gallery, person=person):
                record = g.withdraw_consent(gallery, person, cli_actor())
        except VisageError as exc:
            fail(exc)
    print_json(person_dict(record)) if as_json else out.print(f"consent of {person} withdrawn: no longer matched",
                                                              markup=False)
