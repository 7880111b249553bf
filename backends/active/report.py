"""Blind spots: where the current model disagrees with what labelers submitted.

Per class precision and recall, and a per-task loss (model vs. annotation) whose highest values
become the "Model disagrees" Data Manager tab. The per-task detection error is also the target
the detection ``learning_loss`` variant regresses (see ``ranking.py``).

- Classification: loss = cross-entropy of the annotated class, ``-log p(label)``.
- Detection: boxes matched greedily per class at IoU >= 0.5; loss = 1 - F1 of the task's boxes
  (0 when the model and the labeler both found nothing).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .task_models import ImageOutputs

Box = tuple[float, float, float, float]  # x, y, w, h in percent


@dataclass
class Truth:
    """What a labeler submitted for one task: a class, or labeled boxes."""

    task_id: int
    label: str | None = None
    boxes: list[Box] = field(default_factory=list)
    box_labels: list[str] = field(default_factory=list)


def truth_from_task(task: dict[str, Any], control_name: str, kind: str) -> Truth | None:
    """The newest submitted (not skipped) annotation of ``task`` for the control, or None."""
    annotations = [a for a in task.get("annotations") or [] if isinstance(a, dict) and not a.get("was_cancelled")]
    if not annotations:
        return None
    items = [r for r in annotations[-1].get("result") or [] if isinstance(r, dict) and r.get("from_name") == control_name]
    truth = Truth(int(task["id"]))
    for item in items:
        value = item.get("value") or {}
        if kind == "classification" and value.get("choices"):
            truth.label = str(value["choices"][0])
        elif kind == "detection" and value.get("rectanglelabels"):
            if all(isinstance(value.get(k), (int, float)) for k in ("x", "y", "width", "height")):
                truth.boxes.append((value["x"], value["y"], value["width"], value["height"]))
                truth.box_labels.append(str(value["rectanglelabels"][0]))
    if kind == "classification" and truth.label is None:
        return None
    return truth


def iou(a: Box, b: Box) -> float:
    ix = max(0.0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0


def match_boxes(out: ImageOutputs, truth: Truth, threshold: float = 0.5) -> dict[str, list[int]]:
    """Per class [tp, fp, fn], predictions taken by confidence and matched greedily at IoU >= threshold."""
    counts: dict[str, list[int]] = {}
    used: set[int] = set()
    order: np.ndarray | list[int] = np.argsort(-np.asarray(out.box_confidences)) if out.box_confidences else []
    for p in order:
        label = out.box_labels[p]
        best, best_iou = None, threshold
        for g, (gbox, glabel) in enumerate(zip(truth.boxes, truth.box_labels)):
            if g not in used and glabel == label and (value := iou(out.boxes[p], gbox)) >= best_iou:
                best, best_iou = g, value
        row = counts.setdefault(label, [0, 0, 0])
        if best is None:
            row[1] += 1
        else:
            used.add(best)
            row[0] += 1
    for g, glabel in enumerate(truth.box_labels):
        if g not in used:
            counts.setdefault(glabel, [0, 0, 0])[2] += 1
    return counts


def detection_loss(out: ImageOutputs, truth: Truth) -> float:
    tp, fp, fn = (sum(c[i] for c in match_boxes(out, truth).values()) for i in range(3))
    if tp + fp + fn == 0:
        return 0.0
    return 1.0 - 2 * tp / (2 * tp + fp + fn)


def task_loss(out: ImageOutputs, truth: Truth, names: list[str]) -> float:
    """Cross-entropy of the annotation under the model (``names``: its classes, in ``probs``' order),
    or 1 - F1 for detection. A class the model does not know (added to the config since training)
    gets the loss of probability 1e-12, the most any task can have: finite, so the report stays JSON."""
    if out.probs is not None:
        p = out.probs[names.index(truth.label)] if truth.label in names else 0.0
        return float(-np.log(max(p, 1e-12)))
    return detection_loss(out, truth)


def blind_spots(outputs: list[ImageOutputs], truths: list[Truth], names: list[str], version: str,
                top: int) -> dict[str, Any]:
    """The report: per class precision/recall and the ``top`` tasks with the highest loss."""
    counts = {name: [0, 0, 0] for name in names}  # tp, fp, fn
    rows: list[dict[str, Any]] = []
    for out, truth in zip(outputs, truths):
        predicted: str | list[str]
        if out.probs is not None:
            assert truth.label is not None, "a classification truth has a label (truth_from_task keeps no other)"
            predicted = names[int(out.probs.argmax())]
            per_task = {predicted: [1, 0, 0]} if predicted == truth.label else {predicted: [0, 1, 0], truth.label: [0, 0, 1]}
        else:
            per_task = match_boxes(out, truth)
            predicted = sorted(set(out.box_labels))
        for label, (tp, fp, fn) in per_task.items():
            row = counts.setdefault(label, [0, 0, 0])
            row[0], row[1], row[2] = row[0] + tp, row[1] + fp, row[2] + fn
        if not any(fp or fn for _, fp, fn in per_task.values()):
            continue  # the model agrees with the labeler: not a blind spot, however unsure it was
        rows.append({"task": truth.task_id, "loss": round(task_loss(out, truth, names), 4),
                     "annotated": truth.label if out.probs is not None else sorted(set(truth.box_labels)),
                     "predicted": predicted})
    rows.sort(key=lambda r: (-r["loss"], r["task"]))
    per_class: dict[str, dict[str, Any]] = {}
    for label, (tp, fp, fn) in counts.items():
        per_class[label] = {"precision": round(tp / (tp + fp), 4) if tp + fp else None,
                            "recall": round(tp / (tp + fn), 4) if tp + fn else None, "support": tp + fn}
    weakest = sorted((name for name, c in per_class.items() if c["recall"] is not None),
                     key=lambda name: per_class[name]["recall"])
    return {"model_version": version, "n_annotated": len(truths), "per_class": per_class,
            "weakest_classes": weakest[:3], "highest_loss_tasks": rows[:top]}
