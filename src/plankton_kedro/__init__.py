"""plankton-kedro: transfer learning for plankton image classifiers, as Kedro pipelines."""

__version__ = "0.1.0"
