"""Data key providers: a keyring file (default), the environment, or a plugged-in KMS.

**Keyring file** (``privacy.data_key_file``, default ``data_dir/keys/data-keys.json``, mode 600,
created on first use): JSON ``{"current": id, "keys": {id: hex}}``. A rotation adds a key and
makes it current, and once every record is re-sealed, retires the others. Each process re-reads
the file when it changes (checked at most every :data:`RELOAD_SECONDS`, and at once when a
record names a key it does not know), so a running server follows a rotation made by the CLI.

**Environment** (``VISAGE_DATA_KEYS``): comma-separated hex keys, the first one current. To
rotate, put a new key first, restart, run ``visage keys rotate-data-key``, then drop the old
keys it names.

**Plug-in** (``privacy.key_provider = "package.module:factory"``): ``factory(settings)`` returns
any object with the :class:`~visage.privacy.crypto.KeyProvider` methods, e.g. one that unwraps
data keys with a cloud KMS.
"""

from __future__ import annotations

import importlib
import json
import os
import secrets
import threading
import time
from pathlib import Path
from typing import Any

from visage.config import Settings
from visage.errors import InvalidInputError, StoreError
from visage.privacy.crypto import KEY_BYTES, KeyProvider, checked_key, data_key_id
from visage.privacy.key_files import create_private_file, replace_private_file

DATA_KEYS_ENVIRONMENT = "VISAGE_DATA_KEYS"
RELOAD_SECONDS = 1.0


def _unknown(key_id: str, where: str) -> StoreError:
    return StoreError(f"data key {key_id} is not in {where}: the records sealed under it cannot be read",
                      code="key_unavailable")


class EnvironmentKeys:
    """Keys from ``VISAGE_DATA_KEYS`` (fixed for the life of the process)."""

    def __init__(self, text: str) -> None:
        keys = []
        for position, part in enumerate(p.strip() for p in text.split(",") if p.strip()):
            try:
                key = bytes.fromhex(part)
            except ValueError:
                raise InvalidInputError(f"{DATA_KEYS_ENVIRONMENT}: key {position + 1} is not hex",
                                        code="invalid_key") from None
            keys.append(checked_key(key, f"{DATA_KEYS_ENVIRONMENT} key {position + 1}"))
        if not keys:
            raise InvalidInputError(f"{DATA_KEYS_ENVIRONMENT} is set but holds no key", code="invalid_key")
        self._keys = {data_key_id(k): k for k in keys}
        self._current = data_key_id(keys[0])

    def current(self) -> tuple[str, bytes]:
        return self._current, self._keys[self._current]

    def key(self, key_id: str) -> bytes:
        if key_id not in self._keys:
            raise _unknown(key_id, DATA_KEYS_ENVIRONMENT)
        return self._keys[key_id]

    def key_ids(self) -> list[str]:
        return list(self._keys)


class KeyringFile:
    """Keys in a JSON keyring file, created on first use, followed when another process changes it."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._stamp: tuple[int, int] | None = None
        self._checked_at = 0.0
        self._current = ""
        self._keys: dict[str, bytes] = {}
        try:
            if not self.path.exists():
                key = secrets.token_bytes(KEY_BYTES)
                create_private_file(self.path, _keyring_text(data_key_id(key), {data_key_id(key): key}))
        except OSError as exc:
            raise StoreError(f"cannot create the data keyring {self.path}: {exc.strerror}",
                             code="key_file_unreadable") from None
        self._reload(force=True)

    def _reload(self, *, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._checked_at < RELOAD_SECONDS:
            return
        with self._lock:
            self._checked_at = now
            try:
                status = os.stat(self.path)
                stamp = (status.st_mtime_ns, status.st_ino)
                if stamp == self._stamp:
                    return
                document = json.loads(self.path.read_text(encoding="utf-8"))
            except OSError as exc:
                raise StoreError(f"cannot read the data keyring {self.path}: {exc.strerror}",
                                 code="key_file_unreadable") from None
            except ValueError:
                raise InvalidInputError(f"the data keyring {self.path} is not JSON", code="invalid_key") from None
            self._current, self._keys = _parse_keyring(document, str(self.path))
            self._stamp = stamp

    def current(self) -> tuple[str, bytes]:
        self._reload()
        return self._current, self._keys[self._current]

    def key(self, key_id: str) -> bytes:
        self._reload()
        if key_id not in self._keys:
            self._reload(force=True)  # a rotation elsewhere may have just added it
            if key_id not in self._keys:
                raise _unknown(key_id, str(self.path))
        return self._keys[key_id]

    def key_ids(self) -> list[str]:
        self._reload(force=True)
        return list(self._keys)

    def add_key(self) -> str:
        """A new random key, made current (the old ones stay to open existing records); returns its id."""
        self._reload(force=True)
        key = secrets.token_bytes(KEY_BYTES)
        keys = {data_key_id(key): key, **self._keys}
        replace_private_file(self.path, _keyring_text(data_key_id(key), keys))
        self._reload(force=True)
        return data_key_id(key)

    def retire_all_but_current(self) -> list[str]:
        """Drop every key but the current one (call once no record uses them); returns the dropped ids."""
        self._reload(force=True)
        dropped = [k for k in self._keys if k != self._current]
        if dropped:
            replace_private_file(self.path, _keyring_text(self._current, {self._current: self._keys[self._current]}))
            self._reload(force=True)
        return dropped


def _keyring_text(current: str, keys: dict[str, bytes]) -> str:
    return json.dumps({"current": current, "keys": {k: v.hex() for k, v in keys.items()}}, indent=2) + "\n"


def _parse_keyring(document: Any, source: str) -> tuple[str, dict[str, bytes]]:
    try:
        keys = {}
        for key_id, text in document["keys"].items():
            key = checked_key(bytes.fromhex(text), f"{source} key {key_id}")
            if data_key_id(key) != key_id:
                raise InvalidInputError(f"{source}: key {key_id} does not match its id", code="invalid_key")
            keys[key_id] = key
        current = document["current"]
    except (KeyError, TypeError, AttributeError, ValueError):
        raise InvalidInputError(f"{source} is not a Visage data keyring", code="invalid_key") from None
    if current not in keys:
        raise InvalidInputError(f"{source}: the current key {current} is not in the keyring", code="invalid_key")
    return current, keys


def open_key_provider(settings: Settings) -> KeyProvider:
    """The configured provider: a plug-in, else ``VISAGE_DATA_KEYS``, else the keyring file."""
    plugin = settings.privacy.key_provider
    if plugin:
        module_name, _, factory_name = plugin.partition(":")
        try:
            factory = getattr(importlib.import_module(module_name), factory_name)
        except (ImportError, AttributeError, ValueError) as exc:
            raise InvalidInputError(f"privacy.key_provider {plugin!r} cannot be loaded: {exc}",
                                    code="invalid_key_provider") from None
        provider: KeyProvider = factory(settings)
        return provider
    text = os.environ.get(DATA_KEYS_ENVIRONMENT)
    if text is not None:
        return EnvironmentKeys(text)
    return KeyringFile(settings.privacy.data_key_file or settings.data_dir / "keys" / "data-keys.json")
