"""Kedro datasets of the project."""

from plankton_kedro.datasets.checkpoint import CheckpointDataset
from plankton_kedro.datasets.earlier_ingestions import EarlierIngestionsDataset
from plankton_kedro.datasets.ecotaxa_export import EcoTaxaExportDataset
from plankton_kedro.datasets.image_cache import ImageCacheDataset
from plankton_kedro.datasets.image_source import ImageSourceDataset
from plankton_kedro.datasets.manifest import ManifestDataset
from plankton_kedro.datasets.model_card import ModelCardDataset
from plankton_kedro.datasets.onnx_model import OnnxModelDataset
from plankton_kedro.datasets.prediction_model import PredictionModelDataset

__all__ = [
    "CheckpointDataset",
    "EarlierIngestionsDataset",
    "EcoTaxaExportDataset",
    "ImageCacheDataset",
    "ImageSourceDataset",
    "ManifestDataset",
    "ModelCardDataset",
    "OnnxModelDataset",
    "PredictionModelDataset",
]
