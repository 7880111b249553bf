"""The active backend's model class without a server: what it accepts and how /predict scores read."""

import numpy as np
import pytest

from backends.active.model import ActiveModel, env_settings
from backends.active.ranking import HEAD_SPAN, SET_BASED, build_pool, stable_scores
from backends.active.scoring import Scorer
from backends.active.settings import DEFAULT_STRATEGY, ActiveSettings
from backends.active.task_models import ImageOutputs
from backends.core.errors import LabelConfigError


def config(choices: str) -> str:
    return f'<View><Image name="image" value="$image"/><Choices name="label" toName="image">{choices}</Choices></View>'


def test_a_classification_config_needs_two_choices():
    assert ActiveModel(project_id=None, label_config=config('<Choice value="a"/><Choice value="b"/>'),
                       services=None).kind == "classification"
    with pytest.raises(LabelConfigError, match='<Choices name="label"> has 1 choice'):
        ActiveModel(project_id=None, label_config=config('<Choice value="a"/>'), services=None).setup()


def test_a_per_region_choices_is_a_box_attribute_and_a_multi_label_one_is_refused():
    boxes_with_colour = ('<View><Image name="image" value="$image"/><RectangleLabels name="box" toName="image">'
                         '<Label value="Car"/></RectangleLabels><Choices name="colour" toName="image" perRegion="true">'
                         '<Choice value="red"/><Choice value="blue"/></Choices></View>')
    assert ActiveModel(project_id=None, label_config=boxes_with_colour, services=None).kind == "detection"
    multi = config('<Choice value="a"/><Choice value="b"/>').replace('toName="image"', 'toName="image" choice="multiple"')
    with pytest.raises(LabelConfigError, match="multi-label"):
        ActiveModel(project_id=None, label_config=multi, services=None).setup()


BOXES = ('<View><Image name="image" value="$image"/><RectangleLabels name="box" toName="image">'
         '<Label value="Car"/></RectangleLabels></View>')


@pytest.mark.parametrize("label_config, kind", [(config('<Choice value="a"/><Choice value="b"/>'), "classification"),
                                                (BOXES, "detection")])
def test_without_a_strategy_setting_a_project_ranks_with_its_task_types_default(label_config, kind, monkeypatch):
    monkeypatch.delenv("ACTIVE_STRATEGY", raising=False)
    env_settings.cache_clear()
    model = ActiveModel(project_id=None, label_config=label_config, services=None)
    assert model.kind == kind and model.strategy == DEFAULT_STRATEGY[kind]
    monkeypatch.setenv("ACTIVE_STRATEGY", "coreset")  # a setting, server-wide or per project, wins
    env_settings.cache_clear()
    assert ActiveModel(project_id=None, label_config=label_config, services=None).strategy == "coreset"
    env_settings.cache_clear()
    with pytest.raises(ValueError, match="unknown strategy 'margn'"):
        ActiveSettings(strategy="margn")


@pytest.mark.parametrize("strategy", ["margin", "entropy", "least_confidence", "learning_loss", "coreset", "badge",
                                      "random"])
@pytest.mark.parametrize("kind", ["classification", "detection"])
def test_predict_scores_a_task_as_the_scoring_job_does(strategy, kind, monkeypatch):
    """/predict sees a few tasks; the scoring job the whole pool. A task's score must be the same in
    both, or a task pre-labeled through /predict sorts elsewhere than the queue would put it (and
    the next scoring rewrites it)."""
    if kind == "detection" and strategy == "learning_loss":
        pytest.skip("detection's learning_loss regresses on labeled images, which /predict does not have")
    monkeypatch.setenv("ACTIVE_STRATEGY", strategy)
    env_settings.cache_clear()
    rng = np.random.default_rng(3)
    outputs = [ImageOutputs(embedding=rng.normal(size=4), regions=[], predicted_loss=float(rng.gamma(2.0)),
                            probs=rng.dirichlet(np.ones(3)) if kind == "classification" else None,
                            box_confidences=[] if kind == "classification" else rng.random(2).tolist())
               for _ in range(12)]
    tasks = [{"id": 100 + i} for i in range(12)]
    model = ActiveModel(project_id=7, label_config=config('<Choice value="a"/><Choice value="b"/>'), services=None)
    scorer = Scorer(model, None)
    if strategy == "random":
        queue = scorer._random_scores(tasks)
    else:
        pool, _ = build_pool(outputs, [], strategy, aggregate=model.settings.aggregate, seed=model.settings.seed)
        queue = stable_scores(pool, strategy, queue_size=3)
    alone = model._task_scores(tasks[5:7], outputs[5:7])
    if strategy in SET_BASED:
        in_tail = [i for i in (5, 6) if queue[i] >= HEAD_SPAN]  # the chosen head needs the whole pool
        np.testing.assert_allclose(alone[[i - 5 for i in in_tail]], queue[in_tail])
    else:
        np.testing.assert_allclose(alone, queue[5:7])
    env_settings.cache_clear()


def test_detection_is_scored_at_the_detectors_threshold_and_inference_size(tmp_path, monkeypatch):
    """The queue ranks the boxes labelers see: a detector serving at 320 px with a 0.4 threshold is
    scored at 320 px and 0.4, not at the scoring model's own defaults (640, 0.25)."""
    from backends.core.registry import ModelRegistry
    from backends.detector.model import env_settings as detector_settings
    from backends.detector.weights import weights_of

    monkeypatch.setenv("DETECTOR_PREDICT_IMGSZ", "320")
    monkeypatch.setenv("DETECTOR_SCORE_THRESHOLD", "0.4")
    detector_settings.cache_clear()
    registry = ModelRegistry(tmp_path, "detector", 7)
    with registry.stage() as staged:
        weights_of(staged.path).write_bytes(b"weights")
        staged.publish({})

    class Services:
        def registry(self, backend: str, project: int) -> ModelRegistry:
            return ModelRegistry(tmp_path, backend, project)

    boxes = ('<View><Image name="image" value="$image"/><RectangleLabels name="box" toName="image">'
             '<Label value="Car"/></RectangleLabels></View>')
    task_model = ActiveModel(project_id=7, label_config=boxes, services=Services()).task_model()
    detector_settings.cache_clear()
    assert (task_model.imgsz, task_model.threshold, task_model.doubt_threshold) == (320, 0.4, 0.05)


def test_detection_doubts_reach_below_the_served_boxes(monkeypatch):
    """Pre-labels keep the detector's threshold; uncertainty reads every box down to
    ACTIVE_BOX_THRESHOLD, so an image a young model is unsure of is not "empty" (issue 27)."""
    import threading
    from types import SimpleNamespace

    import torch
    from PIL import Image

    from backends.active.ranking import box_uncertainty
    from backends.active.task_models import DetectorTaskModel
    from backends.core.media import LoadedImage
    from backends.detector import weights

    asked = {}

    def predict(images, conf, **_):
        asked["conf"] = conf
        boxes = SimpleNamespace(xyxy=torch.tensor([[0, 0, 10, 10], [5, 5, 20, 20], [1, 1, 4, 4]]),
                                conf=torch.tensor([0.6, 0.2, 0.06]), cls=torch.tensor([0, 0, 1]))
        return [SimpleNamespace(boxes=boxes) for _ in images]

    model = SimpleNamespace(predict=predict, embed=lambda images, **_: [torch.zeros(4) for _ in images])
    monkeypatch.setattr(weights, "load_model", lambda path: SimpleNamespace(model=model, names={0: "car", 1: "bus"},
                                                                           lock=threading.Lock()))
    control = ActiveModel(project_id=None, label_config=BOXES, services=None).control  # labels: Car only
    task_model = DetectorTaskModel("v1", "w.pt", control, threshold=0.4, doubt_threshold=0.05)
    (out,) = task_model.outputs([LoadedImage(Image.new("RGB", (40, 40)), "", "")])
    assert asked["conf"] == 0.05
    assert out.box_confidences == [pytest.approx(0.6)] and len(out.regions) == 1  # the served box only
    assert out.uncertain_boxes == [pytest.approx(0.6), pytest.approx(0.2)]  # the bus is no label of this project
    # an image whose only box is the 0.2 one: no longer "empty", the highest doubt of all
    assert box_uncertainty([0.2], "margin", "max") < box_uncertainty([], "margin", "max") == 1.0
    assert task_model.cache_name == "v1.doubt-0.05.jsonl"
