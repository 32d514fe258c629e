"""Ingestion: validate raw images, split them and build the uint8 cache."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
