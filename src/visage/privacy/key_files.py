"""Secret files (the audit signing key, the data keyring): owner-only, never seen half-written.

A new file is written beside its final name and linked into place, so that when two processes
start at once the first link wins and both use that secret. A changed file (a keyring after a
rotation) is written beside its name and renamed over it, so a reader sees the old or the new
contents, never a mix.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path


def _write_private(path: Path, text: str) -> Path:
    """``text`` in a new owner-only file beside ``path``; returns that file's name."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return temporary


def create_private_file(path: Path, text: str) -> None:
    """Create ``path`` holding ``text`` unless it exists already (then the existing one is kept)."""
    temporary = _write_private(path, text)
    try:
        with contextlib.suppress(FileExistsError):  # another process made it first: use theirs
            os.link(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def replace_private_file(path: Path, text: str) -> None:
    """Replace ``path``'s contents with ``text`` in one step."""
    os.replace(_write_private(path, text), path)
