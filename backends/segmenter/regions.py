"""Masks to Label Studio regions: ``BrushLabels`` (RLE, byte-identical to label-studio-sdk's; see
``rle.py``) and ``PolygonLabels`` (the largest outer contour, simplified with Douglas-Peucker), both
in percent of the original image."""

from __future__ import annotations

import uuid
from typing import Any

import cv2
import numpy as np

from backends.core.rle import mask2rle


def brush_region(mask: np.ndarray, from_name: str, to_name: str, label: str, score: float) -> dict[str, Any]:
    height, width = mask.shape
    return {
        "id": uuid.uuid4().hex[:10], "from_name": from_name, "to_name": to_name, "type": "brushlabels",
        "original_width": width, "original_height": height, "image_rotation": 0,
        "value": {"format": "rle", "rle": mask2rle(mask.astype(np.uint8) * 255), "brushlabels": [label]},
        "score": round(float(score), 4), "readonly": False,
    }


def polygon_points(mask: np.ndarray, tolerance_px: float) -> list[list[float]]:
    """Outline of the largest connected part of ``mask``, in percent; [] if nothing is left."""
    height, width = mask.shape
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    if not contours:
        return []
    contour = max(contours, key=cv2.contourArea)
    if tolerance_px > 0:
        contour = cv2.approxPolyDP(contour, tolerance_px, closed=True)
    points = contour.reshape(-1, 2)
    if len(points) < 3:
        return []
    return [[round(100 * float(x) / width, 4), round(100 * float(y) / height, 4)] for x, y in points]


def polygon_region(mask: np.ndarray, from_name: str, to_name: str, label: str, score: float,
                   tolerance_px: float) -> dict[str, Any] | None:
    points = polygon_points(mask, tolerance_px)
    if not points:
        return None
    height, width = mask.shape
    return {
        "id": uuid.uuid4().hex[:10], "from_name": from_name, "to_name": to_name, "type": "polygonlabels",
        "original_width": width, "original_height": height, "image_rotation": 0,
        "value": {"points": points, "closed": True, "polygonlabels": [label]}, "score": round(float(score), 4),
    }
