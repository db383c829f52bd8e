"""Naming sightings: each sighting's fused embedding searched in a gallery (1:N, at the gallery's operating point)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from visage.gallery.api import Gallery
from visage.video.scanner import Sighting


@dataclass(frozen=True)
class NamedSighting:
    """A sighting and who it is: ``external_id`` None when nobody enrolled passed the decision threshold."""

    sighting: Sighting
    external_id: str | None
    display_name: str | None
    similarity: float | None
    threshold: float | None


def name_sightings(gallery: Gallery, gallery_name: str, sightings: Iterable[Sighting], *,
                   purpose: str | None = None) -> Iterator[NamedSighting]:
    """Each sighting with its best candidate above the threshold (watchlists require a ``purpose``)."""
    for sighting in sightings:
        if sighting.embedding is None:
            yield NamedSighting(sighting, None, None, None, None)
            continue
        found = gallery.identify_embedding(gallery_name, sighting.embedding, top_k=1, purpose=purpose)
        best = found.candidates[0] if found.candidates and found.candidates[0].same else None
        yield NamedSighting(sighting, best.external_id if best else None, best.display_name if best else None,
                            best.similarity if best else None, found.threshold)
