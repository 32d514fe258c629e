"""Prediction: classify new, unlabelled images with a trained model or the ensemble."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
