"""Configuration: one pydantic ``Settings`` object, read from arguments or ``VISAGE_*`` env vars.

Nested sections use ``__`` in environment variables, e.g.
``VISAGE_DETECTION__MIN_FACE_SIZE=30``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class DetectionSettings(BaseModel):
    """How faces are found. See ``docs/architecture.md`` (Detection) for the resizing strategy."""

    model_config = {"extra": "forbid"}

    detector: Literal["centerface", "dlib_hog"] = "centerface"
    score_threshold: float = Field(0.5, ge=0.0, le=1.0, description="Minimum detector confidence.")
    min_face_size: float = Field(
        24.0, gt=0, description="Smallest face (box side, in original-image pixels) to report."
    )
    max_side: int = Field(
        1600,
        ge=64,
        le=8192,
        description="Longest image side fed to the detector in one pass; larger images are "
        "downscaled, unless that would shrink min_face_size below what the detector can see, "
        "in which case the image is tiled.",
    )
    nms_iou: float = Field(0.3, gt=0.0, lt=1.0)


class EmbeddingSettings(BaseModel):
    model_config = {"extra": "forbid"}

    embedder: Literal["dlib_resnet", "onnx"] = "dlib_resnet"
    runtime: Literal["onnxruntime", "dlib"] = Field(
        "onnxruntime",
        description="What runs dlib_resnet: its weights converted to ONNX (default, several times faster, "
        "same embeddings) or dlib itself (the reference).",
    )
    onnx_path: Path | None = Field(
        None, description="ArcFace-style ONNX file (112x112 RGB input) when embedder='onnx'."
    )
    onnx_name: str | None = Field(None, description="Name recorded for the ONNX model.")
    flip: bool = Field(
        True, description="Average the embedding of each chip and its mirror (test-time augmentation)."
    )
    views: Literal["single", "multi"] = Field(
        "multi",
        description="'multi' embeds several cuts of each face (for dlib: chips framed from the detector box and "
        "from the landmarks, each centred and shifted 3 % of the chip side four ways) and averages them: the most "
        "accurate setting (the default), ten times the embedding work of 'single'.",
    )
    batch_size: int = Field(32, ge=1, le=1024)
    dlib_box: Literal["detector", "landmarks"] = Field(
        "detector",
        description="Box given to dlib's 5-point predictor: the detector's own box (best LFW DevTrain accuracy), "
        "or a HOG-style box framed from the detector's landmarks (better TAR at FAR=1e-3 on DevTrain).",
    )

    @model_validator(mode="after")
    def _onnx_needs_a_file(self) -> EmbeddingSettings:
        if self.embedder == "onnx" and self.onnx_path is None:
            raise ValueError("embedder='onnx' needs onnx_path (the ArcFace-style .onnx file)")
        return self


class QualitySettings(BaseModel):
    """Limits beyond which a face is flagged; the score degrades smoothly before them."""

    model_config = {"extra": "forbid"}

    min_interocular: float = Field(
        20.0, gt=0, description="Eye-centre distance (pixels) below which the face is 'too_small'."
    )
    min_sharpness: float = Field(
        0.25, ge=0, description="Normalised high-frequency energy of the chip below which it is 'blurred'."
    )
    max_yaw: float = Field(0.45, gt=0, description="Yaw proxy (nose offset / eye distance).")
    max_pitch: float = Field(0.35, gt=0, description="Pitch proxy (deviation of nose height ratio).")
    min_brightness: float = Field(0.18, ge=0, le=1)
    max_brightness: float = Field(0.85, ge=0, le=1)


class GallerySettings(BaseModel):
    """Where enrolled people live and how they are matched."""

    model_config = {"extra": "forbid"}

    database_url: str | None = Field(
        None,
        description="SQLAlchemy URL of the system of record; default: a SQLite file in data_dir. "
        "Production: postgresql+psycopg://user:password@host/db.",
    )
    index: Literal["faiss", "milvus"] = Field(
        "faiss", description="Vector index: FAISS in-process (default) or Milvus (milvus-lite file or a cluster)."
    )
    hnsw_threshold: int = Field(
        20_000, ge=1, description="FAISS: exact search up to this many templates per gallery, HNSW above."
    )
    milvus_uri: str | None = Field(
        None, description="Milvus URI: a local .db file (milvus-lite; default data_dir/milvus.db) or http://host:19530."
    )
    operating_point: str = Field(
        "fmr=1e-3", description="Verification (1:1) decision: a false-match rate per comparison."
    )
    identify_operating_point: str = Field(
        "fpir=1e-2",
        description="Identification (1:N) decision: the rate at which a search by someone not enrolled returns a "
        "false match (fpir=R, turned into FMR = R / people in the gallery), or a per-comparison fmr=R.",
    )
    scoring: Literal["max", "mean_best2"] = Field(
        "mean_best2",
        description="Person score from its templates' similarities: the best one, or the mean of the best two "
        "(measured better on LFW View 1 DevTrain by benchmarks/bench_identify.py).",
    )
    min_quality: float = Field(
        0.3, ge=0, le=1,
        description="Enrolment gate on the face quality score (benchmarks/bench_quality.py: faces below it fail "
        "verification about ten times as often on LFW View 1).",
    )
    top_k: int = Field(5, ge=1, le=1000, description="Candidates returned per face by identify.")


class ServiceSettings(BaseModel):
    """The REST service and console (``visage serve``)."""

    model_config = {"extra": "forbid"}

    host: str = Field("127.0.0.1", description="Address to listen on; loopback unless you put it behind a proxy.")
    port: int = Field(8000, ge=1, le=65535)
    workers: int = Field(1, ge=1, le=64, description="Server processes; each loads the models and its index copy.")
    threads: int = Field(
        2, ge=1, le=256, description="Threads per server process for blocking work (face analysis, SQL, search). "
        "Few threads keep hand-offs of Python's interpreter lock cheap: at 16 clients, 2 threads per process "
        "gave p99 46-50 ms where 4 gave 73 ms (bench_service.py); the models use every core anyway.",
    )
    max_upload_bytes: int = Field(20 * 1024 * 1024, gt=0, description="Largest request body (413 above it).")
    max_pixels: int = Field(40_000_000, gt=0, description="Largest uploaded image in pixels (413 above it).")
    rate_limit_per_minute: int = Field(600, ge=1, description="Requests per minute per API key (429 above it).")
    request_timeout_s: float = Field(60.0, gt=0, description="A request still running after this gets 504.")
    max_page_size: int = Field(500, ge=1, description="Largest ``limit`` a list request may ask for.")


class PrivacySettings(BaseModel):
    """Safeguards: stated purposes, the audit log's signed checkpoints, the keys that encrypt data at rest."""

    model_config = {"extra": "forbid"}

    audit_key_file: Path | None = Field(
        None, description="HMAC key that signs audit checkpoints (hex); default data_dir/keys/audit-hmac.key, "
        "created on first use. VISAGE_AUDIT_HMAC_KEY (hex) overrides it. Keep it outside the database's backups.",
    )
    data_key_file: Path | None = Field(
        None, description="Keyring of the AES-256 keys that encrypt embeddings and face chips at rest; default "
        "data_dir/keys/data-keys.json, created on first use. VISAGE_DATA_KEYS (comma-separated hex, the first "
        "current) overrides it. Keep it off the database's host or backups in production.",
    )
    key_provider: str | None = Field(
        None, description="'package.module:factory' returning a key provider (e.g. a KMS client) instead of the "
        "keyring file; called with the settings.",
    )
    require_purpose: bool = Field(
        False, description="Every identification must state its purpose (watchlist galleries always require one).",
    )
    retention_interval_minutes: float = Field(
        60.0, ge=0, description="How often `visage serve` applies the retention rules (erase people whose consent "
        "ended, purge templates older than their gallery's retention); 0: only `visage retention run` does.",
    )
    audit_checkpoint_every: int = Field(
        1000, ge=1, description="Sign a checkpoint every this many audit entries (entries after the last one "
        "could be cut off undetected).",
    )


class VideoSettings(BaseModel):
    """Footage and streams: how often to detect, when a track ends, how long sightings are kept, alerts."""

    model_config = {"extra": "forbid"}

    detect_every: int = Field(
        3, ge=1, le=30, description="Detect faces on every N-th frame of a file; the tracker carries them between. "
        "Live streams detect on the newest frame whenever the previous detection is done (frames are dropped, never "
        "queued).",
    )
    live_max_fps: float = Field(
        10.0, gt=0, description="At most this many detections per second on a live stream (spare CPU stays free).",
    )
    frame_max_side: int = Field(
        1280, ge=160, le=8192, description="Frames with a longer side are scaled down while decoding (1080p footage "
        "is tracked at 1280x720); faces in them are still cut from that frame.",
    )
    min_face_px: float = Field(
        30.0, gt=0, description="Smallest face (box side, frame pixels) followed: detection runs on frames shrunk "
        "as far as still finds such faces (smaller faces are rarely recognisable from footage anyway).",
    )
    detect_max_side: int = Field(
        800, ge=160, le=8192, description="Detection sees frames at most this long (1280x720 frames are detected at "
        "800x450); the best shots are still cut from the full frame.",
    )
    max_gap_s: float = Field(1.0, gt=0, description="A track not seen for this long (stream time) ends.")
    min_frames: int = Field(2, ge=1, description="Tracks detected on fewer frames are dropped as false detections.")
    match_operating_point: str | None = Field(
        None, description="Decides archive search hits and whether an unknown face is one seen before (1:1, fmr=R); "
        "default: gallery.operating_point.",
    )
    keep_thumbnails: bool = Field(
        False, description="Keep each sighting's best face as a sealed thumbnail (off: only its embedding is kept).",
    )
    unknown_retention_hours: float = Field(
        72.0, gt=0, description="Sightings that matched nobody enrolled are deleted after this long.",
    )
    matched_retention_days: float = Field(
        30.0, gt=0, description="Sightings and alerts of enrolled people are deleted after this long.",
    )
    reconnect_max_s: float = Field(
        10.0, gt=0, description="Longest wait between reconnection attempts of a dropped stream (backoff doubles).",
    )
    webhook_secret: str | None = Field(
        None, description="Key of the HMAC-SHA256 signature on webhook deliveries (X-Visage-Signature). Required "
        "to send webhooks; VISAGE_VIDEO__WEBHOOK_SECRET sets it.",
    )
    webhook_attempts: int = Field(6, ge=1, le=20, description="Delivery attempts per alert and webhook.")
    webhook_timeout_s: float = Field(5.0, gt=0, description="Time a webhook receiver has to answer.")


class Settings(BaseSettings):
    """Everything a ``FaceAnalyzer`` (and later the gallery and service) needs."""

    model_config = SettingsConfigDict(env_prefix="VISAGE_", env_nested_delimiter="__", extra="forbid")

    data_dir: Path = Field(Path.home() / ".visage", description="Where Visage keeps its state.")
    max_pixels: int = Field(
        50_000_000, gt=0, description="Images with more pixels are refused (decompression bombs)."
    )
    max_file_bytes: int = Field(100 * 1024 * 1024, gt=0, description="Largest encoded image accepted.")
    threads: int = Field(0, ge=0, description="Inference threads per analyzer; 0 = all cores.")
    detection: DetectionSettings = DetectionSettings()
    embedding: EmbeddingSettings = EmbeddingSettings()
    quality: QualitySettings = QualitySettings()
    gallery: GallerySettings = GallerySettings()
    service: ServiceSettings = ServiceSettings()
    privacy: PrivacySettings = PrivacySettings()
    video: VideoSettings = VideoSettings()
    operating_point: str = Field(
        "accuracy", description="Named decision threshold from the model card used by verify()."
    )
