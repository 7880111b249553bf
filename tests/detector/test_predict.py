"""predict for every control tag, validated by the SDK's LabelInterface; label mapping; errors."""

import pytest
from label_studio_sdk.label_interface import LabelInterface

from backends.core.errors import LabelConfigError
from backends.detector.model import DetectorModel
from tests.detector.conftest import data_uri, one_class_checkpoint, scene


def run(services, config, n_tasks=1, **extra):
    model = DetectorModel(project_id=1, label_config=config, services=services, extra_params=extra)
    tasks = [{"id": i, "data": {"image": data_uri(scene(i)[0])}} for i in range(n_tasks)]
    return model.predict(tasks)


def assert_valid(config, prediction, region_type):
    regions = [r for r in prediction["result"] if r["type"] == region_type]
    assert regions, f"no {region_type} region predicted"
    assert LabelInterface(config).validate_prediction(prediction), prediction["result"][:2]
    assert all(0 <= r["score"] <= 1 for r in regions)
    return regions


def test_rectangles_from_coco_names(services):
    config = ('<View><Image name="image" value="$image"/><RectangleLabels name="box" toName="image" '
              'model_score_threshold="0"><Label value="Person"/><Label value="vehicle" predicted_values="car,truck,bus"/>'
              '</RectangleLabels></View>')
    predictions = run(services, config, n_tasks=3)
    assert len(predictions) == 3
    for prediction in predictions:
        regions = assert_valid(config, prediction, "rectanglelabels")
        assert {r["value"]["rectanglelabels"][0] for r in regions} <= {"Person", "vehicle"}
        assert all((r["original_width"], r["original_height"]) == (160, 120) for r in regions)
        assert prediction["model_version"] == "detector-base-yolo11n"
        assert prediction["score"] == pytest.approx(sum(r["score"] for r in regions) / len(regions), abs=1e-3)


def test_polygons(services, detector_env):
    path = one_class_checkpoint("segment", detector_env, {0: "blob"})
    config = (f'<View><Image name="image" value="$image"/><PolygonLabels name="poly" toName="image" '
              f'model_path="{path}" model_score_threshold="0"><Label value="Blob"/></PolygonLabels></View>')
    regions = assert_valid(config, run(services, config)[0], "polygonlabels")
    assert all(len(r["value"]["points"]) >= 3 for r in regions)


def test_keypoints(services, detector_env):
    path = one_class_checkpoint("pose", detector_env, {0: "person"})
    config = (f'<View><Image name="image" value="$image"/><KeyPointLabels name="kp" toName="image" '
              f'model_path="{path}" model_score_threshold="0"><Label value="nose" model_index="0"/>'
              '<Label value="left_eye" model_index="1"/></KeyPointLabels></View>')
    regions = assert_valid(config, run(services, config)[0], "keypointlabels")
    assert {r["value"]["keypointlabels"][0] for r in regions} <= {"nose", "left_eye"}


def test_choices(services, detector_env):
    path = one_class_checkpoint("classify", detector_env, {0: "cat", 1: "dog", 2: "bird"})
    config = (f'<View><Image name="image" value="$image"/><Choices name="cls" toName="image" '
              f'model_path="{path}" model_score_threshold="0"><Choice value="Cat"/><Choice value="Dog"/></Choices></View>')
    (region,) = assert_valid(config, run(services, config)[0], "choices")
    assert region["value"]["choices"][0] in {"Cat", "Dog"}


def test_label_mismatch_lists_both_sides(services):
    config = ('<View><Image name="image" value="$image"/><RectangleLabels name="box" toName="image">'
              '<Label value="Gizmo"/><Label value="Widget"/></RectangleLabels></View>')
    with pytest.raises(LabelConfigError) as err:
        run(services, config)
    assert "Gizmo, Widget" in err.value.message and "person" in err.value.message


def test_skip_and_unsupported_configs(services):
    skipped = ('<View><Image name="image" value="$image"/><RectangleLabels name="box" toName="image" model_skip="true">'
               '<Label value="person"/></RectangleLabels></View>')
    with pytest.raises(LabelConfigError, match="no control"):
        DetectorModel(project_id=1, label_config=skipped, services=services).setup()
    text_only = '<View><Text name="t" value="$text"/><Choices name="c" toName="t"><Choice value="a"/></Choices></View>'
    with pytest.raises(LabelConfigError, match="no control"):
        DetectorModel(project_id=1, label_config=text_only, services=services).setup()


def test_smart_keypoints_and_an_untrained_brush_are_left_to_the_segmenter(services):
    from backends.stack.demo import DEMO_CONFIG

    model = DetectorModel(project_id=1, label_config=DEMO_CONFIG, services=services)
    assert [c.tag for c in model.controls] == ["RectangleLabels", "BrushLabels"]  # the brush trains on submit
    assert [p.control.tag for p in model.plans()] == ["RectangleLabels"]  # ... and paints once it has


def test_model_path_outside_allowed_dirs_is_refused(services):
    config = ('<View><Image name="image" value="$image"/><RectangleLabels name="box" toName="image" '
              'model_path="/etc/passwd"><Label value="person"/></RectangleLabels></View>')
    with pytest.raises(LabelConfigError, match="outside the model store"):
        run(services, config)


def test_threshold_filters_regions(services):
    config = ('<View><Image name="image" value="$image"/><RectangleLabels name="box" toName="image" '
              'model_score_threshold="0.99"><Label value="person"/></RectangleLabels></View>')
    prediction = run(services, config)[0]
    assert prediction["result"] == [] and prediction["score"] == 0.0


def test_warmup_runs_a_real_inference_so_the_first_predict_finds_the_predictor_built(services):
    """ultralytics builds its predictor (and imports torchvision) inside the first predict: a
    warm-up that only loads the weights leaves that to the first labeler's request."""
    from backends.detector.model import env_settings
    from backends.detector.weights import load_model

    loaded = load_model(env_settings().base_weights)
    loaded.model.predictor = None  # as after a fresh start (load_model is cached per process)
    DetectorModel.warmup(services)
    assert loaded.model.predictor is not None


def test_a_large_image_is_reduced_for_inference_and_its_boxes_stay_in_its_own_frame(services):
    """A 2720x1920 photo is inferred at half size (it is letterboxed to 640 anyway): its boxes, in
    percent, are those of the half-size image itself, and name the full image's size."""
    import base64
    import io

    from PIL import Image

    config = ('<View><Image name="image" value="$image"/><RectangleLabels name="box" toName="image" '
              'model_score_threshold="0"><Label value="Person"/><Label value="Car"/></RectangleLabels></View>')
    big = Image.open(io.BytesIO(scene(3)[0])).resize((2720, 1920), Image.NEAREST)

    def predicted(image):
        buf = io.BytesIO()
        image.save(buf, format="PNG")
        uri = "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()
        model = DetectorModel(project_id=1, label_config=config, services=services)
        return model.predict([{"id": 1, "data": {"image": uri}}])[0]["result"]

    full, half = predicted(big), predicted(big.reduce(2))
    assert full and [r["value"] for r in full] == [r["value"] for r in half]
    assert {(r["original_width"], r["original_height"]) for r in full} == {(2720, 1920)}
    assert {(r["original_width"], r["original_height"]) for r in half} == {(1360, 960)}
