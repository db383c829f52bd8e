"""Galleries of enrolled people: ``from visage.gallery import Gallery``."""

from visage.gallery.api import Candidate, Enrollment, Gallery, Identification, Rejection
from visage.gallery.store_sql import NewTemplate

__all__ = ["Candidate", "Enrollment", "Gallery", "Identification", "NewTemplate", "Rejection"]
