"""Input/output: turning files, bytes and arrays into validated RGB images."""

from visage.io.image import load_image

__all__ = ["load_image"]
