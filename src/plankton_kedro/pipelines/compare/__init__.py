"""Route comparison: the three routes over several seeds, tabulated and plotted."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
