"""The probe's shapes: how each is drawn, and which of them a viewer could take for another.

A POPE "No" question is only a fair test of hallucination if nothing in the image could be the object asked
about. Flat shapes have look-alikes that the names hide: a ring is the outline of a circle, a diamond is a square
turned 45 degrees, and a regular hexagon at 30-50 pixels is nearly a disc. Asking "Is there a ring?" next to a
drawn circle makes "Yes" a defensible answer and "No" a gold label a careful model may "miss".

Look-alikes are decided from pixels, not from names. ``silhouette_similarity`` compares two drawn masks the way
a viewer who ignores size, position, orientation and outline-vs-fill would: each mask has its holes filled (a
ring becomes its disc), is centred on its centroid and scaled to unit area, and the intersection-over-union is
maximised over rotations. On the shapes as drawn it splits cleanly: the pairs in ``LOOKALIKE_GROUPS`` score
>= 0.93 and every other pair <= 0.85 (``tests/lvlm/test_probe.py`` recomputes the whole table), so
``LOOKALIKE_IOU`` = 0.9 separates them. The probe never asks about a shape that is a look-alike of one drawn, and
never draws a look-alike of the shape a count or colour question names.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage

from biasaudit.errors import InvalidRequestError

SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "diamond", "star", "cross", "ring", "hexagon", "arrow")
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (40, 170, 60),
    "blue": (40, 80, 220),
    "yellow": (240, 220, 40),
    "purple": (140, 60, 180),
    "orange": (245, 140, 30),
    "white": (250, 250, 250),
    "black": (15, 15, 15),
}
LOOKALIKE_GROUPS: tuple[tuple[str, ...], ...] = (("circle", "ring", "hexagon"), ("square", "diamond"))
"""Shapes whose silhouettes match under rotation and scale (IoU >= ``LOOKALIKE_IOU``); verified from pixels."""
LOOKALIKE_IOU = 0.9
LOOKALIKES: dict[str, frozenset[str]] = {
    s: frozenset(t for group in LOOKALIKE_GROUPS if s in group for t in group if t != s) for s in SHAPES
}
"""shape -> the other shapes it could be taken for (empty for most)."""

_GRID = 64  # side of the canonical frame silhouettes are compared in
_REACH = 1.2  # the frame spans +-1.2 sqrt(area) around the centroid: every drawn shape fits


def draw_shape(draw: ImageDraw.ImageDraw, shape: str, box: list[int], rgb: tuple[int, int, int] | int) -> None:
    """Draw ``shape`` filling the square ``box`` [x0, y0, x1, y1] in colour ``rgb``."""
    x0, y0, x1, y1 = box
    s, cx, cy = x1 - x0, (x0 + x1) / 2, (y0 + y1) / 2
    if shape == "circle":
        draw.ellipse(box, fill=rgb)
    elif shape == "ring":
        draw.ellipse(box, outline=rgb, width=max(2, s // 5))
    elif shape == "square":
        draw.rectangle(box, fill=rgb)
    elif shape == "triangle":
        draw.polygon([(cx, y0), (x1, y1), (x0, y1)], fill=rgb)
    elif shape == "diamond":
        draw.polygon([(cx, y0), (x1, cy), (cx, y1), (x0, cy)], fill=rgb)
    elif shape == "hexagon":
        draw.regular_polygon((cx, cy, s / 2), 6, fill=rgb)
    elif shape == "cross":
        draw.rectangle([x0, cy - s / 6, x1, cy + s / 6], fill=rgb)
        draw.rectangle([cx - s / 6, y0, cx + s / 6, y1], fill=rgb)
    elif shape == "star":
        angles = -np.pi / 2 + np.arange(10) * np.pi / 5
        radii = np.where(np.arange(10) % 2 == 0, s / 2, 0.2 * s)
        draw.polygon([(cx + r * np.cos(a), cy + r * np.sin(a)) for r, a in zip(radii, angles, strict=True)], fill=rgb)
    elif shape == "arrow":
        xm, h = x0 + 0.55 * s, 0.18 * s
        points = [(x0, cy - h), (xm, cy - h), (xm, y0), (x1, cy), (xm, y1), (xm, cy + h), (x0, cy + h)]
        draw.polygon(points, fill=rgb)
    else:
        raise InvalidRequestError(f"unknown shape {shape!r}; known: {SHAPES}")


def shape_mask(shape: str, side: int = 96) -> np.ndarray:
    """``shape`` drawn alone in a ``side`` x ``side`` box (with a margin): boolean (side + 8, side + 8)."""
    image = Image.new("L", (side + 8, side + 8), 0)
    draw_shape(ImageDraw.Draw(image), shape, [4, 4, 4 + side, 4 + side], 255)
    return np.asarray(image) > 0


@dataclass(frozen=True)
class _Silhouette:
    filled: np.ndarray  # float mask, holes filled
    centre: tuple[float, float]  # (row, column) of the centroid
    scale: float  # sqrt(area) in pixels

    @classmethod
    def of(cls, mask: np.ndarray) -> _Silhouette:
        filled = ndimage.binary_fill_holes(np.asarray(mask, dtype=bool))
        if filled is None or not filled.any():
            raise InvalidRequestError("an empty mask has no silhouette")
        rows, cols = np.nonzero(filled)
        return cls(filled.astype(np.float64), (float(rows.mean()), float(cols.mean())), float(np.sqrt(len(rows))))

    def frame(self, angle: float) -> np.ndarray:
        """The silhouette rotated by ``angle`` (radians) in the canonical frame: boolean (_GRID, _GRID)."""
        u = np.linspace(-_REACH, _REACH, _GRID)
        across, down = np.meshgrid(u, u)
        c, s = np.cos(angle), np.sin(angle)
        cols = self.centre[1] + self.scale * (c * across - s * down)
        rows = self.centre[0] + self.scale * (s * across + c * down)
        return ndimage.map_coordinates(self.filled, [rows, cols], order=1, cval=0.0) > 0.5


def silhouette_similarity(mask_a: np.ndarray, mask_b: np.ndarray, *, step_degrees: float = 5.0) -> float:
    """IoU of two masks' silhouettes (holes filled, centred, unit area), maximised over rotations of ``mask_b``.

    1.0 for the same shape at any size, position and angle, or an outline against its filled form; see the
    module docstring for the values on the probe's shapes.
    """
    a, b = _Silhouette.of(mask_a), _Silhouette.of(mask_b)
    fixed = a.frame(0.0)
    best = 0.0
    for angle in np.deg2rad(np.arange(0.0, 360.0, step_degrees)):
        turned = b.frame(float(angle))
        union = np.logical_or(fixed, turned).sum()
        best = max(best, float(np.logical_and(fixed, turned).sum() / union) if union else 0.0)
    return best
