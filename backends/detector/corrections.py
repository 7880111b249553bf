"""Corrections per image: the edits a labeler makes to turn a version's pre-labels into the
submitted annotation, the number a labeler feels (mAP is the number a model feels).

For one image, pre-labelled regions are matched one-to-one to annotated regions of any label, the
pair of highest overlap first, a pair counting only at ``MATCH_IOU`` or above. Then:

- a pre-label left unmatched is a **delete** (a false positive the labeler removes);
- an annotated region left unmatched is a **draw** (a miss the labeler draws by hand);
- a matched pair under ``EXACT_IOU`` is an **adjust** (the labeler drags its edges);
- a matched pair whose labels differ is a **relabel** (it can also be an adjust: two edits).

Overlap is IoU for the shapes that have an area: :class:`Region` (an axis-aligned box) and
:class:`Area` (a polygon, brush mask or rotated box, rasterised on a ``GRID`` x ``GRID`` grid of the
image: IoU is unchanged by scaling either axis, so the grid need not keep the image's aspect; one
under ``MIN_CELLS`` cells across is compared by its bounding box). A
:class:`Point` (a keypoint) has none, so its overlap is a Gaussian of the distance, as COCO's OKS:
``exp(-d^2 / (2 POINT_SIGMA^2))`` in image fractions, 0.5 within 2.9 % of the image and 0.9 within
1.1 %. A :class:`WholeImage` (a class) always overlaps another fully: a wrong class is a relabel,
a missing one a draw. Shapes of different kinds never match.

With no model at all every annotated region is a draw, which is the baseline a version must beat.
Invariants: ``edits = deletes + draws + adjusts + relabels``; the counts are over the same images
for every version compared, so per-image figures compare directly.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from typing import Any, Protocol

import numpy as np
from PIL import Image, ImageDraw

MATCH_IOU = 0.5  # below this a pre-label does not stand for the annotated region: delete + draw
EXACT_IOU = 0.9  # at or above this a labeler leaves the edges as they are
GRID = 256  # an Area's raster, per image side
MIN_CELLS = 4  # an Area narrower than this many cells is compared by its bounding box: too coarse
POINT_SIGMA = 0.025  # a keypoint's tolerance, as a fraction of the image


class Shape(Protocol):
    @property
    def label(self) -> str: ...

    def overlap(self, other: Any) -> float:
        """IoU, or what stands for it (0..1); 0 for a shape of another kind."""


@dataclass(frozen=True)
class Region:
    """A box as ``(x1, y1, x2, y2)`` in any consistent unit, and its label."""

    label: str
    box: tuple[float, float, float, float]

    def overlap(self, other: Any) -> float:
        return box_iou(self.box, other.box) if isinstance(other, Region) else 0.0


@dataclass(frozen=True, eq=False)
class Area:
    """A region with an outline (0..1 of the image), as cells of a ``GRID`` raster and its box."""

    label: str
    cells: np.ndarray = field(repr=False)
    box: tuple[float, float, float, float]

    @classmethod
    def from_polygon(cls, label: str, points: list[tuple[float, float]]) -> Area:
        canvas = Image.new("1", (GRID, GRID))
        if len(points) >= 3:
            ImageDraw.Draw(canvas).polygon([(x * GRID, y * GRID) for x, y in points], fill=1)
        xs, ys = [p[0] for p in points] or [0.0], [p[1] for p in points] or [0.0]
        return cls(label, np.asarray(canvas, dtype=bool), (min(xs), min(ys), max(xs), max(ys)))

    @classmethod
    def from_mask(cls, label: str, mask: np.ndarray) -> Area:
        """From a mask of the image's pixels (any size)."""
        cells = np.asarray(Image.fromarray(mask.astype(bool)).resize((GRID, GRID), Image.Resampling.BOX), dtype=bool)
        rows, cols = np.nonzero(mask)
        h, w = mask.shape
        box = (cols.min() / w, rows.min() / h, (cols.max() + 1) / w, (rows.max() + 1) / h) if rows.size else (0.0, 0.0, 0.0, 0.0)
        return cls(label, cells, box)

    @property
    def coarse(self) -> bool:
        return min(self.box[2] - self.box[0], self.box[3] - self.box[1]) * GRID < MIN_CELLS

    def overlap(self, other: Any) -> float:
        if not isinstance(other, Area):
            return 0.0
        if self.coarse or other.coarse:
            return box_iou(self.box, other.box)
        return float((self.cells & other.cells).sum() / (self.cells | other.cells).sum())


@dataclass(frozen=True)
class Point:
    """A keypoint ``(x, y)`` (0..1 of the image) and its label (which point of the skeleton)."""

    label: str
    xy: tuple[float, float]

    def overlap(self, other: Any) -> float:
        if not isinstance(other, Point):
            return 0.0
        distance2 = (self.xy[0] - other.xy[0]) ** 2 + (self.xy[1] - other.xy[1]) ** 2
        return math.exp(-distance2 / (2 * POINT_SIGMA ** 2))


@dataclass(frozen=True)
class WholeImage:
    """A class of the whole image (``Choices``)."""

    label: str

    def overlap(self, other: Any) -> float:
        return 1.0 if isinstance(other, WholeImage) else 0.0



@dataclass
class Corrections:
    images: int = 0
    deletes: int = 0
    draws: int = 0
    adjusts: int = 0
    relabels: int = 0

    @property
    def edits(self) -> int:
        return self.deletes + self.draws + self.adjusts + self.relabels

    def __add__(self, other: Corrections) -> Corrections:
        return Corrections(*(getattr(self, f.name) + getattr(other, f.name) for f in fields(self)))

    def to_json(self) -> dict[str, Any]:
        per_image = round(self.edits / self.images, 4) if self.images else None
        return {**self.__dict__, "edits": self.edits, "per_image": per_image}


def box_iou(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> float:
    width = min(a[2], b[2]) - max(a[0], b[0])
    height = min(a[3], b[3]) - max(a[1], b[1])
    if width <= 0 or height <= 0:
        return 0.0
    inter = width * height
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def image_corrections(predicted: Sequence[Shape], truth: Sequence[Shape], match_iou: float = MATCH_IOU,
                      exact_iou: float = EXACT_IOU) -> Corrections:
    """The edits from ``predicted`` to ``truth`` on one image (see the module docstring)."""
    pairs = sorted(((p.overlap(t), i, j) for i, p in enumerate(predicted) for j, t in enumerate(truth)),
                   reverse=True)
    used_p: set[int] = set()
    used_t: set[int] = set()
    result = Corrections(images=1)
    for iou, i, j in pairs:
        if iou < match_iou:
            break
        if i in used_p or j in used_t:
            continue
        used_p.add(i)
        used_t.add(j)
        result.adjusts += iou < exact_iou
        result.relabels += predicted[i].label != truth[j].label
    result.deletes = len(predicted) - len(used_p)
    result.draws = len(truth) - len(used_t)
    return result


def total_corrections(images: Sequence[tuple[Sequence[Shape], Sequence[Shape]]]) -> Corrections:
    """Summed over ``(predicted, truth)`` per image."""
    total = Corrections()
    for predicted, truth in images:
        total = total + image_corrections(predicted, truth)
    return total


def by_hand(truths: Sequence[Sequence[Shape]]) -> Corrections:
    """Labeling with no model: every annotated region drawn."""
    return total_corrections([([], truth) for truth in truths])
