"""`visage serve` and `visage keys` as a user runs them: a real server process on loopback."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.test_cli import visage


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_first_serve_prints_an_admin_key_once_and_never_logs_keys(tmp_path: Path, astronaut_bytes: bytes) -> None:
    port = free_port()
    env = {**os.environ, "VISAGE_DATA_DIR": str(tmp_path)}
    log_path = tmp_path / "server.log"
    with log_path.open("w") as log:
        server = subprocess.Popen([sys.executable, "-m", "visage.cli", "serve", "--port", str(port)], env=env,
                                  stdout=log, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{base}/ready", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.5)
        else:
            raise AssertionError(f"the server never became ready:\n{log_path.read_text()}")
        printed = [word for word in log_path.read_text().split() if word.startswith("vsg_")]
        assert len(printed) == 1, log_path.read_text()
        admin = {"Authorization": f"Bearer {printed[0]}"}
        response = httpx.post(f"{base}/v1/galleries", json={"name": "door"}, headers=admin)
        assert response.status_code == 201 and response.headers["x-visage-version"]
        made = visage("keys", "create", "kiosk", "--scope", "identify", "--gallery", "door", "--json",
                      env_data_dir=tmp_path)
        kiosk = json.loads(made.stdout)["key"]
        found = httpx.post(f"{base}/v1/galleries/door/identify", headers={"X-API-Key": kiosk},
                           files={"image": ("a.jpg", astronaut_bytes, "image/jpeg")})
        assert found.status_code == 200 and found.json()[0]["candidates"] == []
        assert httpx.get(f"{base}/v1/audit", headers={"X-API-Key": kiosk}).status_code == 403
        assert "kiosk" in visage("keys", "list", env_data_dir=tmp_path).stdout
        visage("keys", "revoke", kiosk.split("_")[1], env_data_dir=tmp_path)
        assert httpx.get(f"{base}/v1/galleries", headers={"X-API-Key": kiosk}).status_code == 401
    finally:
        server.send_signal(signal.SIGINT)
        assert server.wait(timeout=30) == 0
    log_text = log_path.read_text()
    assert log_text.count(printed[0]) == 1 and kiosk not in log_text  # shown once, never logged
    assert "POST /v1/galleries/door/identify" in log_text  # the access log is there, without keys
    second = subprocess.run([sys.executable, "-m", "visage.cli", "keys", "list", "--json"], env=env,
                            capture_output=True, text=True, timeout=120)
    assert "vsg_" not in second.stdout  # listing shows prefixes, never secrets
