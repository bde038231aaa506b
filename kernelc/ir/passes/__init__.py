"""IR-to-IR transformations, one per module."""
