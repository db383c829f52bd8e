"""In-process FAISS index (default): exact inner product, persisted to the data directory.

The index file and a small JSON sidecar holding the revision are each written to a
temporary file and renamed, index first: after a crash the sidecar's revision is never
newer than the index, and a revision that differs from SQL's makes the gallery rebuild.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import faiss
import numpy as np

from visage.errors import StoreError


class FaissIndex:
    def __init__(self, dim: int, path: Path | None = None) -> None:
        self.dim = dim
        self.path = Path(path) if path is not None else None
        self.revision = -1
        self._index = self._empty()
        if self.path is not None:
            self._load()

    def _empty(self) -> faiss.Index:
        return faiss.IndexIDMap2(faiss.IndexFlatIP(self.dim))

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
        self.revision = int(meta["revision"])

    def __len__(self) -> int:
        return int(self._index.ntotal)

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        if len(ids):
            self._index.add_with_ids(np.ascontiguousarray(vectors, np.float32), np.asarray(ids, np.int64))

    def remove(self, ids: np.ndarray) -> None:
        if len(ids):
            self._index.remove_ids(faiss.IDSelectorBatch(np.asarray(ids, np.int64)))

    def search(self, vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        queries = np.ascontiguousarray(np.asarray(vectors, np.float32).reshape(-1, self.dim))
        if len(self) == 0 or k <= 0:
            return np.zeros((len(queries), max(k, 0)), np.float32), np.full((len(queries), max(k, 0)), -1, np.int64)
        found = min(k, len(self))
        similarities = np.zeros((len(queries), k), np.float32)
        ids = np.full((len(queries), k), -1, np.int64)
        similarities[:, :found], ids[:, :found] = self._index.search(queries, found)
        return similarities, ids

    def reset(self) -> None:
        self._index = self._empty()
        self.revision = -1

    def save(self) -> None:
        if self.path is None:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            _atomic_write(self.path, faiss.serialize_index(self._index).tobytes())
            meta = {"revision": self.revision, "dim": self.dim, "count": len(self)}
            _atomic_write(self._meta_path, json.dumps(meta).encode())
        except OSError as exc:
            raise StoreError(f"cannot save the vector index to {self.path}: {exc.strerror}") from None


def _atomic_write(path: Path, data: bytes) -> None:
    with tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.", delete=False) as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
        temporary = handle.name
    os.replace(temporary, path)
