"""Seeded generator of a small synthetic plankton data set for demos and tests.

Two ImageFolder-layout ZIP archives stand in for real imager data: a large *source* set
(10 classes x 120 grayscale JPEGs, dark objects on a white background, like ZooScan or NDSB)
and a small *target* set (10 classes x 40 grayscale PNGs) from another kind of instrument
(bright objects on a black background, like UVP6 or an in-situ camera; lower contrast, more
blur and noise, smaller objects) with partly different classes (8 shared, 2 target-only), so
that the transfer-learning pipelines have a realistic, but tiny and reproducible, problem:
preprocessing must treat the two backgrounds differently.

Every image is drawn at ``SUPERSAMPLE`` x resolution with :mod:`PIL.ImageDraw`, box-reduced
(anti-aliasing), blurred and given sensor noise. All randomness comes from one
``numpy.random.default_rng([seed, split_id, class_id, index])`` per image, so each image
is independent of all others and the archives are byte-identical between runs.

CLI: ``python -m plankton_kedro.demo_data [--out DIR] [--seed N]``.
"""

from __future__ import annotations

import argparse
import io
import math
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from plankton_kedro.engine.atomic import atomic_path

# All classes, in a fixed order: the position is the class id used for seeding, so a class
# shared by both splits is seeded the same way (but looks different through the split look).
ALL_CLASSES: tuple[str, ...] = (
    "appendicularian",
    "chaetognath",
    "copepod",
    "detritus",
    "diatom_chain",
    "fecal_pellet",
    "medusa",
    "protist",
    "radiolarian",
    "trichodesmium",
    "ctenophore",
    "pteropod",
)
SOURCE_CLASSES: tuple[str, ...] = tuple(sorted(ALL_CLASSES[:10]))
TARGET_CLASSES: tuple[str, ...] = tuple(
    sorted(set(SOURCE_CLASSES) - {"fecal_pellet", "trichodesmium"} | {"ctenophore", "pteropod"})
)
SPLITS: tuple[str, ...] = ("source", "target")
IMAGES_PER_CLASS: dict[str, int] = {"source": 120, "target": 40}
ARCHIVE_NAMES: dict[str, str] = {"source": "demo_source.zip", "target": "demo_target.zip"}

SUPERSAMPLE = 4  # drawing resolution factor
MIN_SIDE, MAX_SIDE = 30, 110  # final canvas side limits (pixels)
JPEG_QUALITY = 90
ZIP_DATE_TIME = (1980, 1, 1, 0, 0, 0)
_DRAW_SIZE = 150  # drawing canvas side, in final pixels

Points = np.ndarray  # (n, 2) float array of x, y in final-pixel units, object-centred


@dataclass(frozen=True)
class _Look:
    """Instrument look of one split: ranges sampled per image."""

    scale: tuple[float, float]  # object size factor
    background: tuple[float, float]  # background grey level
    contrast: tuple[float, float]  # fraction of background darkened by a fully dark object
    blur: tuple[float, float]  # Gaussian blur radius, final pixels
    noise: tuple[float, float]  # noise standard deviation, grey levels
    margin: tuple[int, int]  # margin around the object per side, final pixels
    fmt: str  # file format in the archive
    bright_objects: bool = False  # objects lighten a dark background (else darken a light one)


_LOOKS: dict[str, _Look] = {
    "source": _Look((0.85, 1.1), (246, 255), (0.6, 0.85), (0.35, 0.8), (1.0, 2.5), (3, 12), "jpg"),
    "target": _Look((0.7, 0.9), (6, 22), (0.45, 0.7), (0.8, 1.3), (2.5, 4.5), (3, 12), "png", True),
}


# --------------------------------------------------------------------------- geometry helpers


class _Canvas:
    """Supersampled darkness layer (0 = background, 255 = fully dark) with a fixed pose.

    Shapes are given in object coordinates (final pixels, object centred at the origin, long
    axis along x); the canvas applies mirroring, rotation and supersampling.
    """

    def __init__(self, angle: float, mirror: bool):
        self.size = _DRAW_SIZE * SUPERSAMPLE
        self.image = Image.new("L", (self.size, self.size), 0)
        self.draw = ImageDraw.Draw(self.image)
        c, s = math.cos(angle), math.sin(angle)
        m = -1.0 if mirror else 1.0
        self._rot = np.array([[c, -s * m], [s, c * m]]) * SUPERSAMPLE
        self._centre = self.size / 2

    def _map(self, pts: Points) -> list[tuple[float, float]]:
        xy = np.asarray(pts, dtype=float).reshape(-1, 2) @ self._rot.T + self._centre
        return [tuple(p) for p in xy.tolist()]

    @staticmethod
    def _value(v: float) -> int:
        return int(round(255 * min(max(v, 0.0), 1.0)))

    def poly(self, pts: Points, v: float) -> None:
        """Filled polygon."""
        self.draw.polygon(self._map(pts), fill=self._value(v))

    def line(self, pts: Points, width: float, v: float, *, closed: bool = False) -> None:
        """Polyline with round joints and caps; ``width`` in final pixels."""
        pts = np.asarray(pts, dtype=float)
        if closed:
            pts = np.vstack([pts, pts[:1]])
        w = max(1, int(round(width * SUPERSAMPLE)))
        self.draw.line(self._map(pts), fill=self._value(v), width=w, joint="curve")
        if not closed and w > 2:
            for end in (pts[0], pts[-1]):
                self.dot(end, width / 2, v)

    def dot(self, centre: Points, radius: float, v: float) -> None:
        """Filled circle."""
        (x, y), r = self._map(centre)[0], radius * SUPERSAMPLE
        self.draw.ellipse((x - r, y - r, x + r, y + r), fill=self._value(v))


def _blob(
    rng: np.random.Generator,
    rx: float,
    ry: float,
    amp: float,
    harmonics: int = 4,
    centre: tuple[float, float] = (0.0, 0.0),
    n: int = 72,
) -> Points:
    """Ellipse outline deformed by random low-frequency radial harmonics."""
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    r = np.ones_like(t)
    for k in range(2, harmonics + 2):
        r += amp * rng.normal() / (k - 1) * np.cos(k * t + rng.uniform(0, 2 * np.pi))
    r = np.clip(r, 0.4, None)
    return np.stack([centre[0] + rx * r * np.cos(t), centre[1] + ry * r * np.sin(t)], axis=1)


def _ellipse(rx: float, ry: float, centre=(0.0, 0.0), angle: float = 0.0, n: int = 48) -> Points:
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    return _rotate(np.stack([rx * np.cos(t), ry * np.sin(t)], axis=1), angle) + centre


def _rotate(pts: Points, angle: float) -> Points:
    c, s = math.cos(angle), math.sin(angle)
    return np.asarray(pts, dtype=float) @ np.array([[c, s], [-s, c]])


def _ribbon(centreline: Points, widths) -> Points:
    """Polygon of a band of (varying) ``widths`` around a centreline."""
    pts = np.asarray(centreline, dtype=float)
    tangent = np.gradient(pts, axis=0)
    tangent /= np.linalg.norm(tangent, axis=1, keepdims=True) + 1e-9
    normal = np.stack([-tangent[:, 1], tangent[:, 0]], axis=1)
    half = np.broadcast_to(np.asarray(widths, dtype=float), (len(pts),))[:, None] / 2
    return np.vstack([pts + normal * half, (pts - normal * half)[::-1]])


def _curve(start, heading: float, length: float, turn: float, n: int = 24, wiggle=None) -> Points:
    """Path of ``length`` starting at ``start`` whose heading changes by ``turn`` in total.

    ``wiggle`` = (amplitude_rad, cycles, phase) adds a sinusoidal heading oscillation.
    """
    s = np.linspace(0, 1, n)
    theta = heading + turn * s
    if wiggle is not None:
        a, cycles, phase = wiggle
        theta = theta + a * np.sin(2 * np.pi * cycles * s + phase)
    step = length / (n - 1)
    d = np.stack([np.cos(theta), np.sin(theta)], axis=1) * step
    d[0] = 0
    return np.asarray(start, dtype=float) + np.cumsum(d, axis=0)


# --------------------------------------------------------------------------- morphologies
# Each drawer paints one object centred near the origin, long axis along x, with sizes
# multiplied by ``k``, and returns an extra blur radius (final pixels) for fuzzy objects.


def _copepod(cv: _Canvas, rng: np.random.Generator, k: float) -> float:
    length = rng.uniform(22, 40) * k
    width = length * rng.uniform(0.32, 0.46)
    v = rng.uniform(0.75, 0.95)
    # urosome (tail) with forked furca
    uro_len = length * rng.uniform(0.35, 0.6)
    uro = _curve((-length * 0.4, 0), np.pi, uro_len, rng.uniform(-0.5, 0.5), n=12)
    cv.poly(_ribbon(uro, np.linspace(width * 0.32, width * 0.16, len(uro))), v)
    tip, back = uro[-1], uro[-1] - uro[-2]
    back_angle = math.atan2(back[1], back[0])
    fork = rng.uniform(0.25, 0.6)
    for sign in (-1, 1):
        furca = _curve(tip, back_angle + sign * fork, length * rng.uniform(0.1, 0.2), 0, n=4)
        cv.line(furca, rng.uniform(0.8, 1.3), v)
    # antennae from the head, sweeping backwards
    for sign in (-1, 1):
        base = (length * 0.4, sign * width * 0.2)
        ant = _curve(
            base,
            sign * rng.uniform(0.9, 1.7),
            length * rng.uniform(0.6, 1.15) * (0.3 if rng.random() < 0.15 else 1.0),
            sign * rng.uniform(0.5, 1.5),
            n=20,
        )
        cv.poly(_ribbon(ant, np.linspace(1.6, 0.6, len(ant))), v * rng.uniform(0.8, 1.0))
    # legs: short strokes under the body
    for x in np.linspace(-0.15, 0.2, rng.integers(2, 5)) * length:
        leg = _curve((x, width * 0.3), np.pi / 2 + rng.uniform(0.2, 0.7), width * 0.55, 0, n=3)
        cv.line(leg, 0.8, v * 0.8)
    # prosome (oval body) with lighter segment boundaries
    cv.poly(_blob(rng, length / 2, width / 2, 0.03, centre=(length * 0.05, 0)), v)
    segments = rng.integers(3, 6)
    for x in np.linspace(-0.3, 0.2, segments) * length:
        half = width / 2 * math.sqrt(max(0.0, 1 - (2 * (x - length * 0.05) / length) ** 2))
        cv.line([(x, -half * 0.8), (x + half * 0.15, 0), (x, half * 0.8)], 0.9, v * 0.55)
    cv.dot((length * 0.42, 0), rng.uniform(1.0, 1.8) * k, min(1.0, v * 1.15))  # eye spot
    return 0.0


def _diatom_chain(cv: _Canvas, rng: np.random.Generator, k: float) -> float:
    n = int(rng.integers(3, 9))
    cell_w = rng.uniform(6, 10) * k * (1.0 if n < 6 else 0.8)
    cell_h = cell_w * rng.uniform(0.9, 1.7)
    gap = rng.uniform(0.4, 2.5) * k
    total = n * cell_w + (n - 1) * gap
    bend = rng.uniform(-0.35, 0.35)
    v_in, v_out = rng.uniform(0.3, 0.5), rng.uniform(0.8, 0.95)
    chloro = rng.random() < 0.6
    setae = rng.random() < 0.3
    for i in range(n):
        x = -total / 2 + cell_w / 2 + i * (cell_w + gap)
        y = bend * (x**2) / total
        slope = math.atan(2 * bend * x / total)
        w, h = cell_w * rng.uniform(0.9, 1.1), cell_h * rng.uniform(0.92, 1.08)
        t = np.linspace(0, 2 * np.pi, 40, endpoint=False)
        c, s = np.cos(t), np.sin(t)
        p = 4.0  # superellipse: rounded rectangle
        rect = np.stack(
            [w / 2 * np.sign(c) * np.abs(c) ** (2 / p), h / 2 * np.sign(s) * np.abs(s) ** (2 / p)],
            axis=1,
        )
        rect = _rotate(rect, slope) + (x, y)
        if setae:
            for sign in (-1, 1):
                seta = _curve(
                    (x, y), slope + sign * rng.uniform(1.2, 1.9), h * rng.uniform(1, 2), 0
                )
                cv.line(seta, 0.6, v_out * 0.8)
        cv.poly(rect, v_in)
        cv.line(rect, rng.uniform(0.8, 1.3), v_out, closed=True)
        if chloro:
            cv.poly(_blob(rng, w * 0.2, h * 0.25, 0.1, centre=(x, y)), v_out * 0.85)
    return 0.0


def _radiolarian(cv: _Canvas, rng: np.random.Generator, k: float) -> float:
    r = rng.uniform(7, 14) * k
    n_spines = int(rng.integers(14, 40))
    spine_len = r * rng.uniform(0.7, 1.7)
    v = rng.uniform(0.6, 0.85)
    width = rng.uniform(0.6, 1.1)
    angles = np.linspace(0, 2 * np.pi, n_spines, endpoint=False) + rng.uniform(0, 2 * np.pi)
    for a in angles + rng.normal(0, 0.06, n_spines):
        reach = r + spine_len * rng.uniform(0.75, 1.15)
        cv.line([(0, 0), (reach * math.cos(a), reach * math.sin(a))], width, v)
    cv.poly(_blob(rng, r, r * rng.uniform(0.9, 1.0), 0.03), v * rng.uniform(0.6, 0.8))
    cv.line(_ellipse(r, r * 0.97), 0.8, v, closed=True)
    cv.poly(_blob(rng, r * rng.uniform(0.4, 0.65), r * 0.5, 0.05), min(1.0, v * 1.2))
    return 0.0


def _appendicularian(cv: _Canvas, rng: np.random.Generator, k: float) -> float:
    trunk = rng.uniform(7, 12) * k
    tail_len = rng.uniform(32, 62) * k
    wiggle = (rng.uniform(0.3, 0.9), rng.uniform(0.8, 2.2), rng.uniform(0, 2 * np.pi))
    tail = _curve((-trunk * 0.3, 0), np.pi, tail_len, rng.uniform(-0.8, 0.8), n=40, wiggle=wiggle)
    tail = tail + (tail_len * 0.4, 0)
    v_tail = rng.uniform(0.45, 0.7)
    width = rng.uniform(2.5, 4.0) * k
    cv.poly(_ribbon(tail, np.linspace(width, 0.8, len(tail))), v_tail)
    cv.line(tail[:-4], 0.7, min(1.0, v_tail * 1.35))  # notochord
    trunk_pts = _blob(rng, trunk / 2, trunk * rng.uniform(0.3, 0.42), 0.06)
    cv.poly(trunk_pts + (tail_len * 0.4 + trunk * 0.2, 0), rng.uniform(0.8, 1.0))
    return 0.0


def _detritus(cv: _Canvas, rng: np.random.Generator, k: float) -> float:
    size = rng.uniform(9, 26) * k
    stretch = rng.uniform(1.0, 2.2)
    for _ in range(int(rng.integers(2, 7))):
        centre = rng.normal(0, 1, 2) * (size * 0.35 * stretch, size * 0.3)
        rx, ry = size * rng.uniform(0.25, 0.7), size * rng.uniform(0.2, 0.55)
        pts = _rotate(_blob(rng, rx, ry, rng.uniform(0.15, 0.35), harmonics=7), rng.uniform(0, 6.3))
        cv.poly(pts + centre, rng.uniform(0.3, 0.9))
    for _ in range(int(rng.integers(0, 14))):
        centre = rng.normal(0, 1, 2) * (size * 0.5 * stretch, size * 0.45)
        cv.dot(centre, rng.uniform(0.5, 1.6), rng.uniform(0.4, 0.9))
    return rng.uniform(0.5, 1.6)


def _trichodesmium(cv: _Canvas, rng: np.random.Generator, k: float) -> float:
    n = int(rng.integers(8, 26))
    length = rng.uniform(36, 78) * k
    spread = rng.uniform(0.03, 0.22)
    thickness = rng.uniform(1.5, 4.5) * k
    v = rng.uniform(0.6, 0.9)
    width = rng.uniform(0.8, 1.4)
    form = rng.choice(3, p=[0.5, 0.3, 0.2])  # bow-tie tuft, one-sided fan, radial puff
    if form == 2:
        for a in rng.uniform(0, 2 * np.pi, n + 6):
            start = rng.normal(0, thickness, 2) - np.array([math.cos(a), math.sin(a)]) * length / 4
            fil = _curve(start, a, length * rng.uniform(0.45, 0.6), rng.normal(0, 0.2), n=8)
            cv.line(fil, width, v * rng.uniform(0.85, 1.0))
        return 0.0
    one_sided = form == 1
    for _ in range(n):
        a = rng.normal(0, spread)
        ln = length * rng.uniform(0.65, 1.05)
        shift, y0 = rng.normal(0, length * 0.07), rng.normal(0, thickness)
        if one_sided:
            start = np.array([-length / 2 + shift, y0 * 0.4])
        else:  # filaments cross near the middle and splay at both ends
            start = np.array([shift, y0]) - np.array([math.cos(a), math.sin(a)]) * ln / 2
        fil = _curve(start, a, ln, rng.normal(0, 0.15), n=10)
        cv.line(fil, width, v * rng.uniform(0.85, 1.0))
    return 0.0


def _chaetognath(cv: _Canvas, rng: np.random.Generator, k: float) -> float:
    length = rng.uniform(44, 84) * k
    width = length * rng.uniform(0.045, 0.075)
    v = rng.uniform(0.45, 0.7)
    bend = rng.uniform(-0.35, 0.35)
    axis = _curve((-length / 2, 0), -bend / 2, length, bend, n=40)
    t = np.linspace(0, 1, len(axis))
    w = width * (0.35 + 0.65 * np.clip(t / 0.35, 0, 1) ** 0.7)
    head = t > 0.9
    w[head] *= np.sqrt(np.clip(1 - ((t[head] - 0.9) / 0.1) ** 2, 0.05, 1))
    # fins: lateral pair behind the middle and a spade-shaped tail fin
    fin_w = width * rng.uniform(0.6, 1.2)
    for lo, hi in ((0.12, 0.36), (0.42, 0.62)):
        i0, i1 = int(lo * 39), int(hi * 39)
        for sign in (-1, 1):
            out = np.array([0.0, sign * fin_w])
            i_a, i_b = i0 + (i1 - i0) // 4, i1 - (i1 - i0) // 3
            fin = [axis[i0], axis[i_a] + out * 1.1, axis[i_b] + out, axis[i1]]
            cv.poly(fin, v * 0.7)
    tail_dir = axis[0] - axis[2]
    tail_dir /= np.linalg.norm(tail_dir)
    side = np.array([-tail_dir[1], tail_dir[0]])
    cv.poly(
        [axis[3] + side * fin_w, axis[0] + tail_dir * fin_w * 1.5, axis[3] - side * fin_w], v * 0.7
    )
    cv.poly(_ribbon(axis, w), v)
    cv.line(axis[4:34], 0.8, min(1.0, v * 1.4))  # gut
    # grasping spines around the head
    tip, fwd = axis[-1], axis[-1] - axis[-3]
    heading = math.atan2(fwd[1], fwd[0])
    for sign in (-1, 1):
        for j in range(int(rng.integers(3, 7))):
            a = heading + sign * (0.5 + 0.25 * j + rng.normal(0, 0.1))
            spine = _curve(tip - fwd * 0.5, a, width * rng.uniform(1.2, 2.4), -sign * 0.9, n=6)
            cv.line(spine, 0.7, min(1.0, v * 1.3))
    return 0.0


def _protist(cv: _Canvas, rng: np.random.Generator, k: float) -> float:
    r = rng.uniform(9, 19) * k
    cell = _blob(rng, r, r * rng.uniform(0.8, 1.0), 0.04)
    if rng.random() < 0.3:
        wig = (rng.uniform(0.3, 0.8), rng.uniform(1, 2.5), rng.uniform(0, 2 * np.pi))
        flag = _curve((r * 0.9, 0), 0, r * rng.uniform(1.0, 2.2), 0, wiggle=wig)
        cv.line(flag, 0.7, rng.uniform(0.5, 0.8))
    cv.poly(cell, rng.uniform(0.12, 0.3))
    for _ in range(int(rng.integers(0, 9))):
        c = rng.uniform(-0.6, 0.6, 2) * r
        cv.dot(c, rng.uniform(0.6, 1.8), rng.uniform(0.35, 0.6))
    cv.line(cell, rng.uniform(0.7, 1.3), rng.uniform(0.7, 0.95), closed=True)
    nucleus_r = r * rng.uniform(0.22, 0.4)
    centre = rng.uniform(-0.3, 0.3, 2) * r
    cv.poly(_blob(rng, nucleus_r, nucleus_r * rng.uniform(0.8, 1), 0.05, centre=centre), 0.9)
    if rng.random() < 0.5:
        cv.dot(centre, nucleus_r * 0.35, 1.0)
    return 0.0


def _medusa(cv: _Canvas, rng: np.random.Generator, k: float) -> float:
    bell_w = rng.uniform(18, 36) * k
    bell_h = bell_w * rng.uniform(0.45, 0.9)
    v = rng.uniform(0.35, 0.55)
    # tentacles first, trailing behind the bell (bell opening towards +x)
    n_tentacles = 0 if rng.random() < 0.15 else int(rng.integers(4, 12))
    for y in np.linspace(-0.45, 0.45, n_tentacles) * bell_w:
        wig = (rng.uniform(0.1, 0.5), rng.uniform(0.5, 1.8), rng.uniform(0, 2 * np.pi))
        ln = bell_w * rng.uniform(0.5, 1.5)
        tent = _curve((0, y), rng.normal(0, 0.25), ln, rng.normal(0, 0.4), n=20, wiggle=wig)
        cv.line(tent, rng.uniform(0.7, 1.1), v * rng.uniform(1.1, 1.6))
    t = np.linspace(-np.pi / 2, np.pi / 2, 40)
    dome = np.stack([-bell_h * np.cos(t), bell_w / 2 * np.sin(t)], axis=1)
    yy = np.linspace(bell_w / 2, -bell_w / 2, 20)
    sub = np.stack([-bell_h * 0.25 * (1 - (2 * yy / bell_w) ** 2), yy], axis=1)
    bell = np.vstack([dome, sub])
    cv.poly(bell, v)
    cv.line(dome, rng.uniform(0.9, 1.5), min(1.0, v * 1.8))
    mouth = _curve((-bell_h * 0.3, 0), rng.normal(0, 0.2), bell_h * rng.uniform(0.4, 0.8), 0, n=8)
    cv.poly(_ribbon(mouth, np.linspace(bell_w * 0.12, bell_w * 0.05, 8)), min(1.0, v * 1.6))
    return 0.0


def _fecal_pellet(cv: _Canvas, rng: np.random.Generator, k: float) -> float:
    length = rng.uniform(22, 62) * k
    width = min(rng.uniform(5, 11) * k, length / 2.5)
    axis = _curve((-length / 2, 0), 0, length - width, rng.uniform(-0.4, 0.4), n=16)
    axis += (width / 2, 0)
    v = rng.uniform(0.82, 1.0)
    cv.line(axis, width, v)
    for _ in range(int(rng.integers(0, 6))):
        p = axis[rng.integers(2, 14)] + rng.normal(0, width * 0.15, 2)
        cv.dot(p, rng.uniform(0.5, 1.2), v * 0.8)
    return rng.uniform(0.0, 0.3)


def _ctenophore(cv: _Canvas, rng: np.random.Generator, k: float) -> float:
    length = rng.uniform(30, 52) * k
    width = length * rng.uniform(0.55, 0.8)
    v = rng.uniform(0.75, 0.95)
    if rng.random() < 0.5:  # cydippid tentacles trailing from the aboral end
        for sign in (-1, 1):
            wig = (rng.uniform(0.2, 0.6), rng.uniform(0.5, 1.5), rng.uniform(0, 2 * np.pi))
            start = (-length * 0.3, sign * width * 0.25)
            tent = _curve(start, np.pi + sign * 0.3, length * rng.uniform(0.4, 1.0), 0, wiggle=wig)
            cv.line(tent, 0.9, v * 0.7)
    body = _blob(rng, length / 2, width / 2, 0.03)
    cv.poly(body, rng.uniform(0.12, 0.25))
    cv.line(body, 0.9, v * 0.7, closed=True)
    plate_len, spacing = rng.uniform(2.0, 3.5), rng.uniform(3.0, 4.5)
    for f in (-0.62, -0.2, 0.2, 0.62):
        x = np.linspace(-0.8, 0.8, 30) * length / 2
        row = np.stack([x, f * width / 2 * np.sqrt(1 - (2 * x / length) ** 2)], axis=1)
        cv.line(row, 0.7, v * 0.5)
        for xp in np.arange(-0.72 * length / 2, 0.75 * length / 2, spacing):
            yp = f * width / 2 * math.sqrt(1 - (2 * xp / length) ** 2)
            cv.line([(xp - 0.4, yp - plate_len / 2), (xp + 0.4, yp + plate_len / 2)], 1.4, v)
    cv.dot((length * 0.46, 0), rng.uniform(1.0, 1.8), v)  # mouth
    return 0.0


def _pteropod(cv: _Canvas, rng: np.random.Generator, k: float) -> float:
    radius = rng.uniform(7, 13) * k
    v = rng.uniform(0.75, 0.95)
    # wings (parapodia) spreading from the aperture side
    for sign in (-1, 1):
        wing_len = radius * rng.uniform(1.1, 2.0)
        a = sign * rng.uniform(0.3, 1.0)
        centre = np.array([radius * 0.7, sign * radius * 0.3])
        centre = centre + np.array([math.cos(a), math.sin(a)]) * wing_len / 2
        wing = _blob(rng, wing_len / 2, wing_len * rng.uniform(0.2, 0.35), 0.08)
        cv.poly(_rotate(wing, -a) + centre, rng.uniform(0.25, 0.45))
    cv.poly(_blob(rng, radius, radius * rng.uniform(0.85, 1.0), 0.03), v * 0.65)
    turns = rng.uniform(1.6, 2.8)
    theta = np.linspace(0, turns * 2 * np.pi, 80)
    r = radius * 0.92 * np.exp(-(turns * 2 * np.pi - theta) * rng.uniform(0.18, 0.28))
    phase = rng.uniform(0, 2 * np.pi)
    spiral = np.stack([r * np.cos(theta + phase), r * np.sin(theta + phase)], axis=1)
    cv.line(spiral, rng.uniform(0.9, 1.6), v)
    cv.line(_ellipse(radius, radius * 0.95), 0.9, v, closed=True)
    return 0.0


_DRAWERS: dict[str, Callable[[_Canvas, np.random.Generator, float], float]] = {
    "appendicularian": _appendicularian,
    "chaetognath": _chaetognath,
    "copepod": _copepod,
    "ctenophore": _ctenophore,
    "detritus": _detritus,
    "diatom_chain": _diatom_chain,
    "fecal_pellet": _fecal_pellet,
    "medusa": _medusa,
    "protist": _protist,
    "pteropod": _pteropod,
    "radiolarian": _radiolarian,
    "trichodesmium": _trichodesmium,
}


# --------------------------------------------------------------------------- rendering


def _classes(split: str) -> tuple[str, ...]:
    if split == "source":
        return SOURCE_CLASSES
    if split == "target":
        return TARGET_CLASSES
    raise ValueError(f"split must be 'source' or 'target', got {split!r}")


def make_image(split: str, class_name: str, index: int, seed: int = 0) -> Image.Image:
    """Render image ``index`` (0-based) of ``class_name`` in ``split``; mode "L".

    Depends only on (seed, split, class, index) through its own child generator.
    """
    if class_name not in _classes(split):
        raise ValueError(f"class {class_name!r} is not in split {split!r}")
    rng = np.random.default_rng([seed, SPLITS.index(split), ALL_CLASSES.index(class_name), index])
    look, s = _LOOKS[split], SUPERSAMPLE
    cv = _Canvas(angle=rng.uniform(0, 2 * np.pi), mirror=bool(rng.random() < 0.5))
    extra_blur = _DRAWERS[class_name](cv, rng, rng.uniform(*look.scale))

    # crop: object bounding box plus random margins, in whole final pixels
    x0, y0, x1, y1 = cv.image.getbbox() or (0, 0, s, s)
    box = [x0 // s, y0 // s, -(-x1 // s), -(-y1 // s)]
    margins = rng.integers(look.margin[0], look.margin[1] + 1, size=4)
    for axis in (0, 1):
        lo, hi = margins[axis], margins[axis + 2]
        side = box[axis + 2] - box[axis] + lo + hi
        if side < MIN_SIDE:  # too small: widen both margins
            extra = MIN_SIDE - side
            lo, hi = lo + extra // 2, hi + extra - extra // 2
        elif side > MAX_SIDE:  # too large: shrink margins (objects are sized to fit)
            cut = min(side - MAX_SIDE, lo + hi - 2)
            lo, hi = lo - cut // 2, hi - (cut - cut // 2)
        box[axis], box[axis + 2] = box[axis] - lo, box[axis + 2] + hi
    layer = cv.image.crop(tuple(b * s for b in box))  # outside the canvas reads as 0
    if rng.random() < 0.3:  # a few specks of dust in the field of view
        draw = ImageDraw.Draw(layer)
        for _ in range(int(rng.integers(1, 5))):
            (x, y), r = rng.uniform(0, 1, 2) * layer.size, rng.uniform(0.4, 1.2) * s
            draw.ellipse((x - r, y - r, x + r, y + r), fill=int(rng.integers(50, 160)))

    blur = rng.uniform(*look.blur) + extra_blur
    layer = layer.filter(ImageFilter.GaussianBlur(blur * s)).reduce(s)
    if max(layer.size) > MAX_SIDE:
        f = MAX_SIDE / max(layer.size)
        layer = layer.resize((round(layer.width * f), round(layer.height * f)), Image.LANCZOS)

    dark = np.asarray(layer, dtype=np.float64) / 255.0
    bg = rng.uniform(*look.background)
    h, w = dark.shape
    gx, gy = rng.normal(0, 2.0, 2)  # faint illumination gradient
    yy, xx = np.mgrid[0:h, 0:w]
    bg_field = bg + gx * (xx / w - 0.5) + gy * (yy / h - 0.5)
    contrast = rng.uniform(*look.contrast)
    if look.bright_objects:
        pixels = bg_field + (255 - bg_field) * dark * contrast
    else:
        pixels = bg_field * (1 - dark * contrast)
    pixels += rng.normal(0, rng.uniform(*look.noise), dark.shape)
    return Image.fromarray(np.clip(np.rint(pixels), 0, 255).astype(np.uint8))


def iter_demo_images(
    split: str, seed: int = 0, images_per_class: int | None = None
) -> Iterator[tuple[str, Image.Image]]:
    """Yield (archive member path, image) for split 'source' or 'target' in sorted order."""
    classes = _classes(split)
    n = IMAGES_PER_CLASS[split] if images_per_class is None else images_per_class
    ext = _LOOKS[split].fmt
    for name in classes:
        for i in range(n):
            yield f"{split}/{name}/{name}_{i + 1:04d}.{ext}", make_image(split, name, i, seed)


def encode_image(image: Image.Image, fmt: str) -> bytes:
    """Encode deterministically: JPEG (quality ``JPEG_QUALITY``) or PNG."""
    buf = io.BytesIO()
    if fmt == "jpg":
        image.save(buf, format="JPEG", quality=JPEG_QUALITY, optimize=True)
    else:
        image.save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def _write_zip(path: Path, members: Iterator[tuple[str, bytes]]) -> None:
    """Reproducible ZIP: sorted names, stored, fixed timestamps and permissions."""
    with (
        atomic_path(path) as temporary,
        zipfile.ZipFile(temporary, "w", compression=zipfile.ZIP_STORED) as zf,
    ):
        for name, data in sorted(members):
            info = zipfile.ZipInfo(name, date_time=ZIP_DATE_TIME)
            info.compress_type = zipfile.ZIP_STORED
            info.create_system = 3  # unix
            info.external_attr = 0o100644 << 16
            zf.writestr(info, data)


def write_demo_archives(
    out_dir: Path | str = "data/01_raw", seed: int = 0, images_per_class: int | None = None
) -> dict[str, Path]:
    """Write demo_source.zip and demo_target.zip; return {'source': path, 'target': path}."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {}
    for split in SPLITS:
        fmt = _LOOKS[split].fmt
        members = [
            (name, encode_image(img, fmt))
            for name, img in iter_demo_images(split, seed, images_per_class)
        ]
        paths[split] = out / ARCHIVE_NAMES[split]
        _write_zip(paths[split], iter(members))
    return paths


def main(argv: list[str] | None = None) -> None:
    """CLI entry point: write both archives and print their image counts and sizes."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="data/01_raw", help="output folder")
    parser.add_argument("--seed", type=int, default=0, help="random seed")
    args = parser.parse_args(argv)
    for split, path in write_demo_archives(args.out, args.seed).items():
        with zipfile.ZipFile(path) as zf:
            count = len(zf.namelist())
        size = path.stat().st_size
        print(f"{split}: {path} ({count} images, {size / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
