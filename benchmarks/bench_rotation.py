"""Data key rotation on a 100k-template gallery while the REST service answers identifications.

    .venv/bin/python benchmarks/bench_rotation.py [--templates 100000] [--clients 4] [--workers 2] [--data-dir DIR]

Builds the gallery (as bench_service.py does), starts `visage serve`, drives identify-by-embedding
with keep-alive clients, and meanwhile runs `visage keys rotate-data-key` in its own process, as
an operator would. Prints how long the rotation took (records re-sealed per second), the
identification load before, during and after it (req/s, p50/p99, errors), the longest pause
between two answered requests during the rotation (what a client would feel as downtime), and
checks that every template ended under the new key. No peer offers online rotation; the figures
are absolute, with the during/before ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench_service import TEMPLATES_PER_PERSON, build_gallery, client, identify_requests, load, running_server
from visage.api.keys import ApiKeys
from visage.config import Settings
from visage.gallery import Gallery

SETTLE_SECONDS = 5.0  # load measured before the rotation starts and after it ends


def window(measured: Measured, start: float, end: float) -> dict[str, float]:
    """Requests answered between ``start`` and ``end``; the longest pause includes the window's edges."""
    inside = (measured.finished >= start) & (measured.finished < end)
    latencies = measured.latencies_ms[inside]
    gaps = np.diff(np.concatenate([[start], np.sort(measured.finished[inside]), [end]]))
    return {"seconds": end - start, "requests": int(inside.sum()),
            "requests_per_s": float(inside.sum() / (end - start)),
            "p50_ms": float(np.percentile(latencies, 50)), "p99_ms": float(np.percentile(latencies, 99)),
            "max_ms": float(latencies.max()), "errors": int((measured.statuses[inside] != 200).sum()),
            "longest_pause_ms": float(gaps.max() * 1000)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--templates", type=int, default=100_000)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--data-dir", type=Path, help="Keep (or reuse) the built gallery here instead of a temp dir.")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        data_dir = args.data_dir or Path(tmp)
        env = {**os.environ, "VISAGE_DATA_DIR": str(data_dir), "VISAGE_SERVICE__RATE_LIMIT_PER_MINUTE": "100000000"}
        settings = Settings(data_dir=data_dir)
        started = time.perf_counter()
        vectors = build_gallery(settings, args.templates)
        print(f"gallery: {args.templates:,} templates ({args.templates // TEMPLATES_PER_PERSON:,} people) "
              f"ready in {time.perf_counter() - started:.0f} s")
        with Gallery(settings) as gallery:
            keys = ApiKeys(gallery.store.db)
            key = keys.create("bench", ["identify"], gallery="bench")[1]
            gallery.identify_embedding("bench", vectors[0])  # the index file is current before the server starts

        with running_server(env, args.workers) as (_, port):
            requests = identify_requests(vectors, key)
            asyncio.run(load("127.0.0.1", port, requests, args.clients, 3.0))  # warm-up, not counted
            measured = asyncio.run(rotate_under_load(port, requests, args.clients, env))

    before = window(measured, measured.started, measured.rotation_start)
    during = window(measured, measured.rotation_start, measured.rotation_end)
    after = window(measured, measured.rotation_end, measured.ended)
    done = measured.rotation
    print(f"rotation: {done['resealed']:,} records re-sealed under key {done['key_id']} and "
          f"{done['indexes_resaved']} index file(s) re-saved in {done['seconds']:.1f} s "
          f"({done['resealed'] / done['seconds']:,.0f} records/s; command wall time "
          f"{measured.rotation_end - measured.rotation_start:.1f} s); retired {done['retired']}; "
          f"behind {done['behind']}")
    print(f"{'identify-by-embedding':22s} {'req/s':>8s} {'p50 ms':>8s} {'p99 ms':>8s} {'max ms':>8s} "
          f"{'errors':>7s} {'longest pause ms':>17s}")
    for label, row in (("before rotation", before), ("during rotation", during), ("after rotation", after)):
        print(f"{label:22s} {row['requests_per_s']:8.1f} {row['p50_ms']:8.2f} {row['p99_ms']:8.2f} "
              f"{row['max_ms']:8.1f} {row['errors']:7d} {row['longest_pause_ms']:17.1f}")
    print(f"during/before: throughput x{during['requests_per_s'] / before['requests_per_s']:.2f}, "
          f"p99 x{during['p99_ms'] / before['p99_ms']:.2f}")
    print(json.dumps({"rotation": done, "before": before, "during": during, "after": after}))


@dataclass
class Measured:
    """Every answered request (completion time, latency, status) and the moments that cut them into windows."""

    finished: np.ndarray
    latencies_ms: np.ndarray
    statuses: np.ndarray
    started: float
    rotation_start: float
    rotation_end: float
    ended: float
    rotation: dict[str, Any]


async def rotate_under_load(port: int, requests: list[bytes], clients: int, env: dict[str, str]) -> Measured:
    """Clients run throughout; the rotation command runs in its own process between two settling periods."""
    latencies: list[float] = []
    statuses: list[int] = []
    finished: list[float] = []
    far = time.perf_counter() + 3600
    shares = [requests[i::clients] or requests for i in range(clients)]
    tasks = [asyncio.create_task(client("127.0.0.1", port, shares[i], far, latencies, statuses, [], finished))
             for i in range(clients)]
    started = time.perf_counter()
    await asyncio.sleep(SETTLE_SECONDS)
    rotation_start = time.perf_counter()
    command = await asyncio.create_subprocess_exec(sys.executable, "-m", "visage.cli", "keys", "rotate-data-key",
                                                   "--json", env=env, stdout=asyncio.subprocess.PIPE)
    output, _ = await command.communicate()
    rotation_end = time.perf_counter()
    if command.returncode != 0:
        raise SystemExit(f"the rotation failed (exit {command.returncode})")
    await asyncio.sleep(SETTLE_SECONDS)
    ended = time.perf_counter()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    # Each client appends a request's latency, status and completion time together, with no await in between.
    count = min(len(latencies), len(statuses), len(finished))
    return Measured(np.array(finished[:count]), np.array(latencies[:count]) * 1000, np.array(statuses[:count]),
                    started, rotation_start, rotation_end, ended, json.loads(output))


if __name__ == "__main__":
    main()
