"""Data key rotation: re-seal every stored embedding under a new key, online and resumably.

``rotate_data_key`` makes a new key current (keyring file: added to it; other providers: the
operator has put the new key first), then re-seals templates, face chips and the video
archive's sightings in small committed batches (:meth:`SqlStore.reseal`,
:meth:`SightingStore.reseal`). Vectors do not change, so no gallery revision moves and every
index stays current: identification and verification go on throughout (a verification reads
either key, both are in the keyring). Gallery index files are then re-saved under the new key
(the sighting archive's index is rebuilt from SQL once it no longer opens), the replaced
bytes are pushed out of the database files (:meth:`Database.purge_freed_data`), and once no
record uses the old keys they are retired from the keyring file: whatever copy of an old
ciphertext survives elsewhere (a backup, a PostgreSQL WAL segment) can no longer be opened.

A rotation stopped midway (Ctrl-C, a crash) leaves records under both keys; the next run sees
that and resumes with the same current key instead of adding another.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from visage.gallery.api import Gallery
from visage.gallery.sightings_store import SightingStore
from visage.privacy.data_keys import KeyringFile

MIN_SQLITE_GAP_S = 0.05


@dataclass(frozen=True)
class KeyRotation:
    """What a rotation did: ``key_id`` is current now; ``retired`` lists keys dropped from the keyring;
    ``remaining_keys`` the other keys still configured; ``behind`` counts records still sealed under them
    (written by a process that had not yet seen the new key: run the rotation again)."""

    key_id: str
    new_key: bool
    resealed: int
    indexes_resaved: int
    retired: list[str]
    remaining_keys: list[str]
    behind: int
    seconds: float


def rotate_data_key(gallery: Gallery, *, progress: Callable[[int, int], None] | None = None) -> KeyRotation:
    """Re-seal every record under a current key; ``progress(done, total)`` follows the re-sealing."""
    started = time.perf_counter()
    store = gallery.store
    sealed_stores = (store, SightingStore(store.db, store.cipher))  # templates and chips; the video archive

    def usage() -> dict[str | None, int]:
        counts: dict[str | None, int] = {}
        for sealed in sealed_stores:
            for key_id, count in sealed.key_usage().items():
                counts[key_id] = counts.get(key_id, 0) + count
        return counts

    provider = store.cipher.provider
    current = store.cipher.current_key_id
    behind = sum(count for key_id, count in usage().items() if key_id != current)
    new_key = False
    if behind == 0 and isinstance(provider, KeyringFile):  # nothing to resume: a rotation proper
        current = provider.add_key()
        behind = sum(usage().values())
        new_key = True
    resealed = 0
    while True:
        batch_started = time.perf_counter()
        count = store.reseal() or sealed_stores[1].reseal()
        if not count:
            break
        resealed += count
        store.db.checkpoint()
        if store.db.is_sqlite:
            # SQLite's waiting writers poll with growing sleeps (up to 100 ms): a rotation that takes the write
            # lock again at once starves them (the service's audit appends stalled for over a second). Leaving
            # the lock free as long as it was held lets them in; PostgreSQL writers queue fairly and need no gap.
            time.sleep(max(MIN_SQLITE_GAP_S, time.perf_counter() - batch_started))
        if progress is not None:
            progress(resealed, max(behind, resealed))
    resaved = gallery.resave_indexes()
    if resealed:
        # The bytes under the old key leave the files.
        store.db.purge_freed_data(vacuum_tables=("templates", "chips", "sightings"))
    still_behind = sum(count for key_id, count in usage().items() if key_id != current)
    retired: list[str] = []
    if isinstance(provider, KeyringFile) and still_behind == 0:
        retired = provider.retire_all_but_current()
    remaining = [k for k in provider.key_ids() if k != current]
    return KeyRotation(current, new_key, resealed, resaved, retired, remaining, still_behind,
                       time.perf_counter() - started)
