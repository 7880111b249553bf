"""The segmenter with a real (random-weight) vit_b: clicks, boxes, prefetch, errors."""

import base64
import io

import numpy as np
import pytest
from label_studio_sdk.converter.brush import decode_rle
from label_studio_sdk.label_interface import LabelInterface
from PIL import Image

from backends.core.errors import LabelConfigError, LabelLoopError
from backends.core.journal import Event
from backends.core.services import Services
from backends.core.settings import CoreSettings
from backends.segmenter import model as segmenter_model
from backends.segmenter.model import SegmenterModel

CONFIG = ('<View><Image name="image" value="$image"/>'
          '<BrushLabels name="brush" toName="image"><Label value="Cat"/><Label value="Dog"/></BrushLabels>'
          '<PolygonLabels name="poly" toName="image"><Label value="Cat"/></PolygonLabels>'
          '<KeyPointLabels name="kp" toName="image" smart="true"><Label value="Cat"/><Label value="Dog"/></KeyPointLabels>'
          '<RectangleLabels name="rect" toName="image" smart="true"><Label value="Cat"/><Label value="Dog"/></RectangleLabels>'
          '</View>')


def image_uri(seed, size=(96, 64)):
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


@pytest.fixture(scope="module")
def services(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setenv("SAM_ALLOW_RANDOM", "1")
    mp.setenv("SAM_PREFETCH_ON_OPEN", "0")
    segmenter_model.env_settings.cache_clear()
    yield Services.from_settings(CoreSettings(DATA_DIR=tmp_path_factory.mktemp("seg")))
    mp.undo()
    segmenter_model.env_settings.cache_clear()


def seg(services, config=CONFIG):
    return SegmenterModel(project_id=1, label_config=config, services=services)


def click(x, y, label="Cat", positive=True):
    return {"type": "keypointlabels", "to_name": "image", "from_name": "kp", "is_positive": positive,
            "original_width": 96, "original_height": 64, "value": {"x": x, "y": y, "keypointlabels": [label]}}


TASK = {"id": 1, "data": {"image": image_uri(1)}}


def test_click_returns_brush_and_polygon_of_the_image_size_and_second_click_is_cached(services):
    model = seg(services)
    runs = model.engine.encoder_runs
    (prediction,) = model.predict([TASK], context={"result": [click(50, 50)]})
    assert model.engine.encoder_runs == runs + 1
    brush = next(r for r in prediction["result"] if r["type"] == "brushlabels")
    mask = decode_rle(brush["value"]["rle"]).reshape(64, 96, 4)[:, :, 3]
    assert mask.shape == (64, 96) and brush["value"]["brushlabels"] == ["Cat"]
    assert 0 < np.count_nonzero(mask) < mask.size, "a mask, not an empty or a full frame"
    assert mask[32, 48] > 0, "the clicked pixel (50 %, 50 %) is in its own mask"
    assert LabelInterface(CONFIG).validate_prediction({"result": [r for r in prediction["result"] if r["type"] == "polygonlabels"],
                                                       "model_version": "x", "score": 0.5})
    (again,) = seg(services).predict([TASK], context={"result": [click(20, 30), click(60, 40, positive=False)]})
    assert model.engine.encoder_runs == runs + 1, "a second click on the same image must not run the encoder"
    assert again["result"]
    # Random weights predict IoUs outside [0, 1]; Label Studio must still get a score it can show.
    assert all(0.0 <= r["score"] <= 1.0 for p in (prediction, again) for r in p["result"])
    assert 0.0 <= prediction["score"] <= 1.0


def test_boxes_become_masks_without_a_new_encoder_run(services):
    """The image is embedded here, by a click, not by whichever test ran before."""
    model = seg(services)
    task_image = {"id": 3, "data": {"image": image_uri(3)}}
    model.predict([task_image], context={"result": [click(50, 50)]})
    runs = model.engine.encoder_runs
    box = {"type": "rectanglelabels", "from_name": "label", "to_name": "image",
           "value": {"x": 10, "y": 10, "width": 50, "height": 60, "rectanglelabels": ["Dog"]}}
    task = {**task_image, "predictions": [{"result": [box], "model_version": "detector-v1"}]}
    (prediction,) = model.predict([task])
    assert [r["type"] for r in prediction["result"]] == ["brushlabels"], "Dog has no polygon label"
    assert prediction["result"][0]["value"]["brushlabels"] == ["Dog"]
    assert model.engine.encoder_runs == runs


def test_prefetch_job_fills_the_cache_then_the_click_is_instant(services):
    model = seg(services)
    other = {"id": 2, "data": {"image": image_uri(2)}}

    class Job:
        def check_cancelled(self):
            pass

        def progress(self, **kw):
            pass

    result = model.run_job("prefetch", [Event(1, "TASKS_CREATED", {"tasks": [other]}, 0.0)], Job())
    assert result == {"embedded": 1, "failed": 0, "tasks": 1}
    runs = model.engine.encoder_runs
    seg(services).predict([other], context={"result": [click(50, 50)]})
    assert model.engine.encoder_runs == runs


def test_bad_contexts_and_configs(services):
    model = seg(services)
    assert model.predict([TASK], context={"result": []})[0]["result"] == []
    with pytest.raises(LabelLoopError, match="outside"):
        model.predict([TASK], context={"result": [click(150, 50)]})
    with pytest.raises(LabelConfigError, match="'Horse' is not a label"):
        model.predict([TASK], context={"result": [click(50, 50, label="Horse")]})
    with pytest.raises(LabelConfigError, match="no <Image>"):
        seg(services, '<View><Text name="t" value="$t"/><Choices name="c" toName="t"><Choice value="a"/></Choices></View>').setup()
    with pytest.raises(LabelConfigError, match="BrushLabels"):
        seg(services, '<View><Image name="image" value="$image"/><Choices name="c" toName="image"><Choice value="a"/></Choices></View>').setup()


def test_with_two_images_the_clicked_one_is_segmented_and_only_its_controls_get_the_mask(services):
    config = ('<View><Image name="left" value="$left"/><Image name="right" value="$right"/>'
              '<BrushLabels name="left_mask" toName="left"><Label value="Cat"/></BrushLabels>'
              '<BrushLabels name="right_mask" toName="right"><Label value="Cat"/></BrushLabels>'
              '<KeyPointLabels name="kp" toName="right" smart="true"><Label value="Cat"/></KeyPointLabels></View>')
    task = {"id": 5, "data": {"left": image_uri(5), "right": image_uri(6, size=(48, 80))}}
    (prediction,) = seg(services, config).predict([task], context={"result": [{**click(50, 50), "to_name": "right"}]})
    (region,) = prediction["result"]
    assert (region["from_name"], region["to_name"]) == ("right_mask", "right")
    assert (region["original_width"], region["original_height"]) == (48, 80)  # the right image's pixels
    box = {"type": "rectanglelabels", "from_name": "label", "to_name": "left",
           "value": {"x": 10, "y": 10, "width": 50, "height": 60, "rectanglelabels": ["Cat"]}}
    (masks,) = seg(services, config).predict([{**task, "predictions": [{"result": [box]}]}])
    assert [(r["to_name"], r["original_width"]) for r in masks["result"]] == [("left", 96)]
