"""Request bodies: content types and reading uploaded images (their size is limited by ``BodyLimit``)."""

from __future__ import annotations

from fastapi import Request, UploadFile

from visage.api.errors import ApiError


async def expect_multipart(request: Request) -> None:
    if not request.headers.get("content-type", "").lower().startswith("multipart/form-data"):
        raise ApiError(415, "unsupported_media_type", "send images as multipart/form-data")


async def expect_form(request: Request) -> None:
    """A form that may or may not carry a photo: multipart, or URL-encoded when it has none."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind not in ("multipart/form-data", "application/x-www-form-urlencoded"):
        raise ApiError(415, "unsupported_media_type", "send a form (multipart/form-data with a photo)")


async def expect_json(request: Request) -> None:
    if request.headers.get("content-type", "").split(";")[0].strip().lower() != "application/json":
        raise ApiError(415, "unsupported_media_type", "send a JSON body (Content-Type: application/json)")


def read_uploads(files: list[UploadFile]) -> tuple[list[str], list[bytes]]:
    """File names (kept as data, never used as paths) and contents."""
    labels = [file.filename or f"image {i + 1}" for i, file in enumerate(files)]
    return labels, [file.file.read() for file in files]
