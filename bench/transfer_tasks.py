"""(d) Fine-tuning from a base vs from scratch for segment, pose, classify and OBB weights.

Per YOLO task, as part (b) does for boxes: a base is pretrained on Fashion-MNIST classes 0-4
composed onto canvases, then fine-tuned on classes 5-9 with 25/50/100 labeled images, from the
base (``freeze`` 10, as the detector's jobs) and from scratch (nothing frozen), same epochs;
scored on a fixed test set of classes 5-9 by the task's own metric. Ground truth comes from the
items' pixels (``fmnist.placed_items``):

- segment: each item's mask traced to a ``PolygonLabels`` polygon (its largest outer contour);
- pose: each item's 4 extreme points (left, top, right, bottom) as ``KeyPointLabels`` with
  ``model_index`` 0-3, grouped by the item's ``RectangleLabels`` box; the pose model's one class
  is the same before and after, the items are new;
- classify: one item per canvas, its class a ``Choices`` answer;
- obb: items rotated at random, each a ``RectangleLabels model_obb="true"`` box with ``rotation``.

The annotations are Label Studio results, turned into datasets by the detector's own control
classes and dataset writers (``trainable.py``): the path a submit takes, without the server.

(e) for masks rides on the segment runs: corrections per test image (``corrections.py``, the
pre-labels made by the control's own ``regions``, at the serving threshold) for every fine-tuned
model, against labeling by hand; the segment task also runs at 200 labels. Every task reports
its corrections, not only masks.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from label_studio_sdk.label_interface import LabelInterface

from backends.detector.compared import predicted_shape, truth_shapes
from backends.detector.controls import control_model_for
from backends.detector.corrections import by_hand, total_corrections
from backends.detector.dataset import split
from backends.detector.settings import DetectorSettings
from backends.detector.trainable import trainable_for
from backends.detector.training import adapt_head, evaluate, fine_tune, save_checkpoint
from backends.detector.weights import load_model
from backends.segmenter.regions import polygon_points  # the largest outer contour, in percent
from bench import fmnist

SIZE = 320
KEYPOINTS = ("left", "top", "right", "bottom")
BASE_CLASSES, NEW_CLASSES = [0, 1, 2, 3, 4], [5, 6, 7, 8, 9]
ARCH = {"segment": "yolo11n-seg.yaml", "pose": "yolo11n-pose.yaml", "classify": "yolo11n-cls.yaml",
        "obb": "yolo11n-obb.yaml"}
METRIC = {"segment": "map50", "pose": "map50", "classify": "top1", "obb": "map50"}  # of masks, poses, classes, rotated boxes


def label_config(kind: str, names: list[str]) -> str:
    labels = "".join(f'<Label value="{n}"/>' for n in names)
    image = '<Image name="image" value="$image"/>'
    if kind == "segment":
        return f'<View>{image}<PolygonLabels name="mask" toName="image">{labels}</PolygonLabels></View>'
    if kind == "pose":
        points = "".join(f'<Label value="{p}" model_index="{i}"/>' for i, p in enumerate(KEYPOINTS))
        return (f'<View>{image}<RectangleLabels name="box" toName="image"><Label value="item"/></RectangleLabels>'
                f'<KeyPointLabels name="points" toName="image">{points}</KeyPointLabels></View>')
    if kind == "classify":
        return f'<View>{image}<Choices name="class" toName="image">' + "".join(
            f'<Choice value="{n}"/>' for n in names) + "</Choices></View>"
    return f'<View>{image}<RectangleLabels name="rotated" toName="image" model_obb="true">{labels}</RectangleLabels></View>'


def control(kind: str, names: list[str]) -> Any:
    """The detector's control model for ``kind``'s trained control in ``label_config``."""
    trained = {"segment": "mask", "pose": "points", "classify": "class", "obb": "rotated"}[kind]
    found = LabelInterface(label_config(kind, names)).get_control(trained)
    model_class = control_model_for(found)
    assert model_class is not None, trained
    return model_class(found, DetectorSettings().score_threshold)


def results(kind: str, items: list[fmnist.PlacedItem], names: list[str]) -> list[dict[str, Any]]:
    """One canvas's annotation, as Label Studio stores it."""
    def region(from_name: str, kind_: str, value: dict[str, Any]) -> dict[str, Any]:
        return {"from_name": from_name, "to_name": "image", "type": kind_, "original_width": SIZE,
                "original_height": SIZE, "value": value}

    out = []
    for item in items:
        if kind == "segment":
            out.append(region("mask", "polygonlabels", {"points": polygon_points(item.mask, 0.0),
                                                        "polygonlabels": [names[item.label]]}))
        elif kind == "pose":
            out.append(region("box", "rectanglelabels", {**box_of(item.mask), "rectanglelabels": ["item"]}))
            out.extend(region("points", "keypointlabels", {"x": x, "y": y, "width": 0.5, "keypointlabels": [p]})
                       for p, (x, y) in zip(KEYPOINTS, extreme_points(item.mask)))
        elif kind == "classify":
            out.append(region("class", "choices", {"choices": [names[item.label]]}))
        else:
            out.append(region("rotated", "rectanglelabels", {**item.rect, "rectanglelabels": [names[item.label]]}))
    return out


def box_of(mask: Any) -> dict[str, float]:
    import numpy as np

    ys, xs = np.nonzero(mask)
    return {"x": 100 * xs.min() / SIZE, "y": 100 * ys.min() / SIZE, "rotation": 0,
            "width": 100 * (xs.max() + 1 - xs.min()) / SIZE, "height": 100 * (ys.max() + 1 - ys.min()) / SIZE}


def extreme_points(mask: Any) -> list[tuple[float, float]]:
    """Left-, top-, right- and bottom-most pixel centres of the mask, in percent."""
    import numpy as np

    ys, xs = np.nonzero(mask)
    picks = [int(np.argmin(xs)), int(np.argmin(ys)), int(np.argmax(xs)), int(np.argmax(ys))]
    return [(100 * (xs[i] + 0.5) / SIZE, 100 * (ys[i] + 0.5) / SIZE) for i in picks]


def dataset(kind: str, root: Path, canvases: list[Any], names: list[str], val_ratio: float = 0.2) -> tuple[Path, Any]:
    """The YOLO dataset the detector's jobs would write for these annotated canvases, and its report."""
    model = control(kind, names)
    tasks = [{"id": i, "data": {"image": f"/data/upload/1/c{i}.png"},
              "annotations": [{"id": i, "result": results(kind, items, names)}]} for i, (_, items) in enumerate(canvases)]
    data = trainable_for(model).data(tasks, model, "image")
    images = {i: img for i, (img, _) in enumerate(canvases)}
    train, val = split(list(images), val_ratio, 0)
    return data.write(root, images, train, val), data


def start_checkpoint(kind: str, source: str, names: list[str], path: Path) -> Path:
    kpt = [len(KEYPOINTS), 3] if kind == "pose" else None
    model = adapt_head(load_model(source).model.model, names, kpt)
    return save_checkpoint(model, path, task=kind)


def canvases_for(kind: str, x: Any, y: Any, classes: list[int], n: int, seed: int) -> list[Any]:
    return fmnist.placed_items(x, y, classes, n, size=SIZE, per_image=(1, 1) if kind == "classify" else (1, 4),
                               rotate=kind == "obb", seed=seed)


def part_tasks(work: Path, quick: bool, kinds: list[str] | None = None, budgets: list[int] | None = None
               ) -> dict[str, Any]:
    x, y = fmnist.load("train")
    xt, yt = fmnist.load("test")
    n_base, base_epochs = (40, 2) if quick else (300, 12)
    epochs = 2 if quick else 12
    budgets = budgets or ([25] if quick else [25, 50, 100])
    out: dict[str, Any] = {}
    for kind in kinds or list(ARCH):
        found = one_task(work / kind, kind, (x, y), (xt, yt), n_base, base_epochs, epochs, budgets, quick)
        out[kind] = {"base_images": n_base, "base_epochs": base_epochs, "finetune_epochs": epochs,
                     "freeze_from_base": 10, "imgsz": SIZE, "quick": quick, **found}
        print(kind, out[kind])
    return out


def one_task(work: Path, kind: str, train_set: Any, test_set: Any, n_base: int, base_epochs: int, epochs: int,
             budgets: list[int], quick: bool) -> dict[str, Any]:
    names = [fmnist.NAMES[c] for c in NEW_CLASSES]
    base_names = [fmnist.NAMES[c] for c in BASE_CLASSES]
    settings = DetectorSettings(imgsz=SIZE, batch=16, epochs=base_epochs, freeze=0, patience=0, lr0=0.01)
    started = time.time()
    base_yaml, _ = dataset(kind, work / "base-data", canvases_for(kind, *train_set, BASE_CLASSES, n_base, 1), base_names)
    base = Path(fine_tune(start_checkpoint(kind, ARCH[kind], base_names, work / "scratch-base.pt"), base_yaml,
                          work / "base", settings).best)
    metric = METRIC[kind]
    base_score = evaluate(base, base_yaml, settings, base_names, workdir=work / "base", task=kind)[metric]
    test = canvases_for(kind, *test_set, NEW_CLASSES, 30 if quick else 120, 99)
    test_yaml, test_data = dataset(kind, work / "test-data", test, names, 0.999)
    hand = by_hand([truth_shapes(s, test_data) for s in test_data.samples]).to_json()  # one test set for every row
    rows = []
    for n in budgets + ([200] if kind == "segment" and not quick else []):  # (e) for masks: to 200
        data_yaml, data = dataset(kind, work / f"ft-{n}", canvases_for(kind, *train_set, NEW_CLASSES, n, 10 + n), names)
        row: dict[str, Any] = {"labeled_images": n, "dataset": data.report.to_json()}
        for label, source, freeze in (("from_base", str(base), 10), ("from_scratch", ARCH[kind], 0)):
            cfg = settings.model_copy(update={"epochs": epochs, "freeze": freeze})
            t0 = time.time()
            start = start_checkpoint(kind, source, names, work / f"{label}-{n}.pt")
            best = Path(fine_tune(start, data_yaml, work / f"{label}-{n}", cfg).best)
            row[f"{label}_{metric}"] = round(evaluate(best, test_yaml, cfg, names, workdir=work / f"{label}-{n}",
                                                      task=kind)[metric], 4)
            row[f"{label}_seconds"] = round(time.time() - t0, 1)
            row[f"{label}_corrections"] = corrections_on(best, kind, names, test, test_data)
        row["by_hand_corrections"] = hand
        row["from_base_over_by_hand"] = round(row["from_base_corrections"]["per_image"] / hand["per_image"], 3)
        rows.append(row)
        print(kind, row)
    return {"metric": metric, "weights": ARCH[kind], "base_score_on_own_classes": round(base_score, 4),
            "base_seconds": round(time.time() - started, 1), "test_images": len(test_data.samples), "rows": rows}


#: (e) the score thresholds swept: which one a version should serve is a question of how many
#: corrections its pre-labels cost, and the default (0.25) is only one answer
THRESHOLDS = (0.1, 0.2, 0.25, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8)


def at_threshold(scored: list[Any], threshold: float) -> Any:
    """Corrections of ``(scored predictions, truths)`` pairs when only scores >= threshold are shown."""
    return total_corrections([([p for p, s in predicted if s >= threshold], truth) for predicted, truth in scored])


def sweep(scored: list[Any]) -> dict[str, float | None]:
    """Corrections per image at each of ``THRESHOLDS``."""
    return {str(t): at_threshold(scored, t).to_json()["per_image"] for t in THRESHOLDS}


def corrections_on(weights: Path, kind: str, names: list[str], canvases: list[Any], data: Any) -> dict[str, Any]:
    """Corrections per image on the test canvases: ``weights``' pre-labels, as the control makes
    them for ``/predict``, against the annotations the dataset holds (the same ``truth_shapes``
    the detector's jobs compare with)."""
    from ultralytics import YOLO

    model, shown = YOLO(str(weights)), control(kind, names)
    serving, shown.threshold = shown.threshold, min(THRESHOLDS)  # one inference, filtered per threshold
    kwargs = {} if kind == "classify" else {"conf": shown.threshold, "imgsz": SIZE}
    scored = []
    for sample in data.samples:
        image = canvases[sample.task_id][0]
        (result,) = model.predict(image, verbose=False, **kwargs)
        regions = shown.regions(result, model.names, *image.size)
        scored.append(([(predicted_shape(r, kind), r.get("score", 1.0)) for r in regions], truth_shapes(sample, data)))
    return {**at_threshold(scored, serving).to_json(), "by_threshold": sweep(scored)}
