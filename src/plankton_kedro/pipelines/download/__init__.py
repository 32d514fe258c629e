"""Download: fetch public data set files, resumable and checked against SHA-256."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
