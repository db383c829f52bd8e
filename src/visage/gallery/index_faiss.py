"""In-process FAISS index (default): exact inner product while small, HNSW above a size, persisted.

Below ``hnsw_threshold`` vectors the index is exact (``IndexFlatIP``): a single query costs
one pass over the vectors, ~0.7 ms at 20k and ~3.4 ms at 100k on this class of CPU. Beyond it
the index is converted once to HNSW (``IndexHNSWFlat``, inner product), whose query cost
grows slowly with size; its search effort (efSearch) grows with the size too, by
:func:`search_effort`, to keep recall@1 at ~0.999. HNSW cannot delete in place, so removed ids
become tombstones: the search skips them while walking the graph (an id selector) and the
graph is rebuilt without them once they exceed :data:`COMPACT_FRACTION` of the index.

The index file holds vectors, so the gallery hands it a cipher and it is sealed like the
templates in SQL (AES-256-GCM under the current data key; a file that cannot be opened, or an
unsealed one, is ignored and the index rebuilt from SQL).

The index file and a JSON sidecar (revision, tombstones) are each written to a temporary
file and renamed, index first: after a crash the sidecar's revision is never newer than the
index, and a revision that differs from SQL's makes the gallery rebuild.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from visage.errors import StoreError, VisageError
from visage.privacy.crypto import DataCipher

HNSW_NEIGHBOURS = 32  # graph degree M
HNSW_BUILD_EFFORT = 80  # efConstruction
COMPACT_FRACTION = 0.1
PARALLEL_QUERIES = 16  # searches of fewer queries run on the calling thread alone
DEFAULT_HNSW_THRESHOLD = 20_000
SEALED_MAGIC = b"VSGSEAL1"  # then the key id's length (2 bytes, big-endian), the key id, the sealed index


def search_effort(vectors: int) -> int:
    """efSearch for an HNSW graph of ``vectors``: the smallest value reaching recall@1 ≥ 0.999 on random unit vectors.

    Measured (128-d, M=32, efConstruction=80, noisy copies of stored vectors as queries): 64 at
    100k (0.9992), 160 at 300k (0.9997), 384 at 1M (0.999; bench_search.py). Those points fit
    ef = 64 · (n / 100k)^0.78; random vectors are the hard case (face embeddings cluster).
    """
    return max(64, math.ceil(64 * (vectors / 100_000) ** 0.78))


class FaissIndex:
    def __init__(self, dim: int, path: Path | None = None, *, hnsw_threshold: int = DEFAULT_HNSW_THRESHOLD,
                 cipher: DataCipher | None = None, context: bytes = b"faiss-index") -> None:
        """``path``: where the index persists (None: memory only); ``cipher``: seal that file, bound to ``context``."""
        self.dim = dim
        self.path = Path(path) if path is not None else None
        self._cipher = cipher
        self._context = context
        self.hnsw_threshold = hnsw_threshold
        self.revision = -1
        self._tombstones: set[int] = set()
        self._skip: Any = None  # search parameters that skip the tombstones (None when there are none)
        self._effort_override: int | None = None
        self._index = self._flat()
        if self.path is not None:
            self._load()

    def _flat(self) -> faiss.Index:
        return faiss.IndexIDMap2(faiss.IndexFlatIP(self.dim))

    def _hnsw(self) -> faiss.Index:
        graph = faiss.IndexHNSWFlat(self.dim, HNSW_NEIGHBOURS, faiss.METRIC_INNER_PRODUCT)
        graph.hnsw.efConstruction = HNSW_BUILD_EFFORT
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
            assert self.path is not None
            index = faiss.deserialize_index(np.frombuffer(self._open(self.path.read_bytes()), np.uint8))
        except (OSError, ValueError, RuntimeError, VisageError):
            return
        if index.d != self.dim or meta.get("dim") != self.dim or meta.get("count") != index.ntotal:
            return
        self._index = index
        self._set_tombstones({int(i) for i in meta.get("tombstones", [])})
        self.revision = int(meta["revision"])

    def set_search_effort(self, ef_search: int | None) -> None:
        """Fix HNSW's efSearch (higher finds the true nearest neighbour more often, at more cost); None: by size."""
        self._effort_override = ef_search
        self._tune()

    def _tune(self) -> None:
        """Set efSearch for the current size (the graph's, and the tombstone-skipping parameters')."""
        if not self._is_hnsw(self._index):
            return
        effort = self._effort_override or search_effort(len(self))
        _unwrap(self._index)[1].hnsw.efSearch = effort
        if self._skip is not None:
            self._skip.efSearch = effort

    def _set_tombstones(self, tombstones: set[int]) -> None:
        """Rebuild the search parameters that skip tombstones: only when the set changes, not per add or search."""
        self._tombstones = tombstones
        self._skip = None
        if tombstones and self._is_hnsw(self._index):
            excluded = faiss.IDSelectorBatch(np.fromiter(tombstones, np.int64, len(tombstones)))
            kept = faiss.IDSelectorNot(excluded)
            # Translated by us (graph positions → ids) so that IndexIDMap2 uses it as is and never patches it.
            translated = faiss.IDSelectorTranslated(_unwrap(self._index)[0].id_map, kept)
            self._skip = faiss.SearchParametersHNSW(sel=translated)  # type: ignore[attr-defined]  # not in the stubs
            self._skip.referenced = (excluded, kept, translated)  # C++ objects: keep what the pointers reach alive
        self._tune()

    def __len__(self) -> int:
        return int(self._index.ntotal) - len(self._tombstones)

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        if not len(ids):
            return
        ids = np.asarray(ids, np.int64)
        if self._tombstones.intersection(int(i) for i in ids):  # a re-added id: drop its old vector first
            self._rebuild_as(self._hnsw(), drop=ids)
        if self.kind == "flat" and self._index.ntotal + len(ids) > self.hnsw_threshold:
            self._rebuild_as(self._hnsw())
        self._index.add_with_ids(np.ascontiguousarray(vectors, np.float32), ids)
        self._tune()

    def remove(self, ids: np.ndarray) -> None:
        if not len(ids):
            return
        ids = np.asarray(ids, np.int64)
        if self.kind == "flat":
            self._index.remove_ids(faiss.IDSelectorBatch(ids))
            return
        present = faiss.vector_to_array(_unwrap(self._index)[0].id_map)
        self._set_tombstones(self._tombstones | {int(i) for i in ids[np.isin(ids, present)]})
        if len(self._tombstones) > COMPACT_FRACTION * self._index.ntotal:
            self._rebuild_as(self._hnsw() if len(self) > self.hnsw_threshold else self._flat())

    def _rebuild_as(self, target: faiss.Index, drop: np.ndarray | None = None) -> None:
        """Move every live vector (not tombstoned, not in ``drop``) into ``target``."""
        id_map, inner = _unwrap(self._index)
        ids = faiss.vector_to_array(id_map.id_map).astype(np.int64)
        vectors = inner.reconstruct_n(0, inner.ntotal) if inner.ntotal else np.zeros((0, self.dim), np.float32)
        gone = np.fromiter(self._tombstones, np.int64, len(self._tombstones))
        keep = ~np.isin(ids, gone if drop is None else np.concatenate([gone, drop]))
        target.add_with_ids(np.ascontiguousarray(vectors[keep], np.float32), ids[keep])
        self._index = target
        self._set_tombstones(set())

    def search(self, vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        queries = np.ascontiguousarray(np.asarray(vectors, np.float32).reshape(-1, self.dim))
        k = max(k, 0)
        similarities = np.zeros((len(queries), k), np.float32)
        ids = np.full((len(queries), k), -1, np.int64)
        wanted = min(k, len(self))
        if wanted == 0:
            return similarities, ids
        if len(queries) >= PARALLEL_QUERIES:
            found_similarities, found_ids = self._index.search(queries, wanted, params=self._skip)
        else:
            # A few queries gain nothing from OpenMP, and its idle team spins on a core for milliseconds
            # after each search (measured: a whole core under a load of single-query searches).
            # The thread count is per calling thread, so this affects no other search.
            threads = faiss.omp_get_max_threads()
            faiss.omp_set_num_threads(1)
            try:
                found_similarities, found_ids = self._index.search(queries, wanted, params=self._skip)
            finally:
                faiss.omp_set_num_threads(threads)
        similarities[:, :wanted], ids[:, :wanted] = found_similarities, found_ids
        return similarities, ids

    def reset(self) -> None:
        self._index = self._flat()
        self._set_tombstones(set())
        self.revision = -1

    def save(self) -> None:
        if self.path is None:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            _atomic_write(self.path, self._seal(faiss.serialize_index(self._index).tobytes()))
            meta = {"revision": self.revision, "dim": self.dim, "count": int(self._index.ntotal),
                    "tombstones": sorted(self._tombstones)}
            _atomic_write(self._meta_path, json.dumps(meta).encode())
        except OSError as exc:
            raise StoreError(f"cannot save the vector index to {self.path}: {exc.strerror}") from None


    def _seal(self, data: bytes) -> bytes:
        if self._cipher is None:
            return data
        key_id, sealed = self._cipher.seal(data, self._context)
        name = key_id.encode()
        return SEALED_MAGIC + len(name).to_bytes(2, "big") + name + sealed

    def _open(self, data: bytes) -> bytes:
        """The serialized index in a file; with a cipher, only a sealed file is accepted (ValueError otherwise)."""
        if self._cipher is None:
            return data
        if not data.startswith(SEALED_MAGIC):
            raise ValueError("an unsealed index file")  # written before encryption at rest: rebuild and seal
        start = len(SEALED_MAGIC) + 2
        end = start + int.from_bytes(data[len(SEALED_MAGIC):start], "big")
        return self._cipher.open(data[start:end].decode(), data[end:], self._context)


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
