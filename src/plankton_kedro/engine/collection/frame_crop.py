"""Remove a scale bar (or any stamped mark) from an image by template matching, then crop
the image to what is left of the organism.

ZooScan vignettes carry a "1 mm" scale bar; a classifier can learn the bar's size relative to
the organism instead of the organism itself. The bar is found by normalised cross-correlation
with each template (grey-scale PNGs: the shipped ones, or the user's), painted over with the
background colour, and the image is cropped to the bounding box of the remaining foreground.
An image where no template matches is returned unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path

import numpy as np
from PIL import Image

from plankton_kedro.engine.errors import CollectionError

# Named template sets shipped as package data (src/plankton_kedro/templates/).
SHIPPED_TEMPLATES = {"zooscan": ("zooscan_scale_bar.png",)}
DEFAULT_THRESHOLD = 0.8
_FOREGROUND_TOLERANCE = 40  # grey levels from the background that count as organism
_MARGIN = 2  # pixels kept around the organism's bounding box


@dataclass(frozen=True)
class FrameCrop:
    """Which templates to look for (a shipped set name or PNG paths) and how sure to be."""

    templates: tuple[str, ...]
    threshold: float = DEFAULT_THRESHOLD

    @classmethod
    def from_setting(cls, setting: str | dict | None) -> FrameCrop | None:
        """``None``, a shipped set name (``zooscan``), or ``{templates: [...], threshold: x}``."""
        if setting is None:
            return None
        if isinstance(setting, str):
            setting = {"templates": [setting]}
        crop = cls(
            templates=tuple(str(t) for t in setting.get("templates", ())),
            threshold=float(setting.get("threshold", DEFAULT_THRESHOLD)),
        )
        if not crop.templates:
            raise CollectionError("frame_crop: give a shipped template set or template file paths")
        if not 0 < crop.threshold <= 1:
            raise CollectionError(f"frame_crop: threshold must be in (0, 1], got {crop.threshold}")
        load_templates(crop.templates)  # fail now, naming the file, not in every image
        return crop


def load_templates(names: tuple[str, ...]) -> list[np.ndarray]:
    """Grey-scale float templates for shipped set names and/or PNG file paths."""
    return list(_load_templates(tuple(names)))


@lru_cache(maxsize=8)
def _load_templates(names: tuple[str, ...]) -> tuple[np.ndarray, ...]:
    arrays = []
    for name in names:
        if name in SHIPPED_TEMPLATES:
            folder = resources.files("plankton_kedro") / "templates"
            for file in SHIPPED_TEMPLATES[name]:
                with resources.as_file(folder / file) as path:
                    arrays.append(_read_template(path))
        else:
            arrays.append(_read_template(Path(name).expanduser()))
    return tuple(arrays)


def _read_template(path: Path) -> np.ndarray:
    if not path.is_file():
        shipped = ", ".join(SHIPPED_TEMPLATES)
        raise CollectionError(
            f"frame_crop: template {path} does not exist (shipped sets: {shipped})"
        )
    try:
        with Image.open(path) as img:
            template = np.asarray(img.convert("L"), dtype=np.float64)
    except OSError as exc:
        raise CollectionError(
            f"frame_crop: template {path} is not a readable image ({exc})"
        ) from exc
    if template.std() == 0:
        raise CollectionError(f"frame_crop: template {path} is a flat image; nothing to match")
    return template


def crop_frame(img: Image.Image, crop: FrameCrop) -> tuple[Image.Image, bool]:
    """``(image without the best-matching mark, cropped to the organism; whether a mark was
    found)``. The background colour is the median of the image border."""
    gray = np.asarray(img.convert("L"), dtype=np.float64)
    box = best_match(gray, load_templates(crop.templates), crop.threshold)
    if box is None:
        return img, False
    background = float(np.median(np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])))
    top, left, height, width = box
    gray[top : top + height, left : left + width] = background
    pixels = np.array(img)
    pixels[top : top + height, left : left + width] = _background_colour(pixels, background)
    rows, cols = np.nonzero(np.abs(gray - background) > _FOREGROUND_TOLERANCE)
    cleaned = Image.fromarray(pixels, mode=img.mode)
    if len(rows) == 0:
        return cleaned, True
    bounds = (
        max(int(cols.min()) - _MARGIN, 0),
        max(int(rows.min()) - _MARGIN, 0),
        min(int(cols.max()) + 1 + _MARGIN, gray.shape[1]),
        min(int(rows.max()) + 1 + _MARGIN, gray.shape[0]),
    )
    return cleaned.crop(bounds), True


def _background_colour(pixels: np.ndarray, gray_level: float) -> np.ndarray | int:
    """The background as a pixel value of this image's mode (grey level for 2-d images)."""
    if pixels.ndim == 2:
        return round(gray_level)
    return np.full(pixels.shape[-1], round(gray_level), dtype=pixels.dtype)


def best_match(
    image: np.ndarray, templates: list[np.ndarray], threshold: float
) -> tuple[int, int, int, int] | None:
    """``(top, left, height, width)`` of the template matching best, if its normalised
    cross-correlation reaches ``threshold``; templates larger than the image are ignored."""
    best, best_box = threshold, None
    for template in templates:
        height, width = template.shape
        if height > image.shape[0] or width > image.shape[1]:
            continue
        scores = normalised_cross_correlation(image, template)
        top, left = np.unravel_index(int(np.argmax(scores)), scores.shape)
        if scores[top, left] >= best:
            best, best_box = float(scores[top, left]), (int(top), int(left), height, width)
    return best_box


def normalised_cross_correlation(image: np.ndarray, template: np.ndarray) -> np.ndarray:
    """Zero-mean normalised cross-correlation of ``template`` at every position where it fits
    inside ``image`` (scores in [-1, 1]; flat image windows score 0)."""
    from scipy.signal import fftconvolve  # 1 s to import: only when a collection asks for it

    height, width = template.shape
    centred = template - template.mean()
    correlation = fftconvolve(image, centred[::-1, ::-1], mode="valid")
    window_sum = _window_sums(image, height, width)
    window_sq_sum = _window_sums(image * image, height, width)
    variance = np.maximum(window_sq_sum - window_sum**2 / (height * width), 0.0)
    denominator = np.sqrt(variance) * np.sqrt((centred**2).sum())
    flat = denominator < 1e-6 * max(float(denominator.max(initial=0.0)), 1.0)
    return np.where(flat, 0.0, correlation / np.where(flat, 1.0, denominator))


def _window_sums(values: np.ndarray, height: int, width: int) -> np.ndarray:
    """Sum of every ``height`` x ``width`` window (summed-area table)."""
    table = np.pad(values, ((1, 0), (1, 0))).cumsum(0).cumsum(1)
    return (
        table[height:, width:]
        - table[:-height, width:]
        - table[height:, :-width]
        + table[:-height, :-width]
    )
