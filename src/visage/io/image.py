"""Image decoding with the checks a face engine needs before it trusts pixels.

Everything entering the library goes through :func:`load_image`, which returns
an ``HxWx3`` RGB ``uint8`` array or raises :class:`~visage.errors.ImageError`
with a stable code:

``file_not_found``, ``empty_file``, ``file_too_large``, ``unsupported_format``,
``truncated_image``, ``image_too_large`` (pixel limit: decompression bombs),
``invalid_array``.

EXIF orientation is applied (phones store portraits sideways), palette, CMYK,
grayscale, 16-bit and alpha images are converted, and only the first frame of
an animation is used.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from visage.errors import ImageError

ImageSource = str | Path | bytes | bytearray | memoryview | np.ndarray

DEFAULT_MAX_PIXELS = 50_000_000
DEFAULT_MAX_FILE_BYTES = 100 * 1024 * 1024


def load_image(
    source: ImageSource,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
) -> np.ndarray:
    """Decode ``source`` (path, encoded bytes or array) to an RGB ``uint8`` array of shape ``(H, W, 3)``."""
    if isinstance(source, np.ndarray):
        return _from_array(source, max_pixels)
    if isinstance(source, (str, Path)):
        data = _read_file(Path(source), max_file_bytes)
        label = str(source)
    else:
        data = bytes(source)
        label = "image bytes"
        if len(data) > max_file_bytes:
            raise ImageError(
                f"{label}: {len(data)} bytes exceeds the limit of {max_file_bytes} bytes",
                code="file_too_large",
            )
    if not data:
        raise ImageError(f"{label}: the file is empty (0 bytes)", code="empty_file")
    return _decode(data, label, max_pixels)


def _read_file(path: Path, max_file_bytes: int) -> bytes:
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise ImageError(f"{path}: no such file", code="file_not_found") from None
    except OSError as exc:
        raise ImageError(f"{path}: cannot be read ({exc.strerror})", code="file_not_found") from None
    if path.is_dir():
        raise ImageError(f"{path}: is a directory, not an image file", code="unsupported_format")
    if size > max_file_bytes:
        raise ImageError(
            f"{path}: {size} bytes exceeds the limit of {max_file_bytes} bytes", code="file_too_large"
        )
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ImageError(f"{path}: cannot be read ({exc.strerror})", code="file_not_found") from None


def _decode(data: bytes, label: str, max_pixels: int) -> np.ndarray:
    with warnings.catch_warnings():
        # Pillow's own bomb check warns above its global limit; ours is explicit below.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            image: Image.Image = Image.open(io.BytesIO(data))
        except Image.DecompressionBombError:
            raise _too_large(label, None, max_pixels) from None
        except UnidentifiedImageError:
            raise ImageError(f"{label}: {_describe_unknown(data)}", code="unsupported_format") from None
        except (OSError, SyntaxError, ValueError) as exc:
            raise ImageError(f"{label}: cannot be decoded ({exc})", code="unsupported_format") from None
        width, height = image.size
        if width <= 0 or height <= 0:
            raise ImageError(f"{label}: image has no pixels ({width}x{height})", code="unsupported_format")
        if width * height > max_pixels:
            raise _too_large(label, (width, height), max_pixels)
        try:
            image.load()
            image = ImageOps.exif_transpose(image)
        except Image.DecompressionBombError:
            raise _too_large(label, (width, height), max_pixels) from None
        except (OSError, SyntaxError, ValueError, EOFError) as exc:
            message = str(exc)
            if "truncated" in message or isinstance(exc, EOFError) or "broken data stream" in message:
                raise ImageError(
                    f"{label}: the file is truncated or corrupt ({message})", code="truncated_image"
                ) from None
            raise ImageError(f"{label}: cannot be decoded ({message})", code="truncated_image") from None
    return _to_rgb(image)


def _too_large(label: str, size: tuple[int, int] | None, max_pixels: int) -> ImageError:
    dims = f"{size[0]}x{size[1]} = {size[0] * size[1]} pixels" if size else "its declared size"
    return ImageError(
        f"{label}: {dims} exceeds the limit of {max_pixels} pixels (max_pixels setting)",
        code="image_too_large",
    )


def _describe_unknown(data: bytes) -> str:
    head = data[:64]
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        text = ""
    if text and all(ch.isprintable() or ch.isspace() for ch in text):
        return "this is a text file, not an image"
    return "not a recognised image format (supported: JPEG, PNG, WebP, BMP, GIF, TIFF)"


def _to_rgb(image: Image.Image) -> np.ndarray:
    mode = image.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        # 16-bit / 32-bit single channel: rescale by the format's range, not per image.
        arr = np.asarray(image, dtype=np.float64)
        scale = 255.0 / (65535.0 if mode.startswith("I;16") or arr.max(initial=0) > 255 else 255.0)
        gray = np.clip(arr * scale, 0, 255).astype(np.uint8)
        return np.ascontiguousarray(np.repeat(gray[:, :, None], 3, axis=2))
    if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba)
    rgb = image.convert("RGB")
    return np.ascontiguousarray(np.asarray(rgb, dtype=np.uint8))


def _from_array(arr: np.ndarray, max_pixels: int) -> np.ndarray:
    if arr.dtype != np.uint8:
        raise ImageError(
            f"image array must be uint8 (got {arr.dtype}); scale it to 0-255 first", code="invalid_array"
        )
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    elif arr.ndim == 3 and arr.shape[2] == 4:
        arr = arr[:, :, :3]
    elif arr.ndim == 3 and arr.shape[2] == 1:
        arr = np.repeat(arr, 3, axis=2)
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise ImageError(
            f"image array must be HxW, HxWx1, HxWx3 (RGB) or HxWx4, got shape {arr.shape}",
            code="invalid_array",
        )
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ImageError(f"image array has no pixels (shape {arr.shape})", code="invalid_array")
    if arr.shape[0] * arr.shape[1] > max_pixels:
        raise _too_large("image array", (arr.shape[1], arr.shape[0]), max_pixels)
    return np.ascontiguousarray(arr)
