"""Video: sources of frames (files, image folders; streams next), face tracks across frames."""
