from __future__ import annotations

import json
from typing import Any

from backends.core.errors import LabelConfigError

from .base import ControlModel


class ChoicesModel(ControlModel):
    """Classification models: the top class (or, with choice="multiple", every class over the threshold).

    ``choice="multiple"`` needs ``model_path`` (a model of the user's own) or ``model_skip``: the
    detector trains this control on submit, and a YOLO classify model is single-label (softmax),
    so it would learn each annotation's first choice only. Refused at ``/setup``, where the user
    reads it, rather than found out in a job log."""

    tag = "Choices"
    yolo_task = "classify"

    def __init__(self, control: Any, default_threshold: float) -> None:
        super().__init__(control, default_threshold)
        if (control.attr or {}).get("choice") == "multiple" and not (self.model_path or self.skip):
            raise LabelConfigError(
                f'<Choices name="{self.from_name}" choice="multiple"> is multi-label; the detector trains one '
                'class per image (use choice="single" or "single-radio", add model_path="..." for weights of your '
                'own that are not trained, or model_skip="true")')

    def regions(self, result: Any, names: dict[int, str], width: int, height: int) -> list[dict[str, Any]]:
        if result.probs is None:
            return []
        mapping = self.label_map(names)
        probs = result.probs.data.tolist()
        ranked = sorted(((p, idx) for idx, p in enumerate(probs) if idx in mapping), reverse=True)
        if not ranked:
            return []
        multiple = (self.control.attr or {}).get("choice") == "multiple"
        chosen = [(p, i) for p, i in ranked if p >= self.threshold] if multiple else ranked[:1]
        if not chosen or chosen[0][0] < self.threshold:
            return []
        labels = [mapping[i] for _, i in chosen]
        result_item = json.loads(self.control.label(labels).to_json())
        result_item["score"] = round(float(chosen[0][0]), 4)
        return [result_item]
