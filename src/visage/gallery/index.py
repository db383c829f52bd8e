"""The ``VectorIndex`` protocol: a rebuildable cache of one gallery's template vectors."""

from __future__ import annotations

from typing import Protocol

import numpy as np


class VectorIndex(Protocol):
    """Inner-product search over unit vectors keyed by template id.

    ``revision`` is the gallery revision (from the SQL store) the contents reflect; the
    gallery rebuilds the index from SQL whenever the two differ. Implementations are used
    under the gallery's lock and need not be thread-safe themselves.
    """

    dim: int
    revision: int

    def __len__(self) -> int: ...

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Add ``(n,)`` int64 ids with ``(n, dim)`` float32 unit vectors."""
        ...

    def remove(self, ids: np.ndarray) -> None:
        """Remove ids; afterwards they never appear in results. Unknown ids are ignored."""
        ...

    def search(self, vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """``(n, k)`` similarities and ids, best first; missing results have id -1."""
        ...

    def reset(self) -> None:
        """Drop every vector (before a rebuild)."""
        ...

    def save(self) -> None:
        """Persist contents and revision (no-op for servers that persist by themselves)."""
        ...
