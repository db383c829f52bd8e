"""Starts `visage serve` as a user would, in its own data dir, and hands back its URL and first admin key."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx


@dataclass
class Server:
    base: str
    admin_key: str
    log_path: Path
    process: subprocess.Popen[str]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def running_server(data_dir: Path, *, workers: int = 1) -> Iterator[Server]:
    """The server is stopped with Ctrl-C (SIGINT) at the end and must exit cleanly."""
    port = free_port()
    env = {**os.environ, "VISAGE_DATA_DIR": str(data_dir)}
    log_path = data_dir / "server.log"
    data_dir.mkdir(parents=True, exist_ok=True)
    with log_path.open("w") as log:
        process = subprocess.Popen([sys.executable, "-m", "visage.cli", "serve", "--port", str(port),
                                    "--workers", str(workers)], env=env,
                                   stdout=log, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{base}/ready", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline or process.poll() is not None:
                raise AssertionError(f"the server never became ready:\n{log_path.read_text()}")
            time.sleep(0.5)
        printed = [word for word in log_path.read_text().split() if word.startswith("vsg_")]
        assert len(printed) == 1, log_path.read_text()
        yield Server(base, printed[0], log_path, process)
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            raise
