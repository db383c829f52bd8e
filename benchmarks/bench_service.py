"""The REST service under load on loopback: identify-by-embedding against 100k templates, and verify with an image.

    .venv/bin/python benchmarks/bench_service.py [--templates 100000] [--clients 16] [--seconds 30]
        [--workers 2] [--threads N] [--data-dir DIR]

Builds a gallery (random unit vectors, 5 templates per person) in a fresh data dir, starts
`visage serve` as a user would, then drives it with keep-alive HTTP/1.1 clients written on raw
asyncio streams (a light load generator: the server and the generator share this machine's
cores). Each identify request sends a new noisy copy of an enrolled vector. Prints requests/s,
p50/p99 latency, errors, the CPU each request cost the server and the generator (how the
machine was split), how often the server moved a client to another worker (``Connection:
close``), and the server's resident memory before and after each phase (flat memory = no
leak). There is no self-hosted peer to run in the same process; the figures are absolute.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import resources
from pathlib import Path

import httpx
import numpy as np

from visage.api.keys import ApiKeys
from visage.config import Settings
from visage.gallery import Gallery, NewTemplate

TEMPLATES_PER_PERSON = 5


def unit(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


def build_gallery(settings: Settings, templates: int) -> np.ndarray:
    """Enrol ``templates`` vectors through the Gallery API; returns them (probes are drawn near them).

    A data dir that already holds the gallery (``--data-dir`` from an earlier run) is reused.
    """
    rng = np.random.default_rng(0)
    vectors = unit(rng.standard_normal((templates, 128)))
    with Gallery(settings) as gallery:
        if "bench" in {g.name for g in gallery.galleries()}:
            people = gallery.store.person_count(gallery.get("bench"))
            if people - templates // TEMPLATES_PER_PERSON not in (0, 1):  # bench_service adds the astronaut
                raise SystemExit(f"{settings.data_dir} holds a bench gallery of another size")
            return vectors
        gallery.create("bench", legal_basis="legitimate_interest", justification="load benchmark, synthetic vectors")
        for person, start in enumerate(range(0, templates, TEMPLATES_PER_PERSON)):
            rows = vectors[start : start + TEMPLATES_PER_PERSON]
            gallery.enroll_templates("bench", f"p{person:06d}",
                                     [NewTemplate(v, "0" * 64, (0.0, 0.0, 1.0, 1.0), 1.0) for v in rows])
    return vectors


def server_rss_mb(pid: int) -> float:
    """Resident memory of the server and its worker processes."""
    total = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        if int(entry.name) == pid or int(fields.get("PPid", "0").strip()) == pid:
            total += int(fields.get("VmRSS", "0 kB").split()[0]) / 1024
    return total


async def client(host: str, port: int, requests: list[bytes], deadline: float, latencies: list[float],
                 statuses: list[int], reconnects: list[int], finished: list[float] | None = None) -> None:
    """One keep-alive client sending requests back to back until the deadline.

    Like any HTTP/1.1 client it opens a new connection after a response that says
    ``Connection: close`` (the server does so to move load between its workers); the
    reconnection is part of the next request's latency.
    """
    reader, writer = await asyncio.open_connection(host, port)
    index = 0
    while time.perf_counter() < deadline:
        started = time.perf_counter()
        if writer.is_closing():
            reader, writer = await asyncio.open_connection(host, port)
            reconnects.append(1)
        writer.write(requests[index % len(requests)])
        index += 1
        head = await reader.readuntil(b"\r\n\r\n")
        length, closing = 0, False
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.lower() == b"content-length":
                length = int(value)
            elif name.lower() == b"connection" and value.strip().lower() == b"close":
                closing = True
        await reader.readexactly(length)
        latencies.append(time.perf_counter() - started)
        statuses.append(int(head.split(b" ", 2)[1]))
        if finished is not None:
            finished.append(time.perf_counter())
        if closing:
            writer.close()
    writer.close()


async def load(host: str, port: int, requests: list[bytes], clients: int, seconds: float,
               finished: list[float] | None = None) -> tuple[np.ndarray, list[int], int]:
    """``clients`` clients for ``seconds``: latencies (ms), statuses, reconnections; ``finished`` gets the
    completion time (perf_counter) of each request, in the order of the latencies."""
    latencies: list[float] = []
    statuses: list[int] = []
    reconnects: list[int] = []
    deadline = time.perf_counter() + seconds
    shares = [requests[i::clients] or requests for i in range(clients)]
    await asyncio.gather(*(client(host, port, shares[i], deadline, latencies, statuses, reconnects, finished)
                           for i in range(clients)))
    return np.array(latencies) * 1000, statuses, len(reconnects)


@contextmanager
def running_server(env: dict[str, str], workers: int) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    """``visage serve`` started as a user would, once it answers /ready: (process, port)."""
    port = 18_000 + os.getpid() % 1000
    server = subprocess.Popen([sys.executable, "-m", "visage.cli", "serve", "--port", str(port), "--workers",
                               str(workers), "--no-access-log"], env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/ready", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.5)
        yield server, port
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(timeout=60)


def identify_requests(vectors: np.ndarray, key: str, count: int = 2000) -> list[bytes]:
    """Identify-by-embedding requests, each a new noisy copy of an enrolled vector."""
    rng = np.random.default_rng(1)
    picked = vectors[rng.integers(0, len(vectors), count)]
    probes = unit(picked + 0.05 * rng.standard_normal(picked.shape).astype(np.float32))
    return [http_request("POST", "/v1/galleries/bench/identify-embedding", key,
                         json.dumps({"embedding": [round(float(v), 6) for v in p]}).encode(), "application/json")
            for p in probes]


def http_request(method: str, path: str, key: str, body: bytes, content_type: str) -> bytes:
    head = (f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {key}\r\n"
            f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n\r\n")
    return head.encode() + body


def multipart(fields: dict[str, tuple[str, bytes, str]]) -> tuple[bytes, str]:
    boundary = "visagebenchboundary"
    parts = []
    for name, (filename, content, kind) in fields.items():
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
                     f"Content-Type: {kind}\r\n\r\n".encode() + content + b"\r\n")
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and its children (the server's workers)."""
    total = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(entry.name) == pid or int(stat[1]) == pid:
            total += (int(stat[11]) + int(stat[12])) / os.sysconf("SC_CLK_TCK")
    return total


def phase(label: str, server: subprocess.Popen[bytes], port: int, requests: list[bytes], clients: int,
          seconds: float) -> dict[str, float]:
    asyncio.run(load("127.0.0.1", port, requests, clients, min(3.0, seconds)))  # warm-up, not counted
    before, server_cpu, own_cpu = server_rss_mb(server.pid), cpu_seconds(server.pid), time.process_time()
    latencies, statuses, reconnects = asyncio.run(load("127.0.0.1", port, requests, clients, seconds))
    server_cpu, own_cpu = cpu_seconds(server.pid) - server_cpu, time.process_time() - own_cpu
    after = server_rss_mb(server.pid)
    errors = sum(1 for s in statuses if s != 200)
    row = {"requests": len(statuses), "requests_per_s": len(statuses) / seconds,
           "p50_ms": float(np.percentile(latencies, 50)), "p99_ms": float(np.percentile(latencies, 99)),
           "errors": errors, "reconnects": reconnects, "rss_before_mb": before, "rss_after_mb": after,
           "server_cpu_ms_per_request": server_cpu / len(statuses) * 1000,
           "generator_cpu_ms_per_request": own_cpu / len(statuses) * 1000}
    print(f"{label:34s} {clients:7d} {row['requests_per_s']:9.1f} {row['p50_ms']:8.2f} {row['p99_ms']:8.2f} "
          f"{errors:7d} {row['server_cpu_ms_per_request']:6.2f} / {row['generator_cpu_ms_per_request']:.2f} "
          f"{reconnects:6d} {before:8.0f} → {after:.0f} MB")
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--templates", type=int, default=100_000)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--verify-clients", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--workers", type=int, default=2, help="Server processes.")
    parser.add_argument("--threads", type=int, help="Threads per server process (default: the service's).")
    parser.add_argument("--data-dir", type=Path, help="Keep (or reuse) the built gallery here instead of a temp dir.")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        data_dir = args.data_dir or Path(tmp)
        env = {**os.environ, "VISAGE_DATA_DIR": str(data_dir),
               "VISAGE_SERVICE__RATE_LIMIT_PER_MINUTE": "100000000"}  # one key drives the whole load
        if args.threads:
            env["VISAGE_SERVICE__THREADS"] = str(args.threads)
        settings = Settings(data_dir=data_dir)
        started = time.perf_counter()
        vectors = build_gallery(settings, args.templates)
        print(f"gallery: {args.templates:,} templates ({args.templates // TEMPLATES_PER_PERSON:,} people) "
              f"built in {time.perf_counter() - started:.0f} s")
        photo = resources.files("visage.data").joinpath("astronaut.jpg").read_bytes()
        with Gallery(settings) as gallery:  # before the server starts: its index is then current
            gallery.enroll("bench", "astronaut", [photo])
        keys = ApiKeys(Gallery(settings).store.db)
        key = keys.create("bench", ["identify", "enroll", "read"], gallery="bench")[1]
        keys.db.close()

        with running_server(env, args.workers) as (server, port):
            identify = identify_requests(vectors, key)
            body, kind = multipart({"image": ("a.jpg", photo, "image/jpeg")})
            verify = [http_request("POST", "/v1/galleries/bench/persons/astronaut/verify", key, body, kind)]

            threads = args.threads or settings.service.threads
            print(f"server: {args.workers} process(es) x {threads} threads; load generator: 1 process, asyncio; "
                  f"{os.cpu_count()} cores shared")
            print(f"{'operation':34s} {'clients':>7s} {'req/s':>9s} {'p50 ms':>8s} {'p99 ms':>8s} {'errors':>7s} "
                  f"{'CPU ms/req srv/gen':>18s} {'moves':>6s} {'server RSS':>10s}")
            report = {
                "identify_embedding": phase(f"identify-by-embedding ({args.templates // 1000}k)", server, port,
                                            identify, args.clients, args.seconds),
                "verify_image": phase("verify (512x512 JPEG, 1 face)", server, port, verify, args.verify_clients,
                                      args.seconds),
            }
            print(json.dumps(report))

if __name__ == "__main__":
    main()
