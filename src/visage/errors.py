"""One exception hierarchy for the whole library.

Every error carries a stable machine-readable ``code`` (used by the CLI's exit
message today and by the REST service's ``{code, message}`` bodies later) and a
human message that names the problem and, where possible, the fix.
"""

from __future__ import annotations


class VisageError(Exception):
    """Base class: ``code`` is stable across releases, ``message`` is for people."""

    code = "visage_error"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code

    def __str__(self) -> str:
        return f"[{self.code}] {self.message}"


class ImageError(VisageError):
    """The input could not be turned into an RGB image (empty, corrupt, too big, ...)."""

    code = "invalid_image"


class ModelError(VisageError):
    """A model's weights are missing, corrupt or incompatible."""

    code = "model_unavailable"


class EmbeddingError(VisageError):
    """An embedding vector has the wrong size, is not finite, or comes from another model."""

    code = "invalid_embedding"


class ConfigError(VisageError):
    """A setting is invalid or names something that does not exist."""

    code = "invalid_config"


class DatasetError(VisageError):
    """An evaluation file (e.g. an LFW pairs list) is malformed or points at missing images."""

    code = "invalid_dataset"


class NoFaceError(VisageError):
    """An operation that needs a face (verify, enrol) got an image without one."""

    code = "no_face"


class StoreError(VisageError):
    """The database cannot be opened, or a value cannot be stored as given."""

    code = "store_error"


class NotFoundError(VisageError):
    """An unknown gallery, person or template."""

    code = "not_found"


class ConflictError(VisageError):
    """A name or external id that already exists, or a model that does not match the gallery's."""

    code = "conflict"


class InvalidInputError(VisageError):
    """A value given by the caller is invalid: a name, a scope, a page size, a filter."""

    code = "invalid_input"
