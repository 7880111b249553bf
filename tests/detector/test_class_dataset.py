"""Choices annotations -> a YOLO classify dataset (detector/class_dataset.py), read back by
ultralytics itself so the folder layout and the class order are the ones it trains on."""

from __future__ import annotations

from PIL import Image

from backends.detector.class_dataset import ClassReport, class_samples, write_class_dataset

NAMES = ["Cat", "Dog", "a/b"]  # a label no folder name could hold


def task(i, result):
    return {"id": i, "data": {"image": f"http://x/{i}.png"}, "annotations": [{"id": i, "result": result}]}


def choice(*labels, from_name="kind"):
    return {"from_name": from_name, "to_name": "image", "type": "choices", "value": {"choices": list(labels)}}


def test_one_class_per_image_and_every_drop_counted():
    tasks = [task(1, [choice("Dog")]), task(2, [choice("a/b")]), task(3, []),  # unanswered: not a sample
             task(4, [choice("Dog", "Cat")]), task(5, [choice("Horse")]), task(6, [choice("Cat", from_name="other")]),
             {"id": 7, "data": {}, "annotations": [{"id": 7, "result": [choice("Cat")]}]},
             {"id": 8, "data": {"image": "http://x/8.png"}, "annotations": []}]
    report = ClassReport()
    samples = class_samples(tasks, "kind", "image", {n: i for i, n in enumerate(NAMES)}, report)
    assert [(s.task_id, s.class_id) for s in samples] == [(1, 1), (2, 2)]
    assert report.to_json() == {"n_annotated": 2, "n_unanswered": 2, "skipped_tasks": {"7": "no data.image"},
                                "dropped": {"several choices": 1, "label not in the config": 1}}
    assert samples[0].label_lines() == "1\n"


def test_ultralytics_reads_the_classes_in_the_controls_order(tmp_path):
    from ultralytics.cfg import get_cfg
    from ultralytics.data.dataset import ClassificationDataset
    from ultralytics.data.utils import check_cls_dataset

    samples = class_samples([task(i, [choice(NAMES[i % 3])]) for i in range(1, 13)], "kind", "image",
                            {n: i for i, n in enumerate(NAMES)}, ClassReport())
    images = {s.task_id: Image.new("RGBA", (40, 30), (s.class_id * 80, 0, 0, 255)) for s in samples}
    del images[12]  # an image that did not load is left out
    root = write_class_dataset(tmp_path / "data", samples, images, NAMES, set(range(1, 10)), {10, 11, 12})
    assert check_cls_dataset(root)["names"] == dict(enumerate(NAMES))
    val = ClassificationDataset(str(root / "val"), get_cfg(overrides={"imgsz": 32}), prefix="val")
    assert sorted((f.rsplit("/", 1)[-1], c) for f, c, *_ in val.samples) == [("10.jpg", 1), ("11.jpg", 2)]
    assert len(list((root / "train").rglob("*.jpg"))) == 9
