"""Vector search at scale: FAISS (1M templates) and Milvus-lite (100k), random unit 128-d vectors.

    .venv/bin/python benchmarks/bench_search.py [--faiss 1000000] [--milvus 100000]

For each backend: build time, resident memory of this process after the build (FAISS) ,
p50/p99 latency of single queries, and recall@1 against exact search. Queries are enrolled
vectors plus noise (cosine ~0.9 to their source, like a new photo of an enrolled person);
recall@1 counts queries whose top result is the exact search's top result.
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

import faiss
import numpy as np

from visage.gallery.index_faiss import FaissIndex, search_effort


def unit(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


def data(count: int, queries: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    vectors = np.empty((count, 128), np.float32)
    for start in range(0, count, 100_000):
        vectors[start : start + 100_000] = unit(rng.standard_normal((min(100_000, count - start), 128)))
    picked = vectors[rng.integers(0, count, queries)]
    probes = unit(picked + 0.05 * rng.standard_normal(picked.shape).astype(np.float32))
    return vectors, probes


def exact_top1(vectors: np.ndarray, probes: np.ndarray) -> np.ndarray:
    flat = faiss.IndexFlatIP(vectors.shape[1])
    flat.add(vectors)
    return flat.search(probes, 1)[1][:, 0]


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def latencies(search: object, probes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    times, found = [], []
    for probe in probes:
        started = time.perf_counter()
        _, ids = search(probe[None], 1)  # type: ignore[operator]
        times.append(time.perf_counter() - started)
        found.append(ids[0, 0])
    return np.array(times) * 1000, np.array(found)


def report(label: str, count: int, build_s: float, memory: str, times_ms: np.ndarray, recall: float) -> None:
    print(f"{label:<28} {count:>9,} {build_s:9.1f} {memory:>10} {np.percentile(times_ms, 50):8.2f} "
          f"{np.percentile(times_ms, 99):8.2f} {recall:9.4f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--faiss", type=int, default=1_000_000)
    parser.add_argument("--milvus", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--ef-search", type=int, nargs="+",
                        help="HNSW efSearch values measured on the same build (default: half, once and twice the "
                        "size's default).")
    args = parser.parse_args()
    print(f"{'backend':<28} {'vectors':>9} {'build s':>9} {'RSS MB':>10} {'p50 ms':>8} {'p99 ms':>8} {'recall@1':>9}")

    vectors, probes = data(args.faiss, args.queries)
    truth = exact_top1(vectors, probes)
    ids = np.arange(len(vectors), dtype=np.int64)
    baseline = rss_mb()
    started = time.perf_counter()
    index = FaissIndex(128)
    for start in range(0, len(vectors), 50_000):
        index.add(ids[start : start + 50_000], vectors[start : start + 50_000])
    build = time.perf_counter() - started
    memory = rss_mb() - baseline
    faiss.omp_set_num_threads(1)  # single queries: measure the latency one request sees
    default = search_effort(len(vectors))
    for ef_search in (args.ef_search or [default // 2, default, default * 2]) if index.kind == "hnsw" else [0]:
        index.set_search_effort(ef_search)
        times, found = latencies(index.search, probes)
        label = f"FAISS {index.kind}" + (f" ef={ef_search}" if ef_search else "")
        label += " (default)" if ef_search and ef_search == search_effort(len(vectors)) else ""
        report(label, len(vectors), build, f"+{memory:.0f}", times, float(np.mean(found == truth)))
    del index, vectors

    if args.milvus:
        from visage.gallery.index_milvus import MilvusIndex

        vectors, probes = data(args.milvus, args.queries, seed=1)
        truth = exact_top1(vectors, probes)
        with tempfile.TemporaryDirectory() as tmp:
            started = time.perf_counter()
            milvus = MilvusIndex(128, str(Path(tmp) / "bench.db"), "bench")
            milvus.add(np.arange(len(vectors), dtype=np.int64), vectors)
            build = time.perf_counter() - started
            times, found = latencies(milvus.search, probes)
            report("Milvus-lite (exact IP)", len(vectors), build, "server", times, float(np.mean(found == truth)))


if __name__ == "__main__":
    main()
