"""In-process FAISS index (default): exact inner product while small, HNSW above a size, persisted.

Below ``hnsw_threshold`` vectors the index is exact (``IndexFlatIP``): a query costs one pass
over the vectors, a few milliseconds up to ~100k templates on two cores. Beyond that it is
converted once to HNSW (``IndexHNSWFlat``, inner product), whose query cost grows
logarithmically. HNSW cannot delete in place, so removed ids become tombstones: they are
filtered out of every result (searches ask for extra neighbours to make up for them) and the
graph is rebuilt without them once they exceed :data:`COMPACT_FRACTION` of the index.

The index file and a JSON sidecar (revision, tombstones) are each written to a temporary
file and renamed, index first: after a crash the sidecar's revision is never newer than the
index, and a revision that differs from SQL's makes the gallery rebuild.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from visage.errors import StoreError

HNSW_NEIGHBOURS = 32  # graph degree M
HNSW_BUILD_EFFORT = 80  # efConstruction
HNSW_SEARCH_EFFORT = 384  # efSearch: recall@1 0.999, p99 4.6 ms on 1M random unit vectors (bench_search.py)
COMPACT_FRACTION = 0.1


class FaissIndex:
    def __init__(self, dim: int, path: Path | None = None, *, hnsw_threshold: int = 100_000) -> None:
        self.dim = dim
        self.path = Path(path) if path is not None else None
        self.hnsw_threshold = hnsw_threshold
        self.revision = -1
        self._tombstones: set[int] = set()
        self._index = self._flat()
        if self.path is not None:
            self._load()

    def _flat(self) -> faiss.Index:
        return faiss.IndexIDMap2(faiss.IndexFlatIP(self.dim))

    def _hnsw(self) -> faiss.Index:
        graph = faiss.IndexHNSWFlat(self.dim, HNSW_NEIGHBOURS, faiss.METRIC_INNER_PRODUCT)
        graph.hnsw.efConstruction = HNSW_BUILD_EFFORT
        graph.hnsw.efSearch = HNSW_SEARCH_EFFORT
        return faiss.IndexIDMap2(graph)

    @property
    def kind(self) -> str:
        return "hnsw" if self._is_hnsw(self._index) else "flat"

    @staticmethod
    def _is_hnsw(index: faiss.Index) -> bool:
        return isinstance(_unwrap(index)[1], faiss.IndexHNSW)

    @property
    def _meta_path(self) -> Path:
        assert self.path is not None
        return self.path.with_suffix(".json")

    def _load(self) -> None:
        """Read the persisted index; anything unreadable just leaves it empty and stale (-1)."""
        try:
            meta = json.loads(self._meta_path.read_text(encoding="utf-8"))
            index = faiss.read_index(str(self.path))
        except (OSError, ValueError, RuntimeError):
            return
        if index.d != self.dim or meta.get("dim") != self.dim or meta.get("count") != index.ntotal:
            return
        self._index = index
        if self._is_hnsw(index):
            _unwrap(index)[1].hnsw.efSearch = HNSW_SEARCH_EFFORT
        self._tombstones = {int(i) for i in meta.get("tombstones", [])}
        self.revision = int(meta["revision"])

    def set_search_effort(self, ef_search: int) -> None:
        """HNSW's efSearch: higher finds the true nearest neighbour more often, at more cost (no-op when flat)."""
        if self._is_hnsw(self._index):
            _unwrap(self._index)[1].hnsw.efSearch = ef_search

    def __len__(self) -> int:
        return int(self._index.ntotal) - len(self._tombstones)

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        if not len(ids):
            return
        ids = np.asarray(ids, np.int64)
        if self._tombstones:
            self._tombstones.difference_update(int(i) for i in ids)
        if self.kind == "flat" and self._index.ntotal + len(ids) > self.hnsw_threshold:
            self._rebuild_as(self._hnsw())
        self._index.add_with_ids(np.ascontiguousarray(vectors, np.float32), ids)

    def remove(self, ids: np.ndarray) -> None:
        if not len(ids):
            return
        ids = np.asarray(ids, np.int64)
        if self.kind == "flat":
            self._index.remove_ids(faiss.IDSelectorBatch(ids))
            return
        present = faiss.vector_to_array(_unwrap(self._index)[0].id_map)
        self._tombstones.update(int(i) for i in ids[np.isin(ids, present)])
        if len(self._tombstones) > COMPACT_FRACTION * self._index.ntotal:
            self._rebuild_as(self._hnsw() if len(self) > self.hnsw_threshold else self._flat())

    def _live(self) -> tuple[np.ndarray, np.ndarray]:
        """Ids and vectors of everything not tombstoned."""
        id_map, inner = _unwrap(self._index)
        ids = faiss.vector_to_array(id_map.id_map).astype(np.int64)
        vectors = inner.reconstruct_n(0, inner.ntotal) if inner.ntotal else np.zeros((0, self.dim), np.float32)
        keep = np.array([int(i) not in self._tombstones for i in ids], bool) if self._tombstones else slice(None)
        return ids[keep], vectors[keep]

    def _rebuild_as(self, target: faiss.Index) -> None:
        ids, vectors = self._live()
        target.add_with_ids(np.ascontiguousarray(vectors, np.float32), ids)
        self._index = target
        self._tombstones = set()

    def search(self, vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        queries = np.ascontiguousarray(np.asarray(vectors, np.float32).reshape(-1, self.dim))
        k = max(k, 0)
        similarities = np.zeros((len(queries), k), np.float32)
        ids = np.full((len(queries), k), -1, np.int64)
        wanted = min(k + len(self._tombstones), int(self._index.ntotal))
        if wanted == 0:
            return similarities, ids
        found_similarities, found_ids = self._index.search(queries, wanted)
        for row in range(len(queries)):
            keep = [c for c, i in enumerate(found_ids[row]) if i >= 0 and int(i) not in self._tombstones][:k]
            similarities[row, : len(keep)] = found_similarities[row, keep]
            ids[row, : len(keep)] = found_ids[row, keep]
        return similarities, ids

    def reset(self) -> None:
        self._index = self._flat()
        self._tombstones = set()
        self.revision = -1

    def save(self) -> None:
        if self.path is None:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            _atomic_write(self.path, faiss.serialize_index(self._index).tobytes())
            meta = {"revision": self.revision, "dim": self.dim, "count": int(self._index.ntotal),
                    "tombstones": sorted(self._tombstones)}
            _atomic_write(self._meta_path, json.dumps(meta).encode())
        except OSError as exc:
            raise StoreError(f"cannot save the vector index to {self.path}: {exc.strerror}") from None


def _unwrap(index: faiss.Index) -> tuple[Any, Any]:
    """The ``IndexIDMap2`` and the index inside it, as their concrete classes."""
    id_map: Any = faiss.downcast_index(index)
    return id_map, faiss.downcast_index(id_map.index)


def _atomic_write(path: Path, data: bytes) -> None:
    with tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.", delete=False) as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
        temporary = handle.name
    os.replace(temporary, path)
