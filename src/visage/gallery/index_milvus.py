"""Milvus index: a ``milvus-lite`` file locally, or a Milvus cluster (``http://host:19530``) at scale.

One collection per gallery holds ``(template id, vector)``; a small ``visage_revisions``
collection remembers which gallery revision each one reflects, so a stale collection is
rebuilt from SQL exactly like the FAISS index. Searches ask for strong consistency, so a
vector deleted a moment ago is never returned.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

from visage.errors import StoreError

# Milvus caps a search's result count.
MAX_LIMIT = 16_384
REVISIONS = "visage_revisions"
# Unflushed ("growing") rows are searched by brute force inside Milvus: 20k of them cost ~400 ms
# per query in milvus-lite, ~22 ms once flushed. Bulk adds and checkpoints flush.
FLUSH_ROWS = 1000
_clients: dict[str, Any] = {}
_clients_lock = threading.Lock()


def milvus_client(uri: str) -> Any:
    """One client per URI per process (a milvus-lite file may be opened once)."""
    from pymilvus import MilvusClient

    with _clients_lock:
        if uri not in _clients:
            try:
                _clients[uri] = MilvusClient(uri)
            except Exception as exc:  # pymilvus raises several types for an unreachable server
                raise StoreError(f"cannot open Milvus at {uri}: {exc}") from None
        return _clients[uri]


class MilvusIndex:
    def __init__(self, dim: int, uri: str, collection: str) -> None:
        self.dim = dim
        self.uri = uri
        self.collection = collection
        self._c: Any = milvus_client(uri)  # pymilvus ships no type information
        self._ensure_revisions()
        self.revision = self._stored_revision()
        if not self._c.has_collection(collection):
            self._create()
            self.revision = -1

    def _ensure_revisions(self) -> None:
        from pymilvus import DataType

        if self._c.has_collection(REVISIONS):
            return
        schema = self._c.create_schema(auto_id=False)
        schema.add_field("collection", DataType.VARCHAR, is_primary=True, max_length=200)
        schema.add_field("revision", DataType.INT64)
        schema.add_field("unused", DataType.FLOAT_VECTOR, dim=2)  # Milvus requires a vector field
        params = self._c.prepare_index_params()
        params.add_index(field_name="unused", index_type="FLAT", metric_type="L2")
        self._c.create_collection(REVISIONS, schema=schema, index_params=params)

    def _stored_revision(self) -> int:
        rows = self._c.query(REVISIONS, filter=f'collection == "{self.collection}"', output_fields=["revision"],
                             consistency_level="Strong")
        return int(rows[0]["revision"]) if rows else -1

    def _create(self) -> None:
        from pymilvus import DataType

        schema = self._c.create_schema(auto_id=False)
        schema.add_field("id", DataType.INT64, is_primary=True)
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=self.dim)
        params = self._c.prepare_index_params()
        params.add_index(field_name="vector", index_type="FLAT", metric_type="IP")
        self._c.create_collection(self.collection, schema=schema, index_params=params)

    def __len__(self) -> int:
        rows = self._c.query(self.collection, filter="", output_fields=["count(*)"], consistency_level="Strong")
        return int(rows[0]["count(*)"])

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        rows = [{"id": int(i), "vector": v.tolist()} for i, v in zip(ids, np.asarray(vectors, np.float32), strict=True)]
        for start in range(0, len(rows), 10_000):
            self._c.insert(self.collection, rows[start : start + 10_000])
        if len(rows) >= FLUSH_ROWS:
            self._c.flush(self.collection)

    def remove(self, ids: np.ndarray) -> None:
        if len(ids):
            self._c.delete(self.collection, ids=[int(i) for i in ids])

    def search(self, vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        queries = np.asarray(vectors, np.float32).reshape(-1, self.dim)
        k = max(0, min(k, MAX_LIMIT))
        similarities = np.zeros((len(queries), k), np.float32)
        ids = np.full((len(queries), k), -1, np.int64)
        if k == 0 or len(queries) == 0:
            return similarities, ids
        hits = self._c.search(self.collection, data=queries.tolist(), limit=k, output_fields=[],
                              consistency_level="Strong")
        for row, row_hits in enumerate(hits):
            for col, hit in enumerate(row_hits[:k]):
                similarities[row, col] = hit["distance"]
                ids[row, col] = hit["id"]
        return similarities, ids

    def reset(self) -> None:
        self._c.drop_collection(self.collection)
        self._create()
        self.revision = -1

    def save(self) -> None:
        self._c.flush(self.collection)
        self._c.upsert(REVISIONS, [{"collection": self.collection, "revision": self.revision, "unused": [0.0, 0.0]}])
