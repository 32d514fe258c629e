"""The two_stage route as a runnable pipeline."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
