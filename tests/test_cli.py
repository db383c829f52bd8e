"""The CLI as a user runs it: real subprocesses, exit codes, one-line errors, JSON output."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from visage import FaceAnalyzer, Settings


def visage(*args: str, check: bool = True, env_data_dir: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200"}
    if env_data_dir is not None:
        env["VISAGE_DATA_DIR"] = str(env_data_dir)
    result = subprocess.run([sys.executable, "-m", "visage.cli", *args], capture_output=True, text=True, env=env,
                            timeout=600)
    if check and result.returncode != 0:
        raise AssertionError(f"visage {args} failed ({result.returncode}): {result.stderr}")
    return result


@pytest.fixture()
def photos(tmp_path: Path, astronaut_bytes: bytes) -> Path:
    folder = tmp_path / "photos"
    (folder / "sub").mkdir(parents=True)
    (folder / "astronaut.jpg").write_bytes(astronaut_bytes)
    (folder / "sub" / "again.jpg").write_bytes(astronaut_bytes)
    (folder / "sub" / "broken.jpg").write_bytes(astronaut_bytes[:2000])
    return folder


def test_detect_json_and_draw(photos: Path, tmp_path: Path) -> None:
    drawn = tmp_path / "drawn.jpg"
    result = visage("detect", str(photos / "astronaut.jpg"), "--json", "--draw", str(drawn))
    report = json.loads(result.stdout)
    assert len(report) == 1 and len(report[0]["faces"]) == 1
    face = report[0]["faces"][0]
    assert set(face) >= {"box", "score", "landmarks", "quality"} and len(face["landmarks"]) == 5
    assert drawn.stat().st_size > 10_000


def test_detect_reports_bad_files_without_traceback(photos: Path) -> None:
    result = visage("detect", str(photos / "sub" / "broken.jpg"), check=False)
    assert result.returncode == 1
    assert "truncated_image" in result.stderr and "Traceback" not in result.stderr


def test_compare(photos: Path) -> None:
    result = visage("compare", str(photos / "astronaut.jpg"), str(photos / "sub" / "again.jpg"), "--json")
    answer = json.loads(result.stdout)
    assert answer["same"] is True and answer["similarity"] > 0.99 and answer["model"]["sha256"]


def test_compare_errors_are_one_line(photos: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    result = visage("compare", str(photos / "astronaut.jpg"), str(empty), check=False)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "empty_file" in result.stderr
    assert "Traceback" not in result.stderr


def test_embed_folder(photos: Path, tmp_path: Path) -> None:
    output = tmp_path / "embeddings.npz"
    result = visage("embed", str(photos), "--out", str(output), "--json", "--workers", "2")
    summary = json.loads(result.stdout)
    assert summary["images"] == 3 and summary["faces"] == 2
    assert [e["code"] for e in summary["errors"]] == ["truncated_image"]
    data = np.load(output)
    assert data["embeddings"].shape == (2, 128)
    assert json.loads(str(data["model"]))["name"] == "dlib_resnet_v1"
    np.testing.assert_allclose(np.linalg.norm(data["embeddings"], axis=1), 1.0, atol=1e-5)


def test_models_lists_every_model() -> None:
    rows = json.loads(visage("models", "--json").stdout)
    assert {r["name"] for r in rows} >= {"centerface", "dlib_resnet_v1"} and all(r["status"] == "ok" for r in rows)


def test_demo_runs() -> None:
    assert "1 face(s)" in visage("demo").stdout


def test_bad_option_is_explained() -> None:
    result = visage("compare", "a.jpg", "b.jpg", "--embedder", "onnx", check=False)
    assert result.returncode == 2 and "onnx_path" in result.stderr and "Traceback" not in result.stderr


def test_models_convert_writes_the_cache_once_asked(tmp_path: Path) -> None:
    result = visage("models", "convert", "--json", env_data_dir=tmp_path)
    row = json.loads(result.stdout)
    assert row["model"].startswith("dlib_resnet_v1@") and Path(row["onnx"]).parent == tmp_path / "models"
    assert Path(row["onnx"]).stat().st_size > 20_000_000


def test_gallery_commands_end_to_end(tmp_path: Path, astronaut_bytes: bytes) -> None:
    people = tmp_path / "people"
    (people / "eileen").mkdir(parents=True)
    (people / "eileen" / "a.jpg").write_bytes(astronaut_bytes)
    (people / "nobody").mkdir()
    (people / "nobody" / "broken.jpg").write_bytes(astronaut_bytes[:3000])
    data = tmp_path / "data"
    photo = people / "eileen" / "a.jpg"

    def run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return visage(*args, check=check, env_data_dir=data)

    assert json.loads(run("gallery", "create", "staff", "--json").stdout)["legal_basis"] is None
    no_consent = run("enroll-dir", "staff", str(people), check=False)
    assert no_consent.returncode == 2 and "consent_required" in no_consent.stderr
    summary = json.loads(run("enroll-dir", "staff", str(people), "--consent-basis", "consent", "--consent-evidence",
                             "forms 2026/11 batch 3", "--consent-expires", "2099-12-31", "--json").stdout)
    assert summary["enrolled"] == 1 and summary["rejected"][0]["code"] == "truncated_image"
    [face] = json.loads(run("identify", "staff", str(photo), "--json").stdout)
    assert face["candidates"][0]["external_id"] == "eileen" and face["candidates"][0]["same"]
    assert json.loads(run("verify", "staff", "eileen", str(photo), "--json").stdout)["same"] is True
    shown = json.loads(run("person", "show", "staff", "eileen", "--json").stdout)
    assert shown["templates"] == 1 and shown["consent"]["evidence"] == "forms 2026/11 batch 3"
    assert shown["consent"]["recorded_by"].startswith("cli:") and shown["consent"]["expires_at"].startswith("2099")
    run("person", "withdraw-consent", "staff", "eileen")
    assert json.loads(run("identify", "staff", str(photo), "--json").stdout)[0]["candidates"] == []
    withdrawn = run("verify", "staff", "eileen", str(photo), check=False)
    assert withdrawn.returncode == 2 and "consent_ended" in withdrawn.stderr
    run("person", "consent", "staff", "eileen", "--basis", "consent", "--evidence", "renewed form 77")
    assert json.loads(run("verify", "staff", "eileen", str(photo), "--json").stdout)["same"] is True
    run("person", "erase", "staff", "eileen", "--yes")
    assert json.loads(run("identify", "staff", str(photo), "--json").stdout)[0]["candidates"] == []
    duplicate = run("gallery", "create", "staff", check=False)
    assert duplicate.returncode == 2 and "gallery_exists" in duplicate.stderr and "Traceback" not in duplicate.stderr
    unknown = run("verify", "nowhere", "eileen", str(photo), check=False)
    assert unknown.returncode == 2 and "gallery_not_found" in unknown.stderr


def test_enroll_dir_killed_midway_loses_nothing_it_reported(tmp_path: Path, astronaut_bytes: bytes,
                                                             analyzer: FaceAnalyzer) -> None:
    """SIGKILL in the middle of enroll-dir: every person reported enrolled is in SQL, and the index agrees."""
    import signal

    from visage.gallery import Gallery

    people = tmp_path / "people"
    for i in range(40):
        (people / f"p{i:02d}").mkdir(parents=True)
        (people / f"p{i:02d}" / "a.jpg").write_bytes(astronaut_bytes)
    data = tmp_path / "data"
    visage("gallery", "create", "staff", "--basis", "legitimate_interest", "--justification", "test",
           env_data_dir=data)
    env = {**os.environ, "VISAGE_DATA_DIR": str(data)}
    process = subprocess.Popen([sys.executable, "-m", "visage.cli", "enroll-dir", "staff", str(people)],
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    assert process.stdout is not None
    reported = []
    for line in process.stdout:
        if line.strip().endswith("template(s)"):
            reported.append(line.split(":")[0])
        if len(reported) == 5:
            process.send_signal(signal.SIGKILL)
            break
    process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL and len(reported) == 5

    with Gallery(Settings(data_dir=data), analyzer=analyzer) as gallery:
        stored = {p.external_id for p in gallery.persons("staff", limit=1000)}
        assert set(reported) <= stored and len(stored) < 40
        [face] = gallery.identify("staff", astronaut_bytes, top_k=1000)
        assert {c.external_id for c in face.candidates} == stored  # the index holds exactly what SQL holds


def test_privacy_commands_end_to_end(tmp_path: Path, astronaut_bytes: bytes) -> None:
    """Chips kept, keys rotated, gallery migrated, retention set and run: each command as a user runs it."""
    data = tmp_path / "data"
    photo = tmp_path / "eileen.jpg"
    photo.write_bytes(astronaut_bytes)

    def run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return visage(*args, check=check, env_data_dir=data)

    no_reason = run("gallery", "create", "crew", "--basis", "contract", check=False)
    assert no_reason.returncode == 2 and "justification_required" in no_reason.stderr
    made = json.loads(run("gallery", "create", "crew", "--basis", "contract", "--justification",
                          "employment contracts, clause 12", "--keep-chips", "--json").stdout)
    assert made["keep_chips"] and made["legal_basis"] == "contract"
    run("enroll", "crew", "eileen", str(photo))
    rotated = json.loads(run("keys", "rotate-data-key", "--json").stdout)
    assert rotated["new_key"] and rotated["resealed"] == 2 and rotated["retired"]  # the template and its chip
    migrated = json.loads(run("gallery", "migrate", "crew", "crew-v2", "--views", "single", "--json").stdout)
    assert (migrated["persons"], migrated["templates"], migrated["skipped"]) == (1, 1, [])
    [face] = json.loads(run("identify", "crew-v2", str(photo), "--json").stdout)
    assert face["candidates"][0]["external_id"] == "eileen"
    assert json.loads(run("gallery", "retention", "crew", "--days", "30", "--json").stdout)["retention_days"] == 30
    both = run("gallery", "retention", "crew", "--days", "3", "--keep", check=False)
    assert both.returncode == 2 and "invalid_retention" in both.stderr
    assert json.loads(run("retention", "run", "--json").stdout)["purges"] == []  # nothing is 30 days old yet
    actions = {e["action"] for e in json.loads(run("report", "--json").stdout)}
    assert {"gallery.create", "enroll", "data_key.rotate", "gallery.migrate", "gallery.retention"} <= actions
