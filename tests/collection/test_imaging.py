"""Decoding, mode conversion and padding of single images (all built in memory)."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image, ImageFile

from plankton_kedro.engine.collection.imaging import (
    ImageDecodeError,
    bits_used,
    border_fill,
    decode_image,
    grey_band,
    load_image,
    pad_and_resize,
    pad_to_square,
    to_rgb,
)

FILL = 200


def encode(img: Image.Image, fmt: str = "PNG", **options) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, fmt, **options)
    return buffer.getvalue()


def pixels(data: bytes) -> np.ndarray:
    img = decode_image(data, fill=FILL)
    assert img.mode == "RGB"
    return np.asarray(img)


def noisy_rgb(width: int = 64, height: int = 48) -> Image.Image:
    values = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
    return Image.fromarray(values)


# --- conversions -----------------------------------------------------------------------------


def test_grey_becomes_three_equal_channels():
    grey = np.arange(64, dtype=np.uint8).reshape(8, 8) * 4
    rgb = pixels(encode(Image.fromarray(grey, "L")))
    assert rgb.shape == (8, 8, 3)
    for channel in range(3):
        np.testing.assert_array_equal(rgb[..., channel], grey)


def test_one_bit_maps_to_black_and_white():
    bits = Image.new("1", (4, 4), 0)
    bits.putpixel((1, 1), 1)
    rgb = pixels(encode(bits))
    assert tuple(rgb[1, 1]) == (255, 255, 255)
    assert tuple(rgb[0, 0]) == (0, 0, 0)


def test_la_transparent_area_becomes_fill():
    la = Image.new("LA", (4, 4), (10, 255))
    la.putpixel((0, 0), (10, 0))
    rgb = pixels(encode(la))
    assert tuple(rgb[0, 0]) == (FILL,) * 3
    assert tuple(rgb[3, 3]) == (10,) * 3


def test_palette_with_and_without_transparency():
    palette = Image.new("P", (4, 4), 1)
    palette.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    palette.putpixel((0, 0), 0)
    assert tuple(pixels(encode(palette))[0, 0]) == (0, 0, 0)
    transparent = pixels(encode(palette, transparency=0))
    assert tuple(transparent[0, 0]) == (FILL,) * 3
    assert tuple(transparent[2, 2]) == (255, 0, 0)


def test_rgba_is_composited_over_fill_not_black():
    rgba = Image.new("RGBA", (4, 4), (0, 0, 255, 255))
    rgba.putpixel((0, 0), (0, 0, 0, 0))
    rgba.putpixel((1, 1), (0, 0, 0, 128))
    rgb = pixels(encode(rgba))
    assert tuple(rgb[0, 0]) == (FILL,) * 3
    assert tuple(rgb[3, 3]) == (0, 0, 255)
    assert 90 <= rgb[1, 1, 0] <= 110  # half-transparent black over grey 200


def test_declared_twelve_bit_depth_uses_the_whole_range():
    values = np.linspace(0, 4095, 64, dtype=np.uint16).reshape(8, 8)
    img = load_image(encode(Image.fromarray(values)))
    assert img.mode == "I;16" and bits_used(img) == 12
    rgb = np.asarray(to_rgb(img, bit_depth=12))
    assert rgb.max() == 255
    assert rgb[..., 0].flat[31] == pytest.approx(int(values.flat[31]) * 255 / 4095, abs=1)


def test_images_of_one_instrument_keep_their_relative_brightness():
    """Scaled by the declared depth, never by each image's own peak: a dim image of a 12-bit
    camera stays half as bright as one twice as bright (per-image scaling made both white)."""
    dim = np.full((4, 4), 1000, dtype=np.uint16)
    bright = np.full((4, 4), 2000, dtype=np.uint16)
    levels = [
        int(np.asarray(to_rgb(load_image(encode(Image.fromarray(v))), bit_depth=12))[0, 0, 0])
        for v in (dim, bright)
    ]
    assert levels == [round(1000 * 255 / 4095), round(2000 * 255 / 4095)]
    # undeclared, 16-bit images are scaled by the full 16 bits, the same for every image
    assert np.asarray(to_rgb(load_image(encode(Image.fromarray(bright)))))[0, 0, 0] == round(
        2000 * 255 / 65535
    )


def test_values_beyond_the_declared_depth_clip():
    values = np.array([[0, 5000]], dtype=np.uint16)
    rgb = np.asarray(to_rgb(load_image(encode(Image.fromarray(values))), bit_depth=12))
    assert rgb[0, 1, 0] == 255


def test_full_range_sixteen_bit_maps_max_to_255():
    values = np.array([[0, 32768], [65535, 1000]], dtype=np.uint16)
    rgb = pixels(encode(Image.fromarray(values), "TIFF"))
    assert rgb[1, 0, 0] == 255
    assert rgb[0, 1, 0] == 128
    assert rgb[0, 0, 0] == 0


def test_eight_bit_content_in_sixteen_bit_image_is_unchanged_when_declared():
    values = np.array([[0, 100], [200, 255]], dtype=np.uint16)
    img = load_image(encode(Image.fromarray(values)))
    np.testing.assert_array_equal(np.asarray(to_rgb(img, bit_depth=8))[..., 0], values)


def test_float_images_clip_or_rescale():
    small = np.array([[-5.0, 100.4], [255.0, 30.0]], dtype=np.float32)
    np.testing.assert_array_equal(
        pixels(encode(Image.fromarray(small), "TIFF"))[..., 0], [[0, 100], [255, 30]]
    )
    large = np.array([[1000.0, 2000.0], [3000.0, 1000.0]], dtype=np.float32)
    np.testing.assert_array_equal(
        pixels(encode(Image.fromarray(large), "TIFF"))[..., 0], [[0, 128], [255, 0]]
    )


def test_cmyk_becomes_rgb():
    cyan = Image.new("CMYK", (4, 4), (255, 0, 0, 0))
    rgb = pixels(encode(cyan, "TIFF"))
    assert tuple(rgb[0, 0]) == (0, 255, 255)


def test_multi_frame_image_uses_first_frame():
    frames = [Image.new("RGB", (4, 4), colour) for colour in ((255, 0, 0), (0, 0, 255))]
    data = encode(frames[0], "TIFF", save_all=True, append_images=frames[1:])
    assert tuple(pixels(data)[0, 0]) == (255, 0, 0)


def test_load_image_keeps_original_mode_and_size():
    img = load_image(encode(Image.new("P", (7, 5))))
    assert (img.mode, img.size) == ("P", (7, 5))


# --- failures --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "empty file (0 bytes)"),
        (
            b"<!DOCTYPE html><html><body>404</body></html>",
            "not an image (looks like HTML/XML text)",
        ),
        (b"just some notes\n", "not an image (looks like a text file)"),
        (("a" + "é" * 300).encode(), "not an image (looks like a text file)"),
        (
            b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 8 8\n",
            "not an image (looks like a text file)",
        ),
        (bytes(range(256)) * 4, "not an image (cannot identify image file)"),
    ],
)
def test_non_images_have_clear_reasons(data, reason):
    with pytest.raises(ImageDecodeError) as caught:
        decode_image(data)
    assert str(caught.value) == reason


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
@pytest.mark.parametrize("keep", [0.5, 30])
def test_truncated_images_are_refused(fmt, keep):
    data = encode(noisy_rgb(), fmt)
    cut = int(len(data) * keep) if keep < 1 else keep
    with pytest.raises(ImageDecodeError, match=r"^truncated or corrupt image \(.+\)$"):
        decode_image(data[:cut])
    assert not ImageFile.LOAD_TRUNCATED_IMAGES


def test_decompression_bombs_are_refused(monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    with pytest.raises(ImageDecodeError, match="decompression bomb"):
        decode_image(encode(Image.new("L", (20, 20))))  # over twice the limit: PIL raises
    with (
        pytest.warns(Image.DecompressionBombWarning),
        pytest.raises(ImageDecodeError, match="decompression bomb"),
    ):
        decode_image(encode(Image.new("L", (12, 12))))  # over the limit: PIL only warns


# --- padding and resizing --------------------------------------------------------------------


def test_pad_to_square_centres_on_fill():
    wide = Image.new("RGB", (10, 4), (255, 0, 0))
    square = np.asarray(pad_to_square(wide, fill=FILL))
    assert square.shape == (10, 10, 3)
    assert (square[:3] == FILL).all() and (square[7:] == FILL).all()
    assert (square[3:7] == (255, 0, 0)).all()
    assert pad_to_square(Image.new("L", (4, 9)), fill=FILL).size == (9, 9)


def test_pad_and_resize_keeps_aspect_with_fill_bands():
    wide = Image.new("RGB", (200, 100), (0, 0, 0))
    out = pad_and_resize(wide, 32, fill=FILL)
    assert out.shape == (32, 32, 3)
    assert out.dtype == np.uint8
    assert out.flags["C_CONTIGUOUS"]
    assert (out[:4] == FILL).all() and (out[-4:] == FILL).all()  # bands top and bottom
    assert (out[12:20] <= 2).all()  # the object stays centred
    assert (out[:, :1] != FILL).any()  # full width used


def test_pad_and_resize_upscales_small_images():
    out = pad_and_resize(Image.new("RGB", (3, 3), (9, 9, 9)), 16)
    assert out.shape == (16, 16, 3)
    assert (out == 9).all()


# Expected values below are written out by hand, not computed with the module's own padding.
ROWS = np.array([[1, 2, 3, 4, 5, 6], [7, 8, 9, 10, 11, 12]], dtype=np.uint8)  # 2 high, 6 wide


def test_a_wide_image_is_padded_above_and_below_with_its_rows_in_the_middle():
    """Catches an off-by-one, a flip or a transposition in where pad_to_square pastes."""
    square = np.asarray(pad_to_square(Image.fromarray(ROWS), fill=0))
    expected = np.array(
        [
            [0, 0, 0, 0, 0, 0],
            [0, 0, 0, 0, 0, 0],
            [1, 2, 3, 4, 5, 6],
            [7, 8, 9, 10, 11, 12],
            [0, 0, 0, 0, 0, 0],
            [0, 0, 0, 0, 0, 0],
        ]
    )
    np.testing.assert_array_equal(square, expected)


def test_an_odd_margin_puts_the_extra_row_or_column_after_the_image():
    """Catches rounding the offset up instead of down (the image one pixel off centre)."""
    wide = np.array([[1, 2, 3, 4], [5, 6, 7, 8], [9, 10, 11, 12]], dtype=np.uint8)  # 3 x 4
    np.testing.assert_array_equal(
        np.asarray(pad_to_square(Image.fromarray(wide), fill=0)),
        [[1, 2, 3, 4], [5, 6, 7, 8], [9, 10, 11, 12], [0, 0, 0, 0]],
    )
    tall = np.array([[1, 2], [3, 4], [5, 6], [7, 8], [9, 10]], dtype=np.uint8)  # 5 x 2
    np.testing.assert_array_equal(
        np.asarray(pad_to_square(Image.fromarray(tall), fill=0)),
        [
            [0, 1, 2, 0, 0],
            [0, 3, 4, 0, 0],
            [0, 5, 6, 0, 0],
            [0, 7, 8, 0, 0],
            [0, 9, 10, 0, 0],
        ],
    )


@pytest.mark.parametrize("colour", [False, True], ids=["grey", "colour"])
def test_pad_and_resize_to_the_padded_side_is_exactly_the_padding(colour):
    """Catches pad_and_resize padding wrongly on its grey one-band path or its RGB path."""
    rgb = np.stack([ROWS, ROWS, ROWS], axis=2)
    if colour:
        rgb[..., 2] = 100  # blue differs from red and green: not grey
    fill = (50, 60, 70) if colour else 50
    out = pad_and_resize(Image.fromarray(rgb), 6, fill=fill)  # 6 px: no resampling at all
    expected = np.empty((6, 6, 3), dtype=np.uint8)
    expected[:] = fill
    expected[2:4] = rgb
    np.testing.assert_array_equal(out, expected)
    assert out.dtype == np.uint8 and out.flags["C_CONTIGUOUS"]


def test_a_white_dot_on_black_stays_where_it_was_after_padding_and_resizing():
    """Catches padding offsets or resizing that move the object in the square."""
    black = np.zeros((4, 8, 3), dtype=np.uint8)  # 4 high, 8 wide
    black[1, 6] = 255  # padded to 8 x 8 (2 rows above): row 3, column 6
    out = pad_and_resize(Image.fromarray(black), 4, fill=0)  # halved: row 1, column 3
    brightest = np.unravel_index(out[..., 0].argmax(), (4, 4))
    assert brightest == (1, 3)
    assert (out[..., 0] == out[..., 1]).all() and (out[..., 1] == out[..., 2]).all()
    tall = np.zeros((8, 2), dtype=np.uint8)  # 8 high, 2 wide: 3 columns left of it
    tall[5, 0] = 255  # padded: row 5, column 3; halved: row 2, column 1
    out = pad_and_resize(Image.fromarray(tall), 4, fill=0)
    assert np.unravel_index(out[..., 0].argmax(), (4, 4)) == (2, 1)


@pytest.mark.parametrize("size", [16, 40, 128])
def test_grey_content_is_resized_as_one_band_with_the_same_result(size):
    """Catches the one-band shortcut for grey images differing from resizing three bands."""
    rng = np.random.default_rng(size)
    grey = rng.integers(0, 256, (38, 61), dtype=np.uint8)
    grey_rgb = np.repeat(grey[:, :, None], 3, axis=2)
    colour = grey_rgb.copy()
    colour[5, 7, 2] ^= 1  # one channel of one pixel differs: not grey
    for pixels in (grey_rgb, colour):
        # padded here with numpy: 61 - 38 = 23 rows of fill, 11 above and 12 below
        padded = np.pad(pixels, ((11, 12), (0, 0), (0, 0)), constant_values=FILL)
        three_bands = Image.fromarray(padded).resize(
            (size, size), Image.Resampling.LANCZOS, reducing_gap=3.0
        )
        out = pad_and_resize(Image.fromarray(pixels), size, fill=FILL)
        np.testing.assert_array_equal(out, np.asarray(three_bands))
        assert out.flags["C_CONTIGUOUS"] and out.dtype == np.uint8


@pytest.mark.parametrize("band", [1, 2], ids=["green", "blue"])
def test_one_value_differing_in_either_other_band_makes_an_image_colour(band):
    """Catches a grey check that compares red with only one of the other bands, or misses
    a single pixel."""
    grey = np.random.default_rng(band).integers(0, 256, (23, 37), dtype=np.uint8)
    rgb = np.repeat(grey[:, :, None], 3, axis=2)
    found = grey_band(Image.fromarray(rgb))
    assert found is not None and found.mode == "L"
    np.testing.assert_array_equal(np.asarray(found), grey)
    rgb[22, 36, band] ^= 1  # the last pixel
    assert grey_band(Image.fromarray(rgb)) is None
    opened = Image.open(io.BytesIO(encode(Image.fromarray(rgb))))  # not decoded yet
    assert grey_band(opened) is None


def test_the_border_median_ignores_an_organism_touching_the_edge_and_the_inside():
    """Catches a background read from more than the outer ring (or a ring of another width,
    or without its sides), or a mean instead of a median."""
    pixels = np.full((30, 40), 230, dtype=np.uint8)
    pixels[2:-2, 2:-2] = 0  # everything inside the 2-pixel ring is dark
    pixels[10:20, :2] = 15  # an organism over 10 of the left edge's 26 ring rows
    pixels[:2, 5:25] = 20  # and over half of the top edge
    assert border_fill(pixels) == (230,)
    assert border_fill(Image.fromarray(pixels)) == (230,)
    framed = np.zeros((20, 20), dtype=np.uint8)
    framed[[0, -1]] = framed[:, [0, -1]] = 230  # a 1-pixel white frame around black
    assert border_fill(framed, width=1) == (230,)
    assert border_fill(framed, width=4) == (0,)  # 76 of the ring's 256 pixels are white
    tall = np.full((30, 10), 230, dtype=np.uint8)
    tall[:2] = tall[-2:] = 0  # dark top and bottom rows (40 pixels), white sides (104)
    assert border_fill(tall) == (230,)


def test_the_border_median_is_per_band_and_rounds_half_to_even():
    """Catches one band's median used for all three, and a different rounding of an even
    count's two middle values (the cache's bytes depend on it)."""
    rgb = np.zeros((6, 8, 3), dtype=np.uint8)  # ring of 2 on 6 x 8: 24 + 8 = 32 pixels
    rgb[..., 0] = 200
    rgb[..., 1] = 10
    rgb[:3, :, 1] = 13  # the green ring: 16 of 10 and 16 of 13 -> 11.5 -> 12
    rgb[..., 2] = 10
    rgb[:3, :, 2] = 11  # the blue ring: 10.5 -> 10 (half to even)
    assert border_fill(rgb) == (200, 12, 10)


def test_an_image_smaller_than_its_ring_takes_the_median_of_all_its_pixels():
    """Catches empty ring slices on images of 4 pixels or less across."""
    assert border_fill(np.array([[5, 9, 9], [9, 1, 2]], dtype=np.uint8)) == (7,)
    assert border_fill(np.full((1, 1, 3), 77, dtype=np.uint8)) == (77, 77, 77)
