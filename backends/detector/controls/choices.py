from __future__ import annotations

import json
from typing import Any

from .base import ControlModel


class ChoicesModel(ControlModel):
    """Classification models: the top class (or, with choice="multiple", every class over the threshold)."""

    tag = "Choices"
    yolo_task = "classify"

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
