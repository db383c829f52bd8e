"""Request and response bodies of the video routes: stream jobs, sightings, archive search, alerts."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from visage.gallery.sightings_store import AlertRecord, SightingRecord, UnknownRecord
from visage.video.watch import WatchStatus


class StreamIn(BaseModel):
    url: str = Field(min_length=3, max_length=2000, description="rtsp://, http(s):// (or a path the server reads).")
    galleries: list[str] = Field(default_factory=list, max_length=20,
                                 description="Name sightings from these galleries; watchlists raise alerts.")
    purpose: str | None = Field(None, max_length=1000, description="Why the stream is watched (required with a "
                                                                   "watchlist; audited).")
    webhooks: list[str] = Field(default_factory=list, max_length=10, description="POST each alert here, signed "
                                                                                 "with the server's webhook secret.")
    transport: Literal["udp", "tcp"] | None = Field(None, description="RTSP transport (default: FFmpeg's choice).")


class StreamOut(BaseModel):
    id: int
    source: str
    galleries: list[str]
    purpose: str | None
    state: str = Field(description="running, finished (the source ended), stopped or failed.")
    error: str | None
    started_at: datetime
    ended_at: datetime | None
    frames: int
    analysed: int
    dropped: int = Field(description="Frames skipped to keep up with the stream.")
    corrupt: int
    sightings: int
    alerts: int
    reconnects: int
    gaps: int

    @classmethod
    def of(cls, status: WatchStatus) -> StreamOut:
        return cls.model_validate(status, from_attributes=True)


class SightingOut(BaseModel):
    id: int
    source: str
    track_id: int
    start_seconds: float
    end_seconds: float
    started_at: datetime
    ended_at: datetime
    frames: int
    best_quality: float
    gallery: str | None
    external_id: str | None = Field(description="The enrolled person it matched, if any.")
    display_name: str | None
    similarity: float | None
    unknown: str | None = Field(description="Pseudonym of a face nobody enrolled (reused when it comes back).")
    has_thumbnail: bool

    @classmethod
    def of(cls, record: SightingRecord) -> SightingOut:
        return cls.model_validate(record, from_attributes=True)


class SightingHitOut(SightingOut):
    match_similarity: float = Field(description="Similarity of the searched face to this sighting.")


class SightingSearchOut(BaseModel):
    hits: list[SightingHitOut] = Field(description="Newest first.")
    threshold: float
    operating_point: str
    searched: int = Field(description="Sightings in the archive that were compared.")


class UnknownOut(BaseModel):
    unknown: str
    sightings: int
    first_seen: datetime
    last_seen: datetime

    @classmethod
    def of(cls, u: UnknownRecord) -> UnknownOut:
        return cls(unknown=u.label, sightings=u.sightings, first_seen=u.first_seen, last_seen=u.last_seen)


class AlertOut(BaseModel):
    id: int
    source: str
    track_id: int
    gallery: str
    external_id: str
    display_name: str | None
    similarity: float
    threshold: float
    stream_seconds: float
    raised_at: datetime

    @classmethod
    def of(cls, alert: AlertRecord) -> AlertOut:
        return cls.model_validate(alert, from_attributes=True)
