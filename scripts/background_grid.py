"""Draw how images of two instruments become cache squares: raw, padded with each image's own
background (``fill: auto``, the default) and padded with white (one fixed fill for all).

    .venv/bin/python scripts/background_grid.py                       # the bundled demo sets
    .venv/bin/python scripts/background_grid.py --sets ndsb.zip uvp6.zip --out grid.png

Each set gives one block of three rows (raw, ``fill: auto``, ``fill: 255``) of the first
``--per-set`` images, one per class where there are enough classes. The figure in
docs/instruments.md is this script's output on the demo sets.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from PIL import Image, ImageDraw

from plankton_kedro.engine.collection.imaging import load_image
from plankton_kedro.engine.collection.preprocessing import CachePreprocessing, prepare
from plankton_kedro.engine.collection.sources import open_collection

PROJECT = Path(__file__).resolve().parents[1]
DEMO = [PROJECT / "data/01_raw/demo_source.zip", PROJECT / "data/01_raw/demo_target.zip"]
TILE, GAP, LABEL_WIDTH = 96, 6, 150
PANEL = (200, 200, 200)  # neutral grey behind the tiles, so white and black padding both show
ROWS = (("raw", None), ("fill: auto", "auto"), ("fill: 255", 255))


def sample(path: Path, count: int) -> list[tuple[str, bytes]]:
    """The first image of each class, then the second of each, ... until ``count``."""
    by_class: dict[str, list[tuple[str, bytes]]] = {}
    for rel_path, data in open_collection(str(path)).iter_files():
        by_class.setdefault(rel_path.split("/")[0], []).append((rel_path, data))
    rounds = zip(*by_class.values(), strict=False)
    return [item for group in rounds for item in group][:count]


def tile(image: Image.Image) -> Image.Image:
    """``image`` scaled to fit a tile, centred on the neutral panel."""
    canvas = Image.new("RGB", (TILE, TILE), PANEL)
    scale = min(TILE / image.width, TILE / image.height)
    fitted = image.convert("RGB").resize(
        (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    )
    canvas.paste(fitted, ((TILE - fitted.width) // 2, (TILE - fitted.height) // 2))
    return canvas


def grid(sets: list[Path], per_set: int, cache_size: int) -> Image.Image:
    blocks = [(path, sample(path, per_set)) for path in sets]
    rows = len(blocks) * len(ROWS)
    width = LABEL_WIDTH + per_set * (TILE + GAP) + GAP
    height = rows * (TILE + GAP) + GAP * len(blocks) + GAP
    figure = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(figure)
    top = GAP
    for path, images in blocks:
        for label, fill in ROWS:
            draw.text((GAP, top + TILE // 2 - 14), f"{path.stem}\n{label}", fill=(0, 0, 0))
            for column, (_, data) in enumerate(images):
                raw = load_image(data)
                if fill is None:
                    shown = raw
                else:
                    settings = CachePreprocessing(cache_size=cache_size, fill=fill)
                    shown = Image.fromarray(prepare(raw, settings)[0])
                figure.paste(tile(shown), (LABEL_WIDTH + column * (TILE + GAP), top))
            top += TILE + GAP
        top += GAP
    return figure


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sets", nargs="+", type=Path, default=DEMO, help="folders or archives")
    parser.add_argument("--per-set", type=int, default=8, help="images shown per set")
    parser.add_argument("--cache-size", type=int, default=73, help="cache side in pixels")
    parser.add_argument("--out", type=Path, default=PROJECT / "docs/images/backgrounds.png")
    args = parser.parse_args(argv)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    grid(args.sets, args.per_set, args.cache_size).save(args.out)
    print(f"wrote {args.out} ({', '.join(p.name for p in args.sets)})")
    return args.out


if __name__ == "__main__":
    main()
