"""How a collection's images become its cache, as one record: the settings ingestion applies,
which travel with the cache so that training, the checkpoint and prediction use what was
applied rather than what the parameters say now.

The record is kept in the manifest's metadata (``manifest.attrs["preprocessing"]``, stored in
the Parquet file): manifest and cache are written by the same ingestion run and row-aligned.
Instruments differ: ZooScan and NDSB images are dark objects on white, UVP6 and in-situ
cameras bright objects on black, IFCB grey; so the padding fill defaults to ``auto``, each
image's own background (:func:`~.imaging.border_fill`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image

from .frame_crop import FrameCrop, crop_frame
from .imaging import apply_colour, bits_used, border_fill, grey_band, square, to_rgb

COLOUR_SETTINGS = ("auto", "grey", "rgb")
# Grey level of an image's border from which it counts as a white / black background.
WHITE_FROM, BLACK_UP_TO = 192, 63


@dataclass(frozen=True)
class CachePreprocessing:
    """Side of the cached squares and how images are brought there.

    ``fill``: ``"auto"`` (each image's border median, over a ring ``border`` pixels wide), a
    grey level or an RGB colour. ``colour``: ``grey`` drops colour, ``rgb`` keeps it, ``auto``
    keeps images as they are and is recorded, after ingestion, as ``grey`` or ``rgb`` by
    what the collection turned out to hold (prediction then treats new images the same way).
    ``bit_depth``: the instrument's, for images of more than 8 bits (None: 16).
    ``invert``: 255 - value, before padding.
    """

    cache_size: int
    fill: str | int | tuple[int, int, int] = "auto"
    border: int = 2
    colour: str = "auto"
    bit_depth: int | None = None
    invert: bool = False

    @classmethod
    def from_settings(cls, cache_size: int, settings: dict[str, Any]) -> CachePreprocessing:
        """From a collection's ``preprocessing`` parameters (fill, border, colour, ...)."""
        return cls.from_dict({**settings, "cache_size": cache_size})

    def resolved(self, colour_seen: bool) -> CachePreprocessing:
        """This record with ``colour="auto"`` resolved by what the collection held."""
        if self.colour != "auto":
            return self
        return replace(self, colour="rgb" if colour_seen else "grey")

    def to_dict(self) -> dict[str, Any]:
        values = asdict(self)
        values["fill"] = list(self.fill) if isinstance(self.fill, tuple) else self.fill
        return values

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> CachePreprocessing:
        fill = values.get("fill", 255)
        return cls(
            cache_size=int(values["cache_size"]),
            fill=tuple(int(v) for v in fill) if isinstance(fill, list | tuple) else fill,
            border=int(values.get("border", 2)),
            colour=str(values.get("colour", values.get("colour_mode", "rgb"))),
            bit_depth=values.get("bit_depth"),
            invert=bool(values.get("invert", False)),
        )

    def describe(self) -> str:
        """A short, readable form for messages: ``fill=auto (border 2), colour=grey``."""
        fill = f"auto (border {self.border})" if self.fill == "auto" else str(self.fill)
        parts = [f"fill={fill}", f"colour={self.colour}"]
        if self.bit_depth is not None:
            parts.append(f"bit_depth={self.bit_depth}")
        if self.invert:
            parts.append("invert")
        return ", ".join(parts)

    def differences(self, other: CachePreprocessing) -> list[str]:
        """The settings in which ``other`` would make a different cache (``auto`` colour
        matches what it resolved to)."""
        names = ["cache_size", "fill", "bit_depth", "invert"]
        if self.fill == "auto" or other.fill == "auto":
            names.append("border")
        different = [n for n in names if getattr(self, n) != getattr(other, n)]
        if "auto" not in (self.colour, other.colour) and self.colour != other.colour:
            different.append("colour")
        return different


@dataclass(frozen=True)
class ImageFacts:
    """What preprocessing saw of one image, for the records and the ingestion report."""

    background: int  # grey level of the border median, 0-255
    colour: bool  # its bands differ
    bits: int  # bits its brightest raw pixel needs (8 for 8-bit images)


def prepare(
    img: Image.Image, settings: CachePreprocessing, frame_crop: FrameCrop | None = None
) -> tuple[np.ndarray, ImageFacts, bool]:
    """One decoded image as a cache square, what was seen of it, and whether ``frame_crop``
    found and removed a scale bar.

    Order: 8-bit RGB (by the declared bit depth) -> the background is read from the border
    -> scale bar removed (the crop is tight, so the border is read before) -> colour and
    inversion (applied to the background too) -> padded with the fill -> resized.
    """
    alpha_fill = 255 if settings.fill == "auto" else settings.fill
    rgb = to_rgb(img, fill=alpha_fill, bit_depth=settings.bit_depth)
    grey = grey_band(rgb)
    colour_seen = grey is None
    if colour_seen:
        background = border_fill(rgb, settings.border)
    else:
        background = border_fill(grey, settings.border) * 3
    cropped = False
    if frame_crop is not None:
        rgb, cropped = crop_frame(rgb, frame_crop)
        grey = grey_band(rgb) if cropped else grey
    if (settings.colour == "grey" and colour_seen) or settings.invert:
        rgb = apply_colour(rgb, settings.colour, settings.invert)
        grey = grey_band(rgb)
        background = apply_colour(
            Image.new("RGB", (1, 1), background), settings.colour, settings.invert
        ).getpixel((0, 0))
    fill = background if settings.fill == "auto" else settings.fill
    if not isinstance(fill, int) and len(set(fill)) == 1:
        fill = fill[0]  # a grey fill: the one-band path below stays open
    squared = square(
        rgb if grey is None or not isinstance(fill, int) else grey, settings.cache_size, fill
    )
    facts = ImageFacts(round(sum(background) / 3), colour_seen, bits_used(img))
    return squared, facts, cropped


def record_preprocessing(frame: pd.DataFrame, preprocessing: CachePreprocessing) -> None:
    """Attach the record to a records table or manifest (in place)."""
    frame.attrs["preprocessing"] = preprocessing.to_dict()


def recorded_preprocessing(manifest: pd.DataFrame) -> CachePreprocessing | None:
    """The record of the ingestion that made this manifest; None for manifests written before
    the record existed."""
    values = manifest.attrs.get("preprocessing")
    return None if values is None else CachePreprocessing.from_dict(values)


def background_kind(level: int) -> str:
    """``white``, ``black`` or ``grey`` for a border grey level."""
    return "white" if level >= WHITE_FROM else "black" if level <= BLACK_UP_TO else "grey"


def centre_crop(images: np.ndarray, crop: int) -> np.ndarray:
    """The centre ``crop`` x ``crop`` square of ``(..., side, side, channels)`` cached images:
    what evaluation and prediction feed the network."""
    offset = (images.shape[-3] - crop) // 2
    return images[..., offset : offset + crop, offset : offset + crop, :]
