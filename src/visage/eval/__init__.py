"""Evaluation: verification on LFW-style pair lists, detection against box annotations."""
