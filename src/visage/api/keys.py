"""API keys: shown once at creation, stored only as a SHA-256 of the secret, each with scopes.

A key reads ``vsg_<prefix>_<secret>``: the prefix (public, also shown in lists and the audit
log) finds the row, the secret (256 random bits) is compared by hash in constant time. A
fast hash is enough for secrets of that strength; a slow one would only slow every request.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, get_args

from sqlalchemy import JSON, DateTime, Integer, String, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, mapped_column

from visage.db import Base, Database, as_utc, utcnow
from visage.errors import ConflictError, InvalidInputError, NotFoundError

Scope = Literal["read", "enroll", "identify", "admin"]
SCOPES: tuple[str, ...] = get_args(Scope)
KEY_PREFIX = "vsg_"
KEY_CACHE_SECONDS = 2.0


class ApiKeyRow(Base):
    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    prefix: Mapped[str] = mapped_column(String(32), unique=True)
    secret_sha256: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(200))
    scopes: Mapped[list[str]] = mapped_column(JSON)
    gallery: Mapped[str | None] = mapped_column(String(200), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


@dataclass(frozen=True)
class ApiKey:
    """A key as stored: never its secret."""

    id: int
    prefix: str
    name: str
    scopes: tuple[str, ...]
    gallery: str | None
    created_at: datetime
    revoked_at: datetime | None

    @property
    def label(self) -> str:
        """How the key appears in the audit log."""
        return f"key:{self.prefix}"

    def allows(self, scope: str, gallery: str | None = None) -> bool:
        """``admin`` grants every scope; a gallery-restricted key only reaches its gallery."""
        if scope not in self.scopes and "admin" not in self.scopes:
            return False
        return self.gallery is None or gallery is None or gallery == self.gallery


def _record(row: ApiKeyRow) -> ApiKey:
    return ApiKey(row.id, row.prefix, row.name, tuple(row.scopes), row.gallery, as_utc(row.created_at),
                  as_utc(row.revoked_at) if row.revoked_at else None)


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class _Cached:
    key: ApiKey
    secret_sha256: str
    expires: float


class ApiKeys:
    """Create, check, list and revoke keys.

    Checked keys are cached for ``KEY_CACHE_SECONDS`` so that a request costs no SQL query for
    its key; a revocation takes effect at once in the process that made it and within that
    time in other server workers.
    """

    def __init__(self, database: Database) -> None:
        self.db = database
        self._cache: dict[str, _Cached] = {}

    def create(self, name: str, scopes: list[str] | tuple[str, ...], *,
               gallery: str | None = None) -> tuple[ApiKey, str]:
        """A new key and its full text, which is never available again."""
        unknown = sorted(set(scopes) - set(SCOPES))
        if unknown or not scopes:
            raise InvalidInputError(f"scopes must be some of {', '.join(SCOPES)}; got {', '.join(unknown) or 'none'}",
                            code="invalid_scope")
        if not name.strip():
            raise InvalidInputError("a key needs a name", code="invalid_name")
        for _ in range(5):
            prefix, secret = secrets.token_hex(6), secrets.token_urlsafe(32)
            try:
                with self.db.write() as session:
                    row = ApiKeyRow(prefix=prefix, secret_sha256=_digest(secret), name=name.strip(),
                                    scopes=sorted(set(scopes)), gallery=gallery, created_at=utcnow())
                    session.add(row)
                    session.flush()
                    return _record(row), f"{KEY_PREFIX}{prefix}_{secret}"
            except IntegrityError:  # a prefix collision (2^-48): draw again
                continue
        raise ConflictError("could not draw a unique key prefix", code="key_collision")

    def authenticate(self, text: str) -> ApiKey | None:
        """The live key ``text`` names, or None (unknown, malformed, wrong secret or revoked)."""
        if not text.startswith(KEY_PREFIX) or text.count("_") < 2:
            return None
        prefix, _, secret = text[len(KEY_PREFIX):].partition("_")
        now = time.monotonic()
        cached = self._cache.get(prefix)
        if cached is None or cached.expires < now:
            with self.db.read() as session:
                row = session.scalar(select(ApiKeyRow).where(ApiKeyRow.prefix == prefix))
            if row is None:
                return None
            cached = _Cached(_record(row), row.secret_sha256, now + KEY_CACHE_SECONDS)
            self._cache[prefix] = cached
        if cached.key.revoked_at is not None or not hmac.compare_digest(cached.secret_sha256, _digest(secret)):
            return None
        return cached.key

    def list(self, *, include_revoked: bool = False) -> list[ApiKey]:
        with self.db.read() as session:
            query = select(ApiKeyRow).order_by(ApiKeyRow.id)
            if not include_revoked:
                query = query.where(ApiKeyRow.revoked_at.is_(None))
            return [_record(r) for r in session.scalars(query)]

    def count(self) -> int:
        return len(self.list(include_revoked=True))

    def revoke(self, prefix: str) -> ApiKey:
        with self.db.write() as session:
            row = session.scalar(select(ApiKeyRow).where(ApiKeyRow.prefix == prefix.removeprefix(KEY_PREFIX)))
            if row is None:
                raise NotFoundError(f"no API key with prefix '{prefix}'", code="key_not_found")
            if row.revoked_at is None:
                row.revoked_at = utcnow()
            session.flush()
            self._cache.pop(row.prefix, None)
            return _record(row)
