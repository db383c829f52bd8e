"""Visage: a self-hosted, consent-first face recognition engine.

>>> from visage import FaceAnalyzer
>>> analyzer = FaceAnalyzer()
>>> faces = analyzer.analyze("group.jpg")       # columnar: boxes, scores, landmarks, quality, embeddings
>>> analyzer.verify("a.jpg", "b.jpg").same
"""

from visage.config import Settings
from visage.errors import ImageError, ModelError, NoFaceError, VisageError
from visage.io.image import load_image
from visage.pipeline import FaceAnalyzer, FileResult, analyze_files, similarity
from visage.types import Face, Faces, ModelInfo, Quality, Verification

__version__ = "0.1.0"

__all__ = [
    "Face",
    "FaceAnalyzer",
    "Faces",
    "FileResult",
    "ImageError",
    "ModelError",
    "ModelInfo",
    "NoFaceError",
    "Quality",
    "Settings",
    "Verification",
    "VisageError",
    "__version__",
    "analyze_files",
    "load_image",
    "similarity",
]
