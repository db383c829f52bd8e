"""Every kind of bad or unusual image input gets a clear, coded result."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from visage import ImageError, load_image


def encode(image: Image.Image, fmt: str, **kwargs: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


@pytest.fixture()
def rgb() -> Image.Image:
    rng = np.random.default_rng(0)
    return Image.fromarray(rng.integers(0, 255, (40, 60, 3), dtype=np.uint8))


def error_code(source: object, **kwargs: object) -> str:
    with pytest.raises(ImageError) as info:
        load_image(source, **kwargs)  # type: ignore[arg-type]
    assert info.value.message  # a human message is always there
    return info.value.code


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.jpg"
    path.write_bytes(b"")
    assert error_code(path) == "empty_file"
    assert error_code(b"") == "empty_file"


def test_missing_file(tmp_path: Path) -> None:
    assert error_code(tmp_path / "nope.jpg") == "file_not_found"


def test_text_file_named_jpg(tmp_path: Path) -> None:
    path = tmp_path / "notes.jpg"
    path.write_text("hello, this is not a photo\n")
    with pytest.raises(ImageError, match="text file") as info:
        load_image(path)
    assert info.value.code == "unsupported_format"


def test_random_bytes_are_unsupported() -> None:
    assert error_code(bytes(range(256)) * 4) == "unsupported_format"


def test_truncated_jpeg(rgb: Image.Image) -> None:
    data = encode(rgb.resize((400, 300)), "JPEG", quality=95)
    assert error_code(data[: len(data) // 2]) == "truncated_image"


def test_truncated_png(rgb: Image.Image) -> None:
    data = encode(rgb.resize((400, 300)), "PNG")
    assert error_code(data[: len(data) // 2]) == "truncated_image"


def test_file_size_limit(rgb: Image.Image) -> None:
    data = encode(rgb, "PNG")
    assert error_code(data, max_file_bytes=len(data) - 1) == "file_too_large"


def _png_bomb(width: int, height: int) -> bytes:
    """A valid grayscale PNG of width x height zeros: a few kB on disk, huge in memory."""
    row = b"\x00" + b"\x00" * width
    compressor = zlib.compressobj(9)
    payload = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", payload) + chunk(b"IEND", b"")


def test_decompression_bomb_is_refused_before_decoding() -> None:
    bomb = _png_bomb(10_000, 6_000)  # 60 MP > default 50 MP
    assert len(bomb) < 200_000
    with pytest.raises(ImageError, match="60000000 pixels") as info:
        load_image(bomb)
    assert info.value.code == "image_too_large"


def test_pillow_scale_bomb_is_refused() -> None:
    assert error_code(_png_bomb(20_000, 10_000)) == "image_too_large"  # past Pillow's own hard limit


def test_configurable_pixel_limit(rgb: Image.Image) -> None:
    assert error_code(encode(rgb, "PNG"), max_pixels=100) == "image_too_large"


@pytest.mark.parametrize("mode", ["L", "CMYK", "RGBA", "P", "LA", "1"])
def test_modes_become_rgb(rgb: Image.Image, mode: str) -> None:
    converted = rgb.convert(mode)
    fmt = "JPEG" if mode == "CMYK" else "PNG"
    image = load_image(encode(converted, fmt))
    assert image.shape == (40, 60, 3) and image.dtype == np.uint8


def test_rgba_transparency_composited_on_white() -> None:
    transparent = Image.new("RGBA", (8, 8), (0, 0, 0, 0))
    assert (load_image(encode(transparent, "PNG")) == 255).all()


def test_16_bit_grayscale_is_rescaled() -> None:
    ramp = (np.linspace(0, 65535, 64 * 32).reshape(32, 64)).astype(np.uint16)
    data = encode(Image.fromarray(ramp), "PNG")
    image = load_image(data)
    assert image.shape == (32, 64, 3)
    assert image[0, 0, 0] == 0 and image[-1, -1, 0] == 255


def test_webp(rgb: Image.Image) -> None:
    assert load_image(encode(rgb, "WEBP", lossless=True)).shape == (40, 60, 3)


def test_exif_orientation_is_applied(rgb: Image.Image) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    image = load_image(encode(rgb, "JPEG", exif=exif.tobytes()))
    assert image.shape == (60, 40, 3)


def test_animated_gif_uses_first_frame(rgb: Image.Image) -> None:
    frames = [rgb.convert("P"), rgb.rotate(180).convert("P")]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:])
    assert load_image(data).shape == (40, 60, 3)


def test_arrays() -> None:
    gray = np.zeros((5, 7), np.uint8)
    assert load_image(gray).shape == (5, 7, 3)
    assert load_image(np.zeros((5, 7, 4), np.uint8)).shape == (5, 7, 3)
    assert error_code(np.zeros((5, 7, 3), np.float32)) == "invalid_array"
    assert error_code(np.zeros((5, 7, 2), np.uint8)) == "invalid_array"
    assert error_code(np.zeros((0, 7, 3), np.uint8)) == "invalid_array"


def test_directory_is_not_an_image(tmp_path: Path) -> None:
    assert error_code(tmp_path) == "unsupported_format"
