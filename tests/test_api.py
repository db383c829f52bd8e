"""The REST service through httpx against the real app: operations, auth, audit, errors and limits."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from visage import FaceAnalyzer, Settings, __version__
from visage.api.app import build_services, create_app
from visage.api.auth import Services
from visage.gallery import Gallery, NewTemplate

from .conftest import BASIS


def jpeg(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()


def make_client(tmp_path: Path, analyzer: FaceAnalyzer, database_url: str | None = None,
                **service: object) -> tuple[TestClient, Services]:
    settings = Settings(data_dir=tmp_path, service=service, gallery={"database_url": database_url})
    ctx = build_services(settings, Gallery(settings, analyzer=analyzer))
    return TestClient(create_app(services=ctx)), ctx


@pytest.fixture()
def api(tmp_path: Path, analyzer: FaceAnalyzer,
        database_url: str) -> Iterator[tuple[TestClient, Services, dict[str, dict[str, str]]]]:
    client, ctx = make_client(tmp_path, analyzer, database_url)
    headers = {}
    for name, scopes, gallery in (("admin", ["admin"], None), ("reader", ["read"], None),
                                  ("desk", ["enroll", "identify", "read"], "staff"),
                                  ("other", ["identify"], "elsewhere")):
        headers[name] = {"Authorization": f"Bearer {ctx.keys.create(name, scopes, gallery=gallery)[1]}"}
    with client:
        created = client.post("/v1/galleries", json={"name": "staff", **BASIS}, headers=headers["admin"])
        assert created.status_code == 201
        yield client, ctx, headers


def test_enrol_identify_verify_erase_and_the_audit_trail(api: tuple[TestClient, Services, dict[str, dict[str, str]]],
                                                         astronaut_bytes: bytes, astronaut: np.ndarray,
                                                         astronaut_face: np.ndarray) -> None:
    client, _, keys = api
    enrolled = client.post("/v1/galleries/staff/persons", headers=keys["desk"],
                           data={"external_id": "eileen", "display_name": "Eileen Collins",
                                 "metadata": '{"team": "sts-93"}'},
                           files=[("images", ("first.jpg", astronaut_bytes, "image/jpeg")),
                                  ("images", ("blank.png", jpeg(np.full((120, 160, 3), 200, np.uint8)), "image/png"))])
    assert enrolled.status_code == 201, enrolled.text
    body = enrolled.json()
    assert body["person"]["templates"] == 1 and body["person"]["metadata"] == {"team": "sts-93"}
    assert [(r["image"], r["code"]) for r in body["rejected"]] == [("blank.png", "no_face")]
    assert enrolled.headers["X-Visage-Version"] == __version__

    shifted = jpeg(np.roll(astronaut, (9, -13), axis=(0, 1)))
    found = client.post("/v1/galleries/staff/identify", headers=keys["desk"], data={"purpose": "badge check"},
                        files={"image": ("probe.jpg", shifted, "image/jpeg")})
    assert found.status_code == 200, found.text
    [face] = found.json()
    assert face["candidates"][0]["external_id"] == "eileen" and face["candidates"][0]["same"]
    assert face["operating_point"] == "fpir=1e-2" and face["face"]["box"][2] > face["face"]["box"][0]

    verdict = client.post("/v1/galleries/staff/persons/eileen/verify", headers=keys["desk"],
                          files={"image": ("door.jpg", jpeg(astronaut_face), "image/jpeg")})
    assert verdict.status_code == 200 and verdict.json()["same"] is True

    embedded = client.post("/v1/embed", headers=keys["desk"], files={"image": ("a.jpg", astronaut_bytes, "image/jpeg")})
    vector = embedded.json()["faces"][0]["embedding"]
    assert len(vector) == 128 and embedded.json()["model"].startswith("dlib_resnet_v1@")
    by_vector = client.post("/v1/galleries/staff/identify-embedding", headers=keys["desk"], json={"embedding": vector})
    assert by_vector.json()["candidates"][0]["external_id"] == "eileen"

    people = client.get("/v1/galleries/staff/persons", headers=keys["reader"], params={"limit": 10}).json()
    assert people["total"] == 1 and people["items"][0]["display_name"] == "Eileen Collins"
    [template] = client.get("/v1/galleries/staff/persons/eileen/templates", headers=keys["reader"]).json()
    assert len(template["source_sha256"]) == 64

    assert client.delete("/v1/galleries/staff/persons/eileen", headers=keys["desk"]).status_code == 200
    again = client.post("/v1/galleries/staff/identify", headers=keys["desk"],
                        files={"image": ("probe.jpg", astronaut_bytes, "image/jpeg")})
    assert again.json()[0]["candidates"] == []
    assert client.get("/v1/galleries/staff/persons/eileen", headers=keys["reader"]).json()["code"] == "person_not_found"

    trail = client.get("/v1/audit", headers=keys["admin"], params={"gallery": "staff", "limit": 50}).json()
    actions = [entry["action"] for entry in reversed(trail["items"])]
    assert actions == ["gallery.create", "enroll", "identify", "verify", "identify", "erase", "identify"]
    by_action = {entry["action"]: entry for entry in trail["items"]}
    assert by_action["enroll"]["person"] == "eileen" and by_action["enroll"]["details"]["rejected"] == ["no_face"]
    identifies = [entry for entry in reversed(trail["items"]) if entry["action"] == "identify"]
    assert [entry["purpose"] for entry in identifies] == ["badge check", None, None]
    assert identifies[0]["result_count"] >= 1 and identifies[-1]["result_count"] == 0  # the last: after erasure
    assert all("image" not in entry["details"] for entry in trail["items"])  # what was asked, never the image
    only_erase = client.get("/v1/audit", headers=keys["admin"], params={"action": "erase"}).json()
    assert only_erase["total"] == 1 and only_erase["items"][0]["actor"].startswith("key:")


def test_every_auth_failure_has_its_status(api: tuple[TestClient, Services, dict[str, dict[str, str]]],
                                           astronaut_bytes: bytes) -> None:
    client, ctx, keys = api
    image = {"image": ("a.jpg", astronaut_bytes, "image/jpeg")}
    assert client.get("/v1/galleries").status_code == 401
    bad = client.get("/v1/galleries", headers={"Authorization": "Bearer vsg_nothing_here"})
    assert bad.status_code == 401 and bad.json()["code"] == "unauthorized" and "WWW-Authenticate" in bad.headers
    reader = client.post("/v1/galleries/staff/identify", headers=keys["reader"], files=image)
    assert reader.status_code == 403 and "'identify' scope" in reader.json()["message"]
    other = client.post("/v1/galleries/staff/identify", headers=keys["other"], files=image)
    assert other.status_code == 403 and "gallery 'staff'" in other.json()["message"]
    assert client.post("/v1/galleries", json={"name": "x"}, headers=keys["desk"]).status_code == 403
    assert client.get("/v1/audit", headers=keys["desk"]).status_code == 403
    assert client.get("/v1/audit/verify", headers=keys["desk"]).status_code == 403
    verified = client.get("/v1/audit/verify", headers=keys["admin"]).json()
    assert verified["ok"] is True and verified["entries"] >= 1, verified
    listed = client.get("/v1/galleries", headers=keys["desk"]).json()
    assert [g["name"] for g in listed] == ["staff"]  # a restricted key sees only its gallery

    made = client.post("/v1/keys", headers=keys["admin"], json={"name": "temp", "scopes": ["read"]}).json()
    temp = {"X-API-Key": made["key"]}
    assert client.get("/v1/galleries", headers=temp).status_code == 200
    assert client.delete(f"/v1/keys/{made['prefix']}", headers=keys["admin"]).json()["revoked_at"] is not None
    assert client.get("/v1/galleries", headers=temp).status_code == 401
    assert made["key"] not in str([k for k in ctx.keys.list(include_revoked=True)])  # only the hash is kept
    bad_scope = client.post("/v1/keys", headers=keys["admin"], json={"name": "x", "scopes": ["everything"]})
    assert bad_scope.status_code == 422 and bad_scope.json()["code"] == "invalid_scope"


def test_a_key_revoked_by_another_worker_stops_working_within_the_cache_time(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from visage.api import keys as keys_module
    from visage.db import Database, sqlite_url

    clock = [1000.0]
    monkeypatch.setattr(keys_module.time, "monotonic", lambda: clock[0])
    url = sqlite_url(tmp_path)
    this_worker, other_worker = keys_module.ApiKeys(Database(url)), keys_module.ApiKeys(Database(url))
    record, text = this_worker.create("camera desk", ["identify"])
    assert this_worker.authenticate(text) == other_worker.authenticate(text) == record  # cached by both
    assert other_worker.authenticate(text[:-1] + ("x" if text[-1] != "x" else "y")) is None  # secret still checked
    this_worker.revoke(record.prefix)
    assert this_worker.authenticate(text) is None  # at once where it was revoked
    clock[0] += keys_module.KEY_CACHE_SECONDS + 0.01
    assert other_worker.authenticate(text) is None


def test_bad_requests_get_clear_json_errors(api: tuple[TestClient, Services, dict[str, dict[str, str]]],
                                            astronaut_bytes: bytes) -> None:
    client, _, keys = api
    desk, admin = keys["desk"], keys["admin"]

    def identify(content: bytes, name: str = "x.jpg") -> dict[str, str]:
        response = client.post("/v1/galleries/staff/identify", headers=desk,
                               files={"image": (name, content, "image/jpeg")})
        return {"status": str(response.status_code), **response.json()}

    assert identify(b"") == {"status": "422", "code": "empty_file", "message": identify(b"")["message"]}
    assert identify(astronaut_bytes[:3000])["status"] == "422"
    assert identify(b"%PDF-1.4 not an image")["status"] == "415"
    as_json = client.post("/v1/galleries/staff/identify", headers=desk, json={"image": "x"})
    assert as_json.status_code == 415 and as_json.json()["code"] == "unsupported_media_type"
    as_form = client.post("/v1/galleries/staff/identify-embedding", headers=desk, data={"embedding": "1"})
    assert as_form.status_code == 415
    short = client.post("/v1/galleries/staff/identify-embedding", headers=desk, json={"embedding": [0.1] * 64})
    assert short.status_code == 422 and short.json()["code"] == "wrong_dimension"
    nan = client.post("/v1/galleries/staff/identify-embedding", headers={**desk, "Content-Type": "application/json"},
                      content=b'{"embedding": [' + b",".join([b"NaN"] * 128) + b"]}")
    assert nan.status_code == 422 and nan.json()["code"] in ("invalid_embedding", "invalid_request")
    broken = client.post("/v1/galleries", headers={**admin, "Content-Type": "application/json"}, content=b"{nope")
    assert broken.status_code == 422 and broken.json()["code"] == "invalid_request"
    missing = client.post("/v1/galleries/staff/persons", headers=desk, files={"images": ("a.jpg", b"x", "image/jpeg")})
    assert missing.status_code == 422 and "external_id" in missing.json()["message"]
    assert client.get("/v1/galleries/nowhere", headers=admin).json()["code"] == "gallery_not_found"
    duplicate = client.post("/v1/galleries", json={"name": "staff"}, headers=admin)
    assert duplicate.status_code == 409 and duplicate.json()["code"] == "gallery_exists"
    page = client.get("/v1/galleries/staff/persons", headers=desk, params={"limit": 10_000})
    assert page.status_code == 422 and page.json()["code"] == "page_too_large"
    bad_point = client.post("/v1/galleries/staff/identify", headers=desk, data={"operating_point": "fmr=7"},
                            files={"image": ("a.jpg", astronaut_bytes, "image/jpeg")})
    assert bad_point.status_code == 422 and bad_point.json()["code"] == "bad_operating_point"
    nobody = client.post("/v1/galleries/staff/persons", headers=desk, data={"external_id": "blank"},
                         files={"images": ("blank.jpg", jpeg(np.zeros((80, 80, 3), np.uint8)), "image/jpeg")})
    assert nobody.status_code == 422 and nobody.json()["rejected"][0]["code"] == "no_face"
    bad_metadata = client.post("/v1/galleries/staff/persons", headers=desk,
                               data={"external_id": "m", "metadata": "[1, 2]"},
                               files={"images": ("a.jpg", astronaut_bytes, "image/jpeg")})
    assert bad_metadata.status_code == 422 and bad_metadata.json()["code"] == "invalid_metadata"


def test_names_are_data_not_paths_or_sql(api: tuple[TestClient, Services, dict[str, dict[str, str]]],
                                        astronaut_bytes: bytes) -> None:
    client, _, keys = api
    name = "x'; DROP TABLE persons; --\""
    assert client.post("/v1/galleries", json={"name": name, **BASIS}, headers=keys["admin"]).status_code == 201
    person = "../../etc/passwd"
    enrolled = client.post(f"/v1/galleries/{quote(name, safe='')}/persons", headers=keys["admin"],
                           data={"external_id": person},
                           files={"images": ("../../evil'.jpg", astronaut_bytes, "image/jpeg")})
    assert enrolled.status_code == 201, enrolled.text
    fetched = client.get(f"/v1/galleries/{quote(name, safe='')}/persons/{quote(person, safe='')}",
                         headers=keys["admin"])
    assert fetched.status_code == 200 and fetched.json()["external_id"] == person
    assert {g["name"] for g in client.get("/v1/galleries", headers=keys["admin"]).json()} == {"staff", name}
    slashed = client.post("/v1/galleries", json={"name": "a/b"}, headers=keys["admin"])
    assert slashed.status_code == 422 and slashed.json()["code"] == "invalid_name"
    elsewhere = client.delete(f"/v1/galleries/staff/persons/{quote(person, safe='')}", headers=keys["admin"])
    assert elsewhere.status_code == 404 and elsewhere.json()["code"] == "person_not_found"


def test_upload_size_and_rate_limits(tmp_path: Path, analyzer: FaceAnalyzer, astronaut_bytes: bytes) -> None:
    client, ctx = make_client(tmp_path, analyzer, max_upload_bytes=50_000, rate_limit_per_minute=3)
    headers = {"Authorization": f"Bearer {ctx.keys.create('admin', ['admin'])[1]}"}
    with client:
        big = client.post("/v1/detect", headers=headers, files={"image": ("a.jpg", astronaut_bytes, "image/jpeg")})
        assert big.status_code == 413 and big.json()["code"] == "payload_too_large"
        assert len(astronaut_bytes) > 50_000
        statuses = [client.get("/v1/galleries", headers=headers).status_code for _ in range(3)]
        assert statuses == [200, 200, 200]  # the 413 was refused before the key was even looked at
        limited = client.get("/v1/galleries", headers=headers)
        assert limited.status_code == 429 and int(limited.headers["Retry-After"]) >= 1


def test_openapi_documents_every_route_and_health(api: tuple[TestClient, Services, dict[str, dict[str, str]]]) -> None:
    client, ctx, _ = api
    spec = client.get("/openapi.json").json()
    for path in ("/v1/galleries", "/v1/galleries/{gallery}/identify", "/v1/detect", "/v1/compare", "/v1/embed",
                 "/v1/galleries/{gallery}/persons/{external_id}/verify", "/v1/audit", "/v1/keys"):
        assert path in spec["paths"], path
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            success = next(code for code in operation["responses"] if code.startswith("2"))
            if success != "204":
                assert "content" in operation["responses"][success], (method, path)
            if path.startswith("/v1/"):
                assert "401" in operation["responses"] and "403" in operation["responses"]
    assert client.get("/health").json()["status"] == "ok"
    page = client.get("/console/")
    assert page.status_code == 200 and "script-src 'self'" in page.headers["Content-Security-Policy"]
    assert page.headers["X-Visage-Version"] == __version__ and page.headers["X-Content-Type-Options"] == "nosniff"
    ctx.models_ready.wait(60)
    assert client.get("/ready").status_code == 200


def test_a_slow_request_gets_504(tmp_path: Path, analyzer: FaceAnalyzer, astronaut_bytes: bytes) -> None:
    client, ctx = make_client(tmp_path, analyzer, request_timeout_s=0.001)  # no face analysis finishes in 1 ms
    headers = {"Authorization": f"Bearer {ctx.keys.create('admin', ['admin'])[1]}"}
    with client:
        slow = client.post("/v1/detect", headers=headers, files={"image": ("a.jpg", astronaut_bytes, "image/jpeg")})
        assert slow.status_code == 504 and slow.json()["code"] == "timeout"
        assert slow.headers["X-Visage-Version"] == __version__
        assert "Content-Security-Policy" not in slow.headers  # that is for the console's pages


def test_an_overloaded_worker_closes_connections_so_clients_move(tmp_path: Path) -> None:
    """With several workers, one with 2+ more requests in flight than the least busy answers Connection: close."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    from visage.api.middleware import ServiceHeaders
    from visage.api.workers import WorkerLoads

    counts = [0, 0]
    seen_in_flight: list[int] = []

    def page(_: Request) -> PlainTextResponse:
        seen_in_flight.append(counts[0])
        return PlainTextResponse("ok")

    endpoint = Starlette(routes=[Route("/", page)])
    app = ServiceHeaders(endpoint, version_header=("X-Visage-Version", "test"), console_headers={}, timeout_s=5,
                         loads=WorkerLoads(counts, 0))
    with TestClient(app) as client:
        calm = client.get("/")
        assert "connection" not in calm.headers and seen_in_flight == [1]
        counts[0] += 2  # two more requests of ours in flight, none in the other worker
        busy = client.get("/")
        assert busy.headers["connection"] == "close" and busy.text == "ok"
        counts[1] += 2
        assert "connection" not in client.get("/").headers
    assert counts == [2, 2]  # every request counted out again


def test_a_watchlist_search_without_a_purpose_is_refused_and_audited(
        api: tuple[TestClient, Services, dict[str, dict[str, str]]]) -> None:
    client, ctx, keys = api
    admin = keys["admin"]
    assert client.post("/v1/galleries", json={"name": "wanted", "watchlist": True, **BASIS},
                       headers=admin).status_code == 201
    probe = {"embedding": [1.0] + [0.0] * 127}
    refused = client.post("/v1/galleries/wanted/identify-embedding", json=probe, headers=admin)
    assert refused.status_code == 422 and refused.json()["code"] == "purpose_required"
    allowed = client.post("/v1/galleries/wanted/identify-embedding", json={**probe, "purpose": "case 12"},
                          headers=admin)
    assert allowed.status_code == 200 and allowed.json()["candidates"] == []
    logged = client.get("/v1/audit", params={"gallery": "wanted", "action": "identify"}, headers=admin).json()
    assert [(e["outcome"], e["purpose"]) for e in logged["items"]] == [("ok", "case 12"), ("purpose_required", None)]

    ctx.gallery.enroll_templates("wanted", "w1", [NewTemplate(np.asarray(probe["embedding"], np.float32), "0" * 64,
                                                              (0, 0, 1, 1), 1.0),
                                                  NewTemplate(np.asarray(probe["embedding"], np.float32), "1" * 64,
                                                              (0, 0, 1, 1), 1.0)])
    matched = client.post("/v1/galleries/wanted/identify-embedding", json={**probe, "purpose": "case 12"},
                          headers=admin).json()
    assert matched["candidates"][0]["external_id"] == "w1" and matched["candidates"][0]["same"]
    report = client.get("/v1/report", headers=admin).json()
    rows = {(r["gallery"], r["action"], r["purpose"]): r for r in report}
    searched = rows[("wanted", "identify", "case 12")]
    assert (searched["operations"], searched["matches"], searched["failed"]) == (2, 1, 0)
    assert rows[("wanted", "identify", None)]["failed"] == 1 and searched["week"].startswith("20")
    assert client.get("/v1/report", headers=keys["desk"]).status_code == 403
