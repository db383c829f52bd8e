"""``visage serve``, ``visage keys`` and ``visage audit``: the REST service, its API keys and its audit log."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from visage.cli_support import JsonOption, build_settings, cli_actor, err, fail, out, print_json
from visage.errors import VisageError

if TYPE_CHECKING:
    from visage.api.keys import ApiKeys
    from visage.privacy.audit import AuditLog, AuditNote

keys_app = typer.Typer(help="Create, list and revoke API keys for the REST service.", no_args_is_help=True)


def _keys() -> ApiKeys:
    """The key store of the configured database (the service stack is imported only by these commands)."""
    from visage.api.keys import ApiKeys
    from visage.db import Database, sqlite_url

    settings = build_settings()
    try:
        return ApiKeys(Database(settings.gallery.database_url or sqlite_url(settings.data_dir)))
    except VisageError as exc:
        fail(exc)


@contextmanager
def _audited(keys: ApiKeys, action: str, **fields: Any) -> Iterator[AuditNote]:
    """A key command's operation in the audit log of the same database."""
    from visage.privacy.audit import open_audit_log

    with open_audit_log(keys.db, build_settings()).operation(cli_actor(), action, **fields) as note:
        yield note


@keys_app.command("create")
def keys_create(
    name: Annotated[str, typer.Argument(help="Who or what the key is for.")],
    scope: Annotated[list[str], typer.Option("--scope", help="read, enroll, identify or admin; repeat for several.")],
    gallery: Annotated[str | None, typer.Option(help="Restrict the key to one gallery.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Create a key and print it once: only its hash is stored."""
    keys = _keys()
    try:
        with _audited(keys, "key.create", gallery=gallery, details={"name": name, "scopes": scope}):
            record, text = keys.create(name, scope, gallery=gallery)
    except VisageError as exc:
        fail(exc)
    keys.db.close()
    if as_json:
        print_json({"prefix": record.prefix, "name": record.name, "scopes": list(record.scopes),
                    "gallery": record.gallery, "key": text})
        return
    out.print(text, markup=False)
    err.print(f"key '{record.name}' ({', '.join(record.scopes)}) created; it is shown this once.", markup=False)


@keys_app.command("list")
def keys_list(include_revoked: Annotated[bool, typer.Option(help="Show revoked keys too.")] = False,
              as_json: JsonOption = False) -> None:
    """Keys by prefix, name and scopes (never the secret)."""
    keys = _keys()
    listed = keys.list(include_revoked=include_revoked)
    keys.db.close()
    if as_json:
        print_json([{"prefix": k.prefix, "name": k.name, "scopes": list(k.scopes), "gallery": k.gallery,
                     "created_at": k.created_at.isoformat(),
                     "revoked_at": k.revoked_at.isoformat() if k.revoked_at else None} for k in listed])
        return
    for k in listed:
        state = " (revoked)" if k.revoked_at else ""
        where = f" gallery={k.gallery}" if k.gallery else ""
        out.print(f"{k.prefix}  {k.name}  [{', '.join(k.scopes)}]{where}{state}", markup=False)


@keys_app.command("revoke")
def keys_revoke(prefix: Annotated[str, typer.Argument(help="The key's prefix, as `visage keys list` shows.")]) -> None:
    """Revoke a key: it stops working at once."""
    keys = _keys()
    try:
        with _audited(keys, "key.revoke", details={"prefix": prefix}):
            record = keys.revoke(prefix)
    except VisageError as exc:
        fail(exc)
    keys.db.close()
    out.print(f"revoked {record.prefix} ({record.name})", markup=False)


@keys_app.command("rotate-data-key")
def keys_rotate_data_key(as_json: JsonOption = False) -> None:
    """Re-encrypt every stored embedding under a new data key, while the service keeps running.

    With the keyring file, a new key is made current and the old ones are retired at the end;
    with VISAGE_DATA_KEYS, put the new key first (and restart the service) before running this.
    Interrupted, it resumes on the next run.
    """
    from visage.cli_gallery import open_gallery
    from visage.cli_support import progress_counter
    from visage.gallery.rotation import rotate_data_key
    from visage.privacy.audit import open_audit_log

    with open_gallery() as gallery:
        try:
            audit = open_audit_log(gallery.store.db, gallery.settings)
            with progress_counter("re-sealing") as update:
                done = rotate_data_key(gallery, progress=update)
            audit.record(cli_actor(), "data_key.rotate",
                         details={"key_id": done.key_id, "new_key": done.new_key, "resealed": done.resealed,
                                  "retired": done.retired},
                         result_count=done.resealed, outcome="ok")
        except VisageError as exc:
            fail(exc)
    if as_json:
        print_json(dataclasses.asdict(done))
        return
    begun = "new data key" if done.new_key else "resumed rotation to data key"
    out.print(f"{begun} {done.key_id}: {done.resealed} records re-sealed and {done.indexes_resaved} index files "
              f"re-saved in {done.seconds:.1f} s", markup=False)
    if done.retired:
        out.print(f"retired from the keyring: {', '.join(done.retired)}", markup=False)
    if done.behind:
        out.print(f"{done.behind} records were written under an old key meanwhile: run this again", markup=False)
    elif done.remaining_keys:
        out.print(f"no record uses {', '.join(done.remaining_keys)} any more: remove them from the configured keys",
                  markup=False)


audit_app = typer.Typer(help="The tamper-evident audit log.", no_args_is_help=True)


def _audit() -> AuditLog:
    from visage.db import Database, sqlite_url
    from visage.privacy.audit import open_audit_log

    settings = build_settings()
    try:
        return open_audit_log(Database(settings.gallery.database_url or sqlite_url(settings.data_dir)), settings)
    except VisageError as exc:
        fail(exc)


@audit_app.command("verify")
def audit_verify(as_json: JsonOption = False) -> None:
    """Check the whole hash chain and every signed checkpoint; exit 1 at the first departure found."""
    log = _audit()
    found = log.verify()
    log.db.close()
    if as_json:
        print_json(dataclasses.asdict(found))
    elif found.ok:
        out.print(f"audit log intact: {found.entries} entries, {found.checkpoints} signed checkpoints; "
                  f"{found.unsigned} newest entries not yet covered by a checkpoint", markup=False)
    else:
        where = f" (entry {found.first_bad_entry})" if found.first_bad_entry is not None else ""
        err.print(f"audit log TAMPERED{where}: {found.problem}", markup=False)
    if not found.ok:
        raise typer.Exit(1)


@audit_app.command("checkpoint")
def audit_checkpoint() -> None:
    """Sign the newest entry now (the service also signs one every privacy.audit_checkpoint_every entries)."""
    log = _audit()
    try:
        made = log.checkpoint()
    except VisageError as exc:
        fail(exc)
    log.db.close()
    out.print("the audit log is empty" if made is None else
              f"checkpoint {made.id} signs entries up to {made.entry_id} (key {made.key_id})", markup=False)


@audit_app.command("receipt")
def audit_receipt(
    receipt_file: Annotated[Path, typer.Argument(help="An erasure receipt (JSON, as `person erase --json` printed).")],
) -> None:
    """Check an erasure receipt: its digest matches its contents and the intact audit log recorded it."""
    from visage.gallery.receipts import receipt_digest

    try:
        receipt = json.loads(receipt_file.read_text(encoding="utf-8"))
        gallery, person, claimed = receipt["gallery"], receipt["external_id"], receipt["digest"]
    except OSError as exc:
        fail(f"cannot read {receipt_file}: {exc.strerror}", code="file_unreadable")
    except (ValueError, KeyError, TypeError):
        fail(f"{receipt_file} is not an erasure receipt", code="invalid_receipt")
    if receipt_digest(receipt) != claimed:
        err.print("receipt ALTERED: its contents do not match its digest", markup=False)
        raise typer.Exit(1)
    log = _audit()
    entries, _ = log.entries(action="erase", gallery=gallery, person=person, limit=1000)
    entry = next((e for e in entries if e.details.get("receipt") == claimed), None)
    found = log.verify()
    log.db.close()
    if entry is None:
        err.print(f"receipt NOT RECORDED: no erase entry of '{person}' in '{gallery}' carries digest {claimed}",
                  markup=False)
        raise typer.Exit(1)
    if not found.ok:
        err.print(f"receipt recorded in entry {entry.id}, but the audit log is TAMPERED: {found.problem}",
                  markup=False)
        raise typer.Exit(1)
    out.print(f"receipt genuine: recorded by audit entry {entry.id} ({entry.actor}, {entry.at.isoformat()}); "
              f"audit log intact", markup=False)


def register(app: typer.Typer) -> None:
    app.add_typer(keys_app, name="keys")
    app.add_typer(audit_app, name="audit")

    @app.command()
    def report(
        since: Annotated[datetime | None, typer.Option(help="From this time (UTC unless it says otherwise).")] = None,
        until: Annotated[datetime | None, typer.Option(help="Up to this time.")] = None,
        as_json: JsonOption = False,
    ) -> None:
        """Transparency report from the audit log: operations and matches per week, gallery, purpose and key."""
        from visage.db import as_utc
        from visage.privacy.report import transparency_report

        log = _audit()
        rows = transparency_report(log, since=as_utc(since) if since else None,
                                   until=as_utc(until) if until else None)
        log.db.close()
        if as_json:
            print_json([dataclasses.asdict(row) for row in rows])
            return
        if not rows:
            out.print("no operations recorded in that period", markup=False)
        for row in rows:
            failed = f", {row.failed} refused or failed" if row.failed else ""
            out.print(f"{row.week}  {row.gallery or '-'}  {row.action}  purpose={row.purpose or '-'}  {row.actor}: "
                      f"{row.operations} operations, {row.matches} matches{failed}", markup=False)

    @app.command()
    def serve(
        host: Annotated[str | None, typer.Option(help="Address to listen on (default 127.0.0.1).")] = None,
        port: Annotated[int | None, typer.Option(help="Port (default 8000).")] = None,
        workers: Annotated[int | None, typer.Option(help="Server processes, each with its own models and "
                                                    "index copy (default 1).")] = None,
        access_log: Annotated[bool, typer.Option(help="Log each request (method, path, status; never keys).")] = True,
    ) -> None:
        """Run the REST service and console; the first start creates an admin key and prints it once."""
        import uvicorn

        from visage.api.app import build_services, create_app
        from visage.api.workers import reuse_port_supported, run_workers

        settings = build_settings()
        chosen = {k: v for k, v in (("host", host), ("port", port), ("workers", workers)) if v}
        service = settings.service.model_copy(update=chosen)
        settings = settings.model_copy(update={"service": service})
        try:
            ctx = build_services(settings)
            if ctx.keys.count() == 0:
                _, text = ctx.keys.create("first admin", ["admin"])
                ctx.audit.record("cli:serve", "key.create", details={"name": "first admin", "scopes": ["admin"]})
                err.print("No API key existed, so an admin key was created. It is shown this once; keep it:",
                          markup=False)
                out.print(f"\n    {text}\n", markup=False)
        except VisageError as exc:
            fail(exc)
        err.print(f"Visage on http://{service.host}:{service.port}/ : open it and sign in with an API key "
                  f"(API docs at /docs; more keys: visage keys create NAME --scope ...)", markup=False)
        if service.workers == 1:
            uvicorn.run(create_app(services=ctx), host=service.host, port=service.port, access_log=access_log)
            return
        ctx.gallery.close()  # each worker process opens its own, from the same environment
        if reuse_port_supported():
            try:
                run_workers(service.host, service.port, service.workers, access_log=access_log)
            except OSError as exc:
                fail(f"cannot listen on {service.host}:{service.port}: {exc.strerror}", "address_in_use")
            return
        uvicorn.run("visage.api.app:create_app_from_environment", factory=True, host=service.host, port=service.port,
                    workers=service.workers, access_log=access_log)
