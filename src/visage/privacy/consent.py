"""Consent and legal basis: nobody is enrolled without a recorded reason to hold their face.

A gallery either declares one legal basis for everyone in it, with a written justification
(e.g. a watchlist under a public task), or each person enrolled needs a consent record: the
basis, a reference to the evidence (a signed form's number, a contract id), who recorded it,
when, and optionally when it expires. Records are kept (renewals add one; a withdrawal is
dated), so the history stays answerable until the person is erased.

A person whose consent expired or was withdrawn stops matching at once: the search path reads
``persons.matchable_until`` (epoch seconds, copied from the newest record), one column beside
what it already reads. Retention then purges them (``visage retention run``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import DateTime, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from visage.db import Base, as_utc, utcnow
from visage.errors import InvalidInputError

# GDPR art. 6(1) a-f; art. 9 adds its own conditions for biometric data, which the justification names.
LEGAL_BASES = ("consent", "contract", "legal_obligation", "vital_interest", "public_task", "legitimate_interest")
MAX_EVIDENCE = 1000
MAX_JUSTIFICATION = 4000


class ConsentRow(Base):
    __tablename__ = "consents"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("persons.id", ondelete="CASCADE"), index=True)
    basis: Mapped[str] = mapped_column(String(32))
    evidence: Mapped[str] = mapped_column(String(MAX_EVIDENCE))
    recorded_by: Mapped[str] = mapped_column(String(200))
    recorded_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    withdrawn_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    withdrawn_by: Mapped[str | None] = mapped_column(String(200), nullable=True)


@dataclass(frozen=True)
class Consent:
    """A consent record to store: ``basis`` one of :data:`LEGAL_BASES`; ``evidence`` where the proof is."""

    basis: str
    evidence: str
    recorded_by: str
    expires_at: datetime | None = None

    def checked(self, now: datetime | None = None) -> Consent:
        """This record with its expiry in UTC, or a clear error naming what is wrong."""
        check_basis(self.basis)
        if not self.evidence.strip():
            raise InvalidInputError("a consent record needs its evidence (e.g. the signed form's reference)",
                                    code="consent_evidence_missing")
        if len(self.evidence) > MAX_EVIDENCE:
            raise InvalidInputError(f"consent evidence is limited to {MAX_EVIDENCE} characters",
                                    code="consent_evidence_too_long")
        expires = None if self.expires_at is None else as_utc(self.expires_at)
        if expires is not None and expires <= (now or datetime.now(UTC)):
            raise InvalidInputError(f"the consent's expiry {expires.isoformat()} is already past",
                                    code="consent_expired")
        return Consent(self.basis, self.evidence.strip(), self.recorded_by, expires)


@dataclass(frozen=True)
class ConsentRecord:
    """A stored consent record; ``active`` when neither expired nor withdrawn."""

    basis: str
    evidence: str
    recorded_by: str
    recorded_at: datetime
    expires_at: datetime | None
    withdrawn_at: datetime | None
    withdrawn_by: str | None

    def active(self, now: datetime | None = None) -> bool:
        moment = now or datetime.now(UTC)
        return self.withdrawn_at is None and (self.expires_at is None or self.expires_at > moment)

    @property
    def ends_at(self) -> datetime | None:
        """When matching stops: the withdrawal, else the expiry."""
        return self.withdrawn_at or self.expires_at

    @classmethod
    def of(cls, row: ConsentRow) -> ConsentRecord:
        return cls(row.basis, row.evidence, row.recorded_by, as_utc(row.recorded_at),
                   None if row.expires_at is None else as_utc(row.expires_at),
                   None if row.withdrawn_at is None else as_utc(row.withdrawn_at), row.withdrawn_by)


def require_active(gallery: str, external_id: str, current: ConsentRecord | None) -> None:
    """Enrolling in a gallery without a legal basis for everyone needs the person's active consent."""
    if current is None:
        raise InvalidInputError(
            f"gallery '{gallery}' has no gallery-wide legal basis: enrolling '{external_id}' needs a consent record "
            "(basis, evidence, optional expiry)", code="consent_required")
    if not current.active():
        ended = current.ends_at.isoformat() if current.ends_at else "?"
        raise InvalidInputError(f"the consent of '{external_id}' ended on {ended}: record a new one to enrol more "
                                "templates", code="consent_expired")


def check_basis(basis: str) -> None:
    if basis not in LEGAL_BASES:
        raise InvalidInputError(f"unknown legal basis {basis!r}; one of {', '.join(LEGAL_BASES)}",
                                code="invalid_legal_basis")


def check_gallery_basis(basis: str | None, justification: str | None) -> tuple[str | None, str | None]:
    """A gallery-wide basis needs a written justification; without a basis, none is stored."""
    if basis is None:
        if justification:
            raise InvalidInputError("a justification was given without a gallery-wide legal basis",
                                    code="invalid_legal_basis")
        return None, None
    check_basis(basis)
    text = (justification or "").strip()
    if not text:
        raise InvalidInputError(f"a gallery-wide legal basis ({basis}) needs a written justification: why every "
                                "face in it may be held without each person's own consent record",
                                code="justification_required")
    if len(text) > MAX_JUSTIFICATION:
        raise InvalidInputError(f"the justification is limited to {MAX_JUSTIFICATION} characters",
                                code="justification_too_long")
    return basis, text


def epoch(moment: datetime | None) -> int | None:
    return None if moment is None else int(as_utc(moment).timestamp())
