"""Ensembling: members fine-tuned by namespaced route copies, chosen on validation."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
