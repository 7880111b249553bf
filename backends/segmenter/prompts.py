"""The labeler's smart-tool regions (Label Studio's interactive context) to a SAM prompt.

Label Studio sends ``params.context.result``: smart ``keypointlabels`` (``is_positive`` false for a
negative click) and/or a smart ``rectanglelabels`` box, in percent of ``original_width/height``,
with the chosen label. Several points plus a box refine one object. With ``extreme_points="true"``
on the KeyPointLabels control, four positive clicks are read as the object's extremes: their
bounding box becomes the box prompt and the clicks stay as points.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from backends.core.errors import BadRequest

from .engine import Prompt


@dataclass
class ParsedContext:
    prompt: Prompt
    label: str | None
    to_name: str | None
    outside: int  # clicks outside the image (ignored)


def _number(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise BadRequest(f"context region {what} must be a number, got {value!r}")
    return float(value)


def parse_context(context: dict[str, Any], width: int, height: int, extreme_points: bool = False) -> ParsedContext:
    items = context.get("result")
    if not isinstance(items, list):
        raise BadRequest("params.context.result must be a list of regions")
    points: list[tuple[float, float]] = []
    labels: list[int] = []
    box = None
    label = to_name = None
    outside = 0
    for item in items:
        if not isinstance(item, dict) or not isinstance(item.get("value"), dict):
            raise BadRequest("each context region needs a 'value' object")
        value, kind = item["value"], item.get("type")
        to_name = to_name or item.get("to_name")
        if kind == "keypointlabels":
            x = _number(value.get("x"), "x") * width / 100
            y = _number(value.get("y"), "y") * height / 100
            if not (0 <= x <= width and 0 <= y <= height):
                outside += 1
                continue
            points.append((min(x, width - 1), min(y, height - 1)))
            labels.append(0 if item.get("is_positive") is False else 1)
            label = label or _first(value.get("keypointlabels"))
        elif kind == "rectanglelabels":
            x, y = _number(value.get("x"), "x") * width / 100, _number(value.get("y"), "y") * height / 100
            w, h = _number(value.get("width"), "width") * width / 100, _number(value.get("height"), "height") * height / 100
            x1, y1, x2, y2 = max(0, x), max(0, y), min(width, x + w), min(height, y + h)
            if x2 - x1 < 1 or y2 - y1 < 1:
                outside += 1
                continue
            box = (x1, y1, x2, y2)
            label = _first(value.get("rectanglelabels")) or label
    positives = [p for p, lab in zip(points, labels) if lab == 1]
    if extreme_points and box is None and len(positives) == 4:
        xs, ys = [p[0] for p in positives], [p[1] for p in positives]
        box = (min(xs), min(ys), max(xs), max(ys))
    return ParsedContext(Prompt(points, labels, box), label, to_name, outside)


def _first(values: Any) -> str | None:
    return values[0] if isinstance(values, list) and values and isinstance(values[0], str) else None
