"""Galleries of enrolled people: ``from visage.gallery import Gallery``."""

from visage.gallery.api import Candidate, Enrollment, Gallery, Identification, Rejection

__all__ = ["Candidate", "Enrollment", "Gallery", "Identification", "Rejection"]
