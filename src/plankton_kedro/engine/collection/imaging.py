"""Decode arbitrary image bytes into clean 8-bit RGB and square uint8 arrays.

Plain library code (no Kedro): every failure to read a file is raised as `ImageDecodeError` with a
short human-readable reason, so callers can skip the file and report why.

A padding fill is a grey level (``int``), a colour (three ints) or, through
:func:`border_fill`, the image's own background: the median of its outer ring of pixels.
"""

from __future__ import annotations

import io
import re

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

# Raster formats of the usual image file extensions only: never hand untrusted bytes to plugins
# such as EPS, which runs Ghostscript.
FORMATS = ("JPEG", "PNG", "TIFF", "BMP", "GIF", "WEBP", "PPM")
CONTAINER_BITS = 16  # what a 16-bit image is scaled by when no bit depth is declared
_SIXTEEN_BIT_MODES = {"I;16", "I;16B", "I;16L", "I;16N", "I"}
_ALPHA_MODES = {"LA", "La", "PA", "RGBA", "RGBa"}
# Magic numbers of the usual image formats: such a file that PIL cannot identify is damaged,
# not "not an image".
_IMAGE_SIGNATURES = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF8", b"II*\x00", b"MM\x00*")
_MAX_DETAIL = 80


Fill = int | tuple[int, ...]


class ImageDecodeError(ValueError):
    """A file that is not a usable image; str() is the human-readable reason."""


def decode_image(data: bytes, *, fill: Fill = 255, bit_depth: int | None = None) -> Image.Image:
    """Fully decode image bytes into an 8-bit RGB image (transparency composited over `fill`)."""
    return to_rgb(load_image(data), fill=fill, bit_depth=bit_depth)


def load_image(data: bytes) -> Image.Image:
    """Fully decode the first frame of image bytes, keeping the original mode and size.

    Only `FORMATS` are recognised; anything else is "not an image".
    """
    if not data:
        raise ImageDecodeError("empty file (0 bytes)")
    try:
        img = Image.open(io.BytesIO(data), formats=FORMATS)
        _check_size(img)
        img.load()
    except ImageDecodeError:
        raise
    except Image.DecompressionBombError as exc:
        raise _too_large() from exc
    except UnidentifiedImageError as exc:
        raise _unidentified(data) from exc
    except Exception as exc:  # any decoder failure means a damaged file
        raise ImageDecodeError(f"truncated or corrupt image ({_short(exc)})") from exc
    return img


def to_rgb(img: Image.Image, *, fill: Fill = 255, bit_depth: int | None = None) -> Image.Image:
    """Convert any PIL mode to 8-bit RGB. High bit depths are scaled by ``bit_depth`` (the
    instrument's, declared per collection; default 16): the same for every image, so two
    images of one instrument keep their relative brightness."""
    if img.mode in _SIXTEEN_BIT_MODES or img.mode == "F":
        return eight_bit(img, bit_depth).convert("RGB")
    if img.mode in _ALPHA_MODES or "transparency" in img.info:
        return _composite(img.convert("RGBA"), fill)
    if img.mode == "RGB":
        return img
    try:
        return img.convert("RGB")
    except ValueError as exc:
        raise ImageDecodeError(f"unsupported image mode '{img.mode}'") from exc


def eight_bit(img: Image.Image, bit_depth: int | None = None) -> Image.Image:
    """High-bit-depth grey as 8-bit grey (``L``), scaled by ``bit_depth`` (default 16);
    float pixels clipped to 0..255 when they fit, else min-max scaled; 8-bit modes as they
    are. The one scaling of ingestion, prediction and exports."""
    if img.mode in _SIXTEEN_BIT_MODES:
        scaled = _scale_by_bit_depth(np.asarray(img), bit_depth or CONTAINER_BITS)
        return Image.fromarray(scaled, "L")
    if img.mode == "F":
        return Image.fromarray(_scale_float(np.asarray(img)), "L")
    return img


def bits_used(img: Image.Image) -> int:
    """Bits the brightest pixel of a high-bit-depth image needs (8 for 8-bit images)."""
    if img.mode not in _SIXTEEN_BIT_MODES:
        return 8
    return max(8, int(np.asarray(img).max(initial=0)).bit_length())


def apply_colour(rgb: Image.Image, colour: str, invert: bool = False) -> Image.Image:
    """``colour="grey"`` drops colour (luminance in all three bands); ``invert`` turns dark
    objects on white into bright objects on black (and back)."""
    if colour == "grey" and grey_band(rgb) is None:
        rgb = rgb.convert("L").convert("RGB")
    return ImageOps.invert(rgb) if invert else rgb


def border_fill(img: Image.Image | np.ndarray, width: int = 2) -> tuple[int, ...]:
    """The image's background: the per-band median of its outer ``width`` pixels (the whole
    image when it is smaller than the ring). A median ignores the few pixels of an organism
    touching the edge, of noise or of a scale bar; a vignetted border gives its typical
    value, between the darker corners and the lighter middles of the edges. One value for a
    one-band image (or 2-d array), three for RGB."""
    pixels = np.asarray(img)
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    height, wide, bands = pixels.shape
    if min(height, wide) <= 2 * width:
        ring = pixels.reshape(-1, bands)
    else:
        sides = (pixels[width:-width, :width], pixels[width:-width, -width:])
        parts = (pixels[:width], pixels[-width:], *sides)
        ring = np.concatenate([part.reshape(-1, bands) for part in parts])
    return tuple(_median(ring[:, band]) for band in range(bands))


def _median(values: np.ndarray) -> int:
    """The median of integer values, rounded half to even (as ``np.rint``)."""
    low, high = (len(values) - 1) // 2, len(values) // 2
    middle = np.partition(values, (low, high))
    return round((int(middle[low]) + int(middle[high])) / 2)


def pad_to_square(img: Image.Image, fill: Fill = 255) -> Image.Image:
    """Centre the image on a square canvas of `fill`, so resizing keeps the aspect ratio."""
    width, height = img.size
    side = max(width, height)
    if width == height:
        return img
    bands = len(img.getbands())
    colour = fill if isinstance(fill, int) else tuple(fill)
    if bands == 1 and not isinstance(colour, int):
        colour = colour[0]
    elif bands > 1 and isinstance(colour, int):
        colour = (colour,) * bands
    canvas = Image.new(img.mode, (side, side), colour)
    canvas.paste(img, ((side - width) // 2, (side - height) // 2))
    return canvas


def pad_and_resize(img: Image.Image, size: int, fill: Fill = 255) -> np.ndarray:
    """Pad to square, then antialias-resize to a C-contiguous uint8 (size, size, 3) array.

    Grey content (most plankton images, often stored as RGB) padded with a grey fill is
    padded and resized as one band and then copied to three: bit for bit the same result for
    a third of the work.
    """
    rgb = img if img.mode == "RGB" else img.convert("RGB")
    grey_fill = isinstance(fill, int) or len(set(fill)) == 1
    grey = grey_band(rgb) if grey_fill else None
    return square(grey if grey is not None else rgb, size, fill)


def square(img: Image.Image, size: int, fill: Fill) -> np.ndarray:
    """A one-band (grey) or RGB image padded with ``fill`` and resized to (size, size, 3):
    a read-only array over the image's bytes (one copy fewer than ``np.array``)."""
    padded = pad_to_square(img, fill)
    resized = padded.resize((size, size), Image.Resampling.LANCZOS, reducing_gap=3.0)
    rgb = resized if resized.mode == "RGB" else resized.convert("RGB")  # in PIL: fastest
    return np.frombuffer(rgb.tobytes(), np.uint8).reshape(size, size, 3)


def grey_band(rgb: Image.Image) -> Image.Image | None:
    """The RGB image's single band if its three bands are identical, else None.

    Compared by PIL's own band difference and bounding box (in C, without copying the pixels
    out of PIL: a third of the time of comparing array bands on a small image).
    """
    rgb.load()  # a file opened but not yet decoded has no pixels
    core = rgb.im
    red = core.getband(0)
    for band in (1, 2):
        if red.chop_difference(core.getband(band)).getbbox(False) is not None:
            return None
    return rgb._new(red)


def _check_size(img: Image.Image) -> None:
    """Refuse images without pixels, and what PIL only warns about: over MAX_IMAGE_PIXELS."""
    limit = Image.MAX_IMAGE_PIXELS
    width, height = img.size
    if width * height == 0:
        raise ImageDecodeError(f"empty image ({width}x{height} pixels)")
    if limit is not None and width * height > limit:
        raise _too_large()


def _too_large() -> ImageDecodeError:
    return ImageDecodeError(
        f"image too large (over {Image.MAX_IMAGE_PIXELS} pixels), refused as a decompression bomb"
    )


def _unidentified(data: bytes) -> ImageDecodeError:
    """Explain bytes PIL cannot identify: damaged image, HTML/text, or an unknown format."""
    if data.startswith(_IMAGE_SIGNATURES):
        return ImageDecodeError("truncated or corrupt image (header unreadable)")
    head = data[:512].lstrip()
    if head.startswith(b"<"):
        return ImageDecodeError("not an image (looks like HTML/XML text)")
    if _is_text(head):
        return ImageDecodeError("not an image (looks like a text file)")
    return ImageDecodeError("not an image (cannot identify image file)")


def _is_text(head: bytes) -> bool:
    """True when the bytes decode as UTF-8 without control characters other than whitespace."""
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 3:  # not just a character cut at the end of `head`
            return False
        text = head[: exc.start].decode("utf-8")
    return not re.search(r"[\x00-\x08\x0e-\x1f]", text)


def _short(exc: Exception) -> str:
    """PIL's message without object reprs, cut to a readable length."""
    text = re.sub(r"\s*<[^>]*object at 0x[0-9a-f]+>", "", str(exc)).strip() or type(exc).__name__
    return text if len(text) <= _MAX_DETAIL else text[: _MAX_DETAIL - 3] + "..."


def _scale_by_bit_depth(values: np.ndarray, bits: int) -> np.ndarray:
    """Map integer pixels of a ``bits``-deep instrument to 0..255 (brighter values clip)."""
    values = np.clip(values.astype(np.int64), 0, 2**bits - 1)
    return np.rint(values * (255 / (2**bits - 1))).astype(np.uint8)


def _scale_float(values: np.ndarray) -> np.ndarray:
    """Clip float pixels to 0..255 when they fit that range, else min-max scale them."""
    values = np.nan_to_num(values.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    low, high = float(values.min()), float(values.max())
    if high > 255:
        values = (values - low) * (255 / (high - low))
    return np.rint(np.clip(values, 0, 255)).astype(np.uint8)


def _composite(rgba: Image.Image, fill: Fill) -> Image.Image:
    """Flatten transparency onto a `fill` background (not black, which would invent edges)."""
    colour = (fill,) * 3 if isinstance(fill, int) else tuple(fill)
    background = Image.new("RGB", rgba.size, colour)
    background.paste(rgba, mask=rgba.getchannel("A"))
    return background
