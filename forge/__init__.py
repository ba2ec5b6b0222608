"""forge: a notebook-first workspace that trains Texas 42 models against an exact oracle."""

__version__ = "0.1.0"
