"""Every failure becomes JSON ``{code, message}`` with the HTTP status that fits it."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from visage.errors import (
    ConfigError,
    ConflictError,
    EmbeddingError,
    ImageError,
    InvalidInputError,
    ModelError,
    NoFaceError,
    NotFoundError,
    StoreError,
    VisageError,
)

_IMAGE_STATUS = {"unsupported_format": 415, "image_too_large": 413, "file_too_large": 413}
_STORE_INPUT_CODES = {"invalid_name", "invalid_external_id", "invalid_embedding"}


class ApiError(Exception):
    """An error raised by the API layer itself (auth, limits), with its status."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None,
                 extra: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.headers = headers or {}
        self.extra = extra or {}


def status_of(error: VisageError) -> int:
    if isinstance(error, NotFoundError):
        return 404
    if isinstance(error, ConflictError):
        return 409
    if isinstance(error, ImageError):
        return _IMAGE_STATUS.get(error.code, 422)
    if isinstance(error, (EmbeddingError, InvalidInputError, NoFaceError, ConfigError)):
        return 422
    if isinstance(error, StoreError):
        return 422 if error.code in _STORE_INPUT_CODES else 503
    if isinstance(error, ModelError):
        return 503
    return 400


def error_response(status: int, code: str, message: str, headers: dict[str, str] | None = None,
                   extra: dict[str, Any] | None = None) -> JSONResponse:
    return JSONResponse({"code": code, "message": message, **(extra or {})}, status_code=status, headers=headers)


_HTTP_CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
               405: "method_not_allowed", 413: "payload_too_large", 415: "unsupported_media_type"}


def install(app: FastAPI) -> None:
    @app.exception_handler(VisageError)
    async def visage_error(_: Request, exc: VisageError) -> JSONResponse:
        return error_response(status_of(exc), exc.code, exc.message)

    @app.exception_handler(ApiError)
    async def api_error(_: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.code, exc.message, exc.headers, exc.extra)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        problems = []
        for error in exc.errors()[:5]:
            where = ".".join(str(part) for part in error.get("loc", ()) if part != "body")
            problems.append(f"{where or 'body'}: {error.get('msg', 'invalid')}")
        return error_response(422, "invalid_request", "; ".join(problems) or "the request is invalid")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _HTTP_CODES.get(exc.status_code, "http_error")
        return error_response(exc.status_code, code, str(exc.detail), dict(exc.headers or {}))
