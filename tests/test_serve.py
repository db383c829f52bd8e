"""`visage serve` and `visage keys` as a user runs them: a real server process on loopback."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import httpx

from tests.conftest import BASIS
from tests.server import running_server
from tests.test_cli import visage
from visage.api.keys import KEY_CACHE_SECONDS


def test_first_serve_prints_an_admin_key_once_and_never_logs_keys(tmp_path: Path, astronaut_bytes: bytes) -> None:
    with running_server(tmp_path) as server:
        admin = {"Authorization": f"Bearer {server.admin_key}"}
        response = httpx.post(f"{server.base}/v1/galleries", json={"name": "door", **BASIS}, headers=admin)
        assert response.status_code == 201 and response.headers["x-visage-version"]
        made = visage("keys", "create", "kiosk", "--scope", "identify", "--gallery", "door", "--json",
                      env_data_dir=tmp_path)
        kiosk = json.loads(made.stdout)["key"]
        found = httpx.post(f"{server.base}/v1/galleries/door/identify", headers={"X-API-Key": kiosk},
                           files={"image": ("a.jpg", astronaut_bytes, "image/jpeg")})
        assert found.status_code == 200 and found.json()[0]["candidates"] == []
        assert httpx.get(f"{server.base}/v1/audit", headers={"X-API-Key": kiosk}).status_code == 403
        assert "kiosk" in visage("keys", "list", env_data_dir=tmp_path).stdout
        visage("keys", "revoke", kiosk.split("_")[1], env_data_dir=tmp_path)
        deadline = time.monotonic() + KEY_CACHE_SECONDS + 1  # the server may have the key cached that long
        while httpx.get(f"{server.base}/v1/galleries", headers={"X-API-Key": kiosk}).status_code != 401:
            assert time.monotonic() < deadline, "a revoked key still works"
            time.sleep(0.1)
    assert server.process.returncode == 0  # Ctrl-C ends it cleanly
    log_text = server.log_path.read_text()
    assert log_text.count(server.admin_key) == 1 and kiosk not in log_text  # shown once, never logged
    assert "POST /v1/galleries/door/identify" in log_text  # the access log is there, without keys
    listed = visage("keys", "list", "--json", env_data_dir=tmp_path)
    assert "vsg_" not in listed.stdout and "kiosk" not in listed.stdout  # revoked keys hidden; never secrets


def worker_pids(supervisor: int) -> set[int]:
    found = subprocess.run(["pgrep", "-P", str(supervisor), "-f", "spawn_main"], capture_output=True, text=True)
    return {int(pid) for pid in found.stdout.split()}


def test_several_workers_share_the_port_replace_a_dead_one_and_stop_together(tmp_path: Path) -> None:
    with running_server(tmp_path, workers=2) as server:
        admin = {"Authorization": f"Bearer {server.admin_key}"}
        workers = worker_pids(server.process.pid)
        assert len(workers) == 2
        with httpx.Client() as first, httpx.Client() as second:  # two connections, each served
            assert first.get(f"{server.base}/v1/galleries", headers=admin).status_code == 200
            assert second.get(f"{server.base}/ready").status_code == 200
        taken = visage("serve", "--port", server.base.rsplit(":", 1)[1], "--workers", "2", env_data_dir=tmp_path,
                       check=False)
        assert taken.returncode != 0 and "address_in_use" in taken.stderr  # never silently joins the port
        os.kill(min(workers), signal.SIGKILL)
        deadline = time.monotonic() + 120
        while len(worker_pids(server.process.pid) - workers) < 1 or \
                httpx.get(f"{server.base}/ready", timeout=5).status_code != 200:
            assert time.monotonic() < deadline, "the dead worker was not replaced"
            time.sleep(0.5)
        survivors = worker_pids(server.process.pid)
        assert len(survivors) == 2 and min(workers) not in survivors
    assert server.process.returncode == 0
    for pid in survivors:  # stopped with the supervisor, not orphaned
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            continue
        raise AssertionError(f"worker {pid} outlived the server")
