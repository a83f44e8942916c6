"""xstream's version (written into every streaming model's metadata)."""

__version__ = "0.2.0"
