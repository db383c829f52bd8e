"""The sighting archive: every sighting stored with its fused embedding, searchable by face.

"Where and when did this face appear?" is answered by a vector index over sighting embeddings
(one per embedding model, of the configured kind, FAISS or Milvus; a cache of SQL like gallery
indexes: rebuilt when the archive's revision moved under it, e.g. after an erasure or a
retention purge). A search by a photo or by
an enrolled person's templates compares each sighting 1:1 at the ``video.match_operating_point``
(a false-match rate), so a person enrolled after the footage was processed is found in it.

A sighting that matched nobody enrolled gets a pseudonymous unknown: the archive is searched for
earlier unknown sightings of the same face at the same operating point, and the best one's
pseudonym is reused, else a new random one is made. "This stranger came back five times" is then
a count, with no name or photo needed.
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass
from datetime import datetime

import numpy as np

from visage.errors import ConflictError, InvalidInputError, NoFaceError
from visage.gallery.api import Gallery, open_index, unit_vector
from visage.gallery.index import VectorIndex
from visage.gallery.sightings_store import NewSighting, SightingRecord, SightingStore
from visage.io.image import ImageSource
from visage.model_cards import Threshold
from visage.types import FloatArray
from visage.video.scanner import Sighting

# Nearest archived sightings looked at when deciding whether an unknown face was seen before.
UNKNOWN_NEIGHBOURS = 16
# Archive hits fetched from the index per search at least (then cut to the threshold and the limit).
MIN_SEARCH_DEPTH = 1000


@dataclass(frozen=True)
class Match:
    """Who a sighting is: an enrolled person of a gallery, at ``similarity`` (≥ ``threshold``)."""

    gallery: str
    gallery_id: int
    person_id: int
    external_id: str
    display_name: str | None
    similarity: float
    threshold: float
    watchlist: bool


@dataclass(frozen=True)
class ArchiveHit:
    sighting: SightingRecord
    similarity: float


@dataclass(frozen=True)
class ArchiveSearch:
    """Hits newest first, and the threshold (with its false-match rate) that decided them."""

    hits: list[ArchiveHit]
    threshold: Threshold
    searched: int


class SightingArchive:
    """Sightings of one database, with an index per embedding model. Thread-safe (several streams share one)."""

    def __init__(self, gallery: Gallery) -> None:
        self.gallery = gallery
        self.settings = gallery.settings
        self.store = SightingStore(gallery.store.db, gallery.store.cipher)
        self._indexes: dict[str, VectorIndex] = {}
        self._lock = threading.RLock()

    @property
    def model_id(self) -> str:
        return self.gallery.analyzer.model.id

    def threshold(self) -> Threshold:
        video = self.settings.video
        return self.gallery.analyzer.decision_threshold(video.match_operating_point
                                                        or self.settings.gallery.operating_point)

    def close(self) -> None:
        with self._lock:
            for index in self._indexes.values():
                index.save()

    # --- the index -------------------------------------------------------------------------------

    def _index(self, model_id: str) -> VectorIndex:
        """The model's index, rebuilt from SQL first when it does not reflect the archive's revision."""
        index = self._indexes.get(model_id)
        if index is None:
            name = f"sightings-{hashlib.sha256(model_id.encode()).hexdigest()[:16]}"
            index = self._indexes[model_id] = open_index(self.settings, self.gallery.analyzer.embedder.dim, name,
                                                         self.store.cipher,
                                                         f"faiss-index|sightings={model_id}".encode())
        revision = self.store.revision(model_id)
        while index.revision != revision:
            index.reset()
            for ids, vectors in self.store.vectors(model_id):
                index.add(ids, vectors)
            index.revision, revision = revision, self.store.revision(model_id)  # loop again if someone wrote
            if index.revision == revision:
                index.save()
        return index

    # --- recording -------------------------------------------------------------------------------

    def record(self, sighting: Sighting, match: Match | None, *, thumbnail: bytes | None = None) -> SightingRecord:
        """Store a sighting, as ``match`` or (None) as an unknown: a pseudonym reused when the face was seen before."""
        model_id = self.model_id
        with self._lock:
            index = self._index(model_id)
            unknown_id = None
            if match is None and sighting.embedding is not None:
                unknown_id = self._unknown_for(index, sighting)
            before = index.revision
            new = NewSighting(sighting.source, sighting.track_id, sighting.start_seconds, sighting.end_seconds,
                              sighting.start_wall, sighting.end_wall, sighting.frames, sighting.best_quality,
                              sighting.embedding, match.gallery_id if match else None,
                              match.person_id if match else None, match.similarity if match else None, unknown_id,
                              thumbnail if self.settings.video.keep_thumbnails else None)
            sighting_id = self.store.add(new, model_id)
            if self.store.revision(model_id) == before + 1:  # nobody else wrote: apply our change to the index
                if sighting.embedding is not None:
                    index.add(np.array([sighting_id], np.int64), sighting.embedding[None].astype(np.float32))
                index.revision = before + 1
            # else the next use rebuilds it from SQL
        return self.store.records([sighting_id])[sighting_id]

    def _unknown_for(self, index: VectorIndex, sighting: Sighting) -> int:
        assert sighting.embedding is not None
        if len(index):
            similarities, ids = index.search(sighting.embedding[None].astype(np.float32),
                                             min(UNKNOWN_NEIGHBOURS, len(index)))
            limit = self.threshold().value
            close = [int(i) for s, i in zip(similarities[0], ids[0], strict=True) if i >= 0 and s >= limit]
            unknowns = self.store.unknown_ids(close)
            for sighting_id in close:  # best first
                if sighting_id in unknowns:
                    return unknowns[sighting_id]
        return self.store.new_unknown(self.model_id, sighting.start_wall).id

    # --- search ----------------------------------------------------------------------------------

    def search(self, queries: FloatArray, *, purpose: str | None, limit: int = 100,
               since: datetime | None = None, until: datetime | None = None) -> ArchiveSearch:
        """Sightings of the face in ``queries`` (one or more unit embeddings of one person), newest first.

        Each sighting scores its best similarity to any query; those at or above the match
        threshold are hits. ``purpose`` is required: searching footage for a person is a use of
        their data that must be stated (and the caller audits it).
        """
        if not (purpose or "").strip():
            raise InvalidInputError("searching the footage archive needs a stated purpose", code="purpose_required")
        if limit < 1:
            raise InvalidInputError("limit must be at least 1", code="invalid_limit")
        threshold = self.threshold()
        with self._lock:
            index = self._index(self.model_id)
            size = len(index)
            if size == 0:
                return ArchiveSearch([], threshold, 0)
            similarities, ids = index.search(np.asarray(queries, np.float32), min(size, max(MIN_SEARCH_DEPTH, limit)))
        best: dict[int, float] = {}
        for value, sighting_id in zip(similarities.ravel(), ids.ravel(), strict=True):
            if sighting_id >= 0 and value >= threshold.value:
                best[int(sighting_id)] = max(float(value), best.get(int(sighting_id), -1.0))
        records = self.store.records(list(best))
        hits = [ArchiveHit(record, best[i]) for i, record in records.items()
                if (since is None or record.ended_at >= since) and (until is None or record.started_at <= until)]
        hits.sort(key=lambda h: (h.sighting.started_at, h.sighting.id), reverse=True)
        return ArchiveSearch(hits[:limit], threshold, size)

    def find(self, *, image: ImageSource | None = None, gallery_name: str | None = None,
             external_id: str | None = None, purpose: str | None, limit: int = 100, since: datetime | None = None,
             until: datetime | None = None) -> ArchiveSearch:
        """Sightings of the face in a photo, or of an enrolled person (``gallery_name`` and ``external_id``)."""
        if image is not None and external_id is None:
            return self.search_image(image, purpose=purpose, limit=limit, since=since, until=until)
        if image is None and gallery_name is not None and external_id is not None:
            return self.search_person(gallery_name, external_id, purpose=purpose, limit=limit, since=since,
                                      until=until)
        raise InvalidInputError("search by a photo, or by a gallery and a person's external id", code="invalid_query")

    def search_image(self, image: ImageSource, *, purpose: str | None, limit: int = 100,
                     since: datetime | None = None, until: datetime | None = None) -> ArchiveSearch:
        """Sightings of the largest face in ``image``."""
        faces = self.gallery.analyzer.analyze(image, faces="largest")
        if len(faces) == 0 or faces.embeddings is None:
            raise NoFaceError("no face found in the image")
        return self.search(faces.embeddings[:1], purpose=purpose, limit=limit, since=since, until=until)

    def search_person(self, gallery_name: str, external_id: str, *, purpose: str | None, limit: int = 100,
                      since: datetime | None = None, until: datetime | None = None) -> ArchiveSearch:
        """Sightings of an enrolled person, by their templates (also sightings made before they were enrolled)."""
        gallery = self.gallery.get(gallery_name)
        if gallery.model.id != self.model_id:
            raise ConflictError(f"gallery '{gallery_name}' holds templates of model {gallery.model.id}; the archive "
                                f"is searched with {self.model_id}", code="model_mismatch")
        person = self.gallery.person(gallery_name, external_id)
        vectors = self.gallery.store.person_vectors(gallery, person.id)
        queries = np.stack([unit_vector(gallery, v) for v in vectors])
        return self.search(queries, purpose=purpose, limit=limit, since=since, until=until)
