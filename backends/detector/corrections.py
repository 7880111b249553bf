"""Corrections per image: the edits a labeler makes to turn a version's pre-labels into the
submitted annotation, the number a labeler feels (mAP is the number a model feels).

For one image, pre-labelled regions are matched one-to-one to annotated regions of any label, the
pair of highest IoU first, a pair counting only at ``MATCH_IOU`` or above. Then:

- a pre-label left unmatched is a **delete** (a false positive the labeler removes);
- an annotated region left unmatched is a **draw** (a miss the labeler draws by hand);
- a matched pair under ``EXACT_IOU`` is an **adjust** (the labeler drags its edges);
- a matched pair whose labels differ is a **relabel** (it can also be an adjust: two edits).

With no model at all every annotated region is a draw, which is the baseline a version must beat.
Invariants: ``edits = deletes + draws + adjusts + relabels``; the counts are over the same images
for every version compared, so per-image figures compare directly.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

MATCH_IOU = 0.5  # below this a pre-label does not stand for the annotated region: delete + draw
EXACT_IOU = 0.9  # at or above this a labeler leaves the edges as they are


@dataclass(frozen=True)
class Region:
    """A box as ``(x1, y1, x2, y2)`` in any consistent unit, and its label."""

    label: str
    box: tuple[float, float, float, float]


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


def image_corrections(predicted: list[Region], truth: list[Region], match_iou: float = MATCH_IOU,
                      exact_iou: float = EXACT_IOU) -> Corrections:
    """The edits from ``predicted`` to ``truth`` on one image (see the module docstring)."""
    pairs = sorted(((box_iou(p.box, t.box), i, j) for i, p in enumerate(predicted) for j, t in enumerate(truth)),
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


def total_corrections(images: list[tuple[list[Region], list[Region]]]) -> Corrections:
    """Summed over ``(predicted, truth)`` per image."""
    total = Corrections()
    for predicted, truth in images:
        total = total + image_corrections(predicted, truth)
    return total


def by_hand(truths: list[list[Region]]) -> Corrections:
    """Labeling with no model: every annotated region drawn."""
    return total_corrections([([], truth) for truth in truths])
