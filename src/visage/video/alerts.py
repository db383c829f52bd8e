"""Watchlist alerts: stored, audited, and delivered to webhooks with a signature the receiver can check.

An alert is raised once per track (see :class:`visage.video.watch.SightingRecorder`), stored in
SQL (where the service's live feed reads it, whichever process raised it) and posted as JSON
to every configured webhook by a background thread, so a slow or dead receiver never stalls
the video. Each attempt is written to the delivery log; a failed one (no answer, or not 2xx)
is retried with exponential backoff (0.5 s, 1 s, 2 s, … up to 60 s) up to
``video.webhook_attempts`` times.

Signature (the scheme of Stripe's and GitHub's webhooks): ``X-Visage-Timestamp`` holds the
Unix time of the attempt and ``X-Visage-Signature`` is ``sha256=`` + hex HMAC-SHA256 of
``"<timestamp>.<body>"`` under the shared ``video.webhook_secret``. A receiver recomputes it
(:func:`verify_signature`) and refuses old timestamps, so a captured delivery cannot be replayed.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import queue
import threading
import time
import urllib.error
import urllib.request
from typing import Any

from visage.errors import InvalidInputError
from visage.gallery.sightings_store import AlertRecord, SightingStore

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Visage-Signature"
TIMESTAMP_HEADER = "X-Visage-Timestamp"
REPLAY_TOLERANCE_S = 300
MAX_BACKOFF_S = 60.0


def alert_payload(alert: AlertRecord) -> dict[str, Any]:
    """The JSON body of an alert (also what the live feed sends)."""
    return {"type": "watchlist.match", "alert_id": alert.id, "source": alert.source, "track_id": alert.track_id,
            "gallery": alert.gallery, "external_id": alert.external_id, "display_name": alert.display_name,
            "similarity": round(alert.similarity, 4), "threshold": round(alert.threshold, 4),
            "stream_seconds": round(alert.stream_seconds, 3), "raised_at": alert.raised_at.isoformat()}


def sign(secret: str, timestamp: str, body: bytes) -> str:
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def verify_signature(secret: str, timestamp: str, body: bytes, signature: str, *,
                     tolerance_s: float = REPLAY_TOLERANCE_S, now: float | None = None) -> bool:
    """Whether a delivery is authentic and fresh: what a webhook receiver should check first."""
    try:
        age = abs((now if now is not None else time.time()) - float(timestamp))
    except ValueError:
        return False
    return age <= tolerance_s and hmac.compare_digest(sign(secret, timestamp, body), signature)


def check_webhooks(urls: list[str], secret: str | None) -> None:
    """Refuse webhooks that could not be delivered or verified, before any footage is read."""
    for url in urls:
        if not url.startswith(("http://", "https://")):
            raise InvalidInputError(f"webhook '{url}' is not an http(s) URL", code="invalid_webhook")
    if urls and not secret:
        raise InvalidInputError("webhooks are signed: set video.webhook_secret (VISAGE_VIDEO__WEBHOOK_SECRET) or "
                                "pass --webhook-secret", code="webhook_secret_missing")


class WebhookSender:
    """Posts alerts to webhooks from a background thread, with retries and a delivery log."""

    def __init__(self, store: SightingStore, urls: list[str], secret: str | None, *, attempts: int = 6,
                 timeout_s: float = 5.0, first_backoff_s: float = 0.5) -> None:
        check_webhooks(urls, secret)
        self.store = store
        self.urls = list(urls)
        self.secret = secret or ""
        self.attempts = attempts
        self.timeout_s = timeout_s
        self.first_backoff_s = first_backoff_s
        self._queue: queue.Queue[tuple[float, AlertRecord, str, int] | None] = queue.Queue()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="visage-webhooks", daemon=True)
        if self.urls:
            self._thread.start()

    def send(self, alert: AlertRecord) -> None:
        for url in self.urls:
            self._queue.put((0.0, alert, url, 1))

    def close(self, *, drain_s: float = 10.0) -> None:
        """Deliver what is due within ``drain_s`` seconds, then stop (retries still pending are logged as given up)."""
        if not self._thread.is_alive():
            return
        self._queue.put(None)
        self._thread.join(timeout=drain_s)
        self._stop.set()
        self._thread.join(timeout=self.timeout_s + 1)

    def _run(self) -> None:
        waiting: list[tuple[float, AlertRecord, str, int]] = []  # (due, alert, url, attempt)
        closing = False
        while not self._stop.is_set() and not (closing and not waiting):
            now = time.monotonic()
            due = min((w[0] for w in waiting), default=now + 1.0)
            try:
                item = self._queue.get(timeout=max(0.0, min(due - now, 1.0)))
                if item is None:
                    closing = True
                else:
                    waiting.append(item)
            except queue.Empty:
                pass
            now = time.monotonic()
            for entry in [w for w in waiting if w[0] <= now]:
                waiting.remove(entry)
                _, alert, url, attempt = entry
                if not self._deliver(alert, url, attempt) and attempt < self.attempts:
                    backoff = min(self.first_backoff_s * 2 ** (attempt - 1), MAX_BACKOFF_S)
                    waiting.append((time.monotonic() + backoff, alert, url, attempt + 1))
        for _, alert, url, attempt in waiting:
            log.warning("webhook %s: alert %d not delivered after %d attempt(s) (stopped)", url, alert.id, attempt - 1)

    def _deliver(self, alert: AlertRecord, url: str, attempt: int) -> bool:
        body = json.dumps(alert_payload(alert), separators=(",", ":")).encode()
        timestamp = str(int(time.time()))
        request = urllib.request.Request(url, data=body, method="POST", headers={
            "Content-Type": "application/json", "User-Agent": "visage-webhooks",
            "X-Visage-Event": "watchlist.match", "X-Visage-Delivery": f"{alert.id}-{attempt}",
            TIMESTAMP_HEADER: timestamp, SIGNATURE_HEADER: sign(self.secret, timestamp, body)})
        status: int | None = None
        error: str | None = None
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                status = int(response.status)
        except urllib.error.HTTPError as exc:
            status, error = exc.code, f"HTTP {exc.code}"
        except (urllib.error.URLError, OSError) as exc:
            error = str(getattr(exc, "reason", exc))
        delivered = status is not None and 200 <= status < 300
        try:
            self.store.record_delivery(alert.id, url, attempt, status=status, error=error, delivered=delivered)
        except Exception:  # the log failing must not stop deliveries
            log.exception("could not log the delivery of alert %d", alert.id)
        if not delivered:
            log.warning("webhook %s: alert %d attempt %d failed: %s", url, alert.id, attempt, error or status)
        return delivered
