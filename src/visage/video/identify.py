"""Naming sightings: a sighting's embedding searched in the chosen galleries (1:N, at each gallery's operating point).

The best candidate at or above its gallery's threshold, across the galleries, names the
sighting; watchlist galleries are searched with the stated purpose, which they require.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from visage.errors import InvalidInputError
from visage.gallery.api import Gallery
from visage.video.archive import Match


class SightingNamer:
    """Names embeddings from a fixed set of galleries. Thread-safe."""

    def __init__(self, gallery: Gallery, gallery_names: Sequence[str], *, purpose: str | None = None) -> None:
        self.gallery = gallery
        self.purpose = purpose
        self.galleries = [gallery.get(name) for name in dict.fromkeys(gallery_names)]  # unknown names fail here
        for record in self.galleries:
            if record.watchlist and not (purpose or "").strip():
                raise InvalidInputError(f"gallery '{record.name}' is a watchlist: say why the footage is searched "
                                        "(purpose)", code="purpose_required")

    @property
    def watches(self) -> bool:
        """Whether any chosen gallery is a watchlist (then tracks are checked while in view, for alerts)."""
        return any(record.watchlist for record in self.galleries)

    def match(self, embedding: np.ndarray, *, watchlists_only: bool = False) -> Match | None:
        """The best match across the galleries (only the watchlists with ``watchlists_only``), or None."""
        best: Match | None = None
        for record in self.galleries:
            if watchlists_only and not record.watchlist:
                continue
            found = self.gallery.identify_embedding(record.name, embedding, top_k=1, purpose=self.purpose)
            if not found.candidates or not found.candidates[0].same:
                continue
            top = found.candidates[0]
            if best is None or top.similarity > best.similarity:
                person_id = self.gallery.person(record.name, top.external_id).id  # now: a re-enrolment changes it
                best = Match(record.name, record.id, person_id,
                             top.external_id, top.display_name, top.similarity, found.threshold, record.watchlist)
        return best
