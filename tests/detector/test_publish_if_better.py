"""DETECTOR_PUBLISH=if_better, the default: a fine-tune that scores worse than the version serving
is kept, not served, and says why."""

from __future__ import annotations

from backends.detector import training
from backends.detector.model import DetectorModel
from backends.detector.training import FineTuner
from tests.detector.conftest import data_uri, one_class_checkpoint, scene

CONFIG = ('<View><Image name="image" value="$image"/><RectangleLabels name="box" toName="image" '
          'model_score_threshold="0"><Label value="Widget"/></RectangleLabels></View>')
SMALL = {"epochs": 1, "imgsz": 64, "batch": 2}  # publish is left at its default


def annotated_tasks(n: int) -> list[dict]:
    tasks = []
    for i in range(n):
        png, boxes = scene(i)
        result = [{"from_name": "box", "to_name": "image", "type": "rectanglelabels", "original_width": 160,
                   "original_height": 120, "value": {"x": 100 * x / 160, "y": 100 * y / 120, "width": 100 * w / 160,
                                                     "height": 100 * h / 120, "rotation": 0, "rectanglelabels": ["Widget"]}}
                  for x, y, w, h in boxes]
        tasks.append({"id": i + 1, "data": {"image": data_uri(png)},
                      "annotations": [{"id": i + 1, "result": result, "was_cancelled": False}]})
    return tasks


def test_a_worse_fine_tune_is_kept_but_not_served(services, detector_env, monkeypatch):
    model = DetectorModel(project_id=3, label_config=CONFIG, services=services, extra_params=SMALL)
    assert model.settings.publish == "if_better"
    serving = model.import_version(path=str(one_class_checkpoint("detect", detector_env, {0: "Widget"})))
    monkeypatch.setattr(FineTuner, "_fetch_tasks", lambda self: annotated_tasks(6))
    real_evaluate = training.evaluate

    def current_scores_higher(weights, data_yaml, settings, names, **where):
        """Both models are evaluated for real on the same val split; the serving one gets +0.5
        mAP50-95, since random-init models on a CPU budget tie at ~0 and a tie publishes."""
        metrics = real_evaluate(weights, data_yaml, settings, names, **where)
        if serving.name in str(weights):
            metrics = metrics | {"map50_95": metrics["map50_95"] + 0.5}
        return metrics

    monkeypatch.setattr(training, "evaluate", current_scores_higher)
    outcome = FineTuner(model, None).run()

    assert outcome["serving"] is False and outcome["version"] == "detector-v2"
    assert outcome["decision"].startswith("mAP50-95 ") and "< current" in outcome["decision"]
    assert model.registry.current_name() == serving.name  # still serving the better one
    kept = next(v for v in model.registry.list() if v.name == "detector-v2")
    assert kept.metadata["decision"] == outcome["decision"] and kept.metadata["current_metrics"]["map50_95"] >= 0.5
    fresh = DetectorModel(project_id=3, label_config=CONFIG, services=services, extra_params=SMALL)
    prediction = fresh.predict([{"id": 9, "data": {"image": data_uri(scene(9)[0])}}])[0]
    assert prediction["model_version"] == serving.name
