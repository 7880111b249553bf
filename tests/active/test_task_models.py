"""Task models against a label config that changed after training: no crash, no mislabeled rows."""

import numpy as np
import pytest
import torch
from PIL import Image

from backends.active import classifier
from backends.active.model import ActiveModel
from backends.active.report import Truth, blind_spots, task_loss
from backends.active.task_models import CLASSIFIER_FILE, ClassifierTaskModel, ImageOutputs
from backends.core.media import LoadedImage


def control(*names: str):
    choices = "".join(f'<Choice value="{n}"/>' for n in names)
    return ActiveModel(project_id=None, services=None, label_config=(
        f'<View><Image name="image" value="$image"/><Choices name="label" toName="image">{choices}</Choices></View>'
    )).control


def test_a_class_renamed_since_training_is_scored_without_a_pre_label(tmp_path):
    torch.manual_seed(0)
    classifier.save(classifier.TaskClassifier(2, "small_cnn"), tmp_path / CLASSIFIER_FILE, ["Dog", "Cat"], 16)
    images = [LoadedImage(Image.new("RGB", (20, 20), (i * 60, 0, 0)), "", f"img{i}") for i in range(4)]
    renamed = ClassifierTaskModel("active-v1", tmp_path, control("Canine", "Cat"))
    assert renamed.class_names == ["Dog", "Cat"], "probs' columns are the model's classes, not the config's"
    outputs = renamed.outputs(images)
    assert all(out.probs.shape == (2,) for out in outputs)
    for out in outputs:
        top = renamed.class_names[int(out.probs.argmax())]
        assert (out.regions == []) == (top == "Dog"), "a pre-label only for classes the config still has"


def test_the_report_reads_probs_by_the_model_classes_and_stays_json():
    out = ImageOutputs(embedding=np.zeros(2), regions=[], probs=np.array([0.9, 0.1]))
    assert task_loss(out, Truth(1, "Cat"), ["Dog", "Cat"]) == np.float64(-np.log(0.1))
    unknown = task_loss(out, Truth(2, "Bird"), ["Dog", "Cat"])  # a class added to the config since training
    assert np.isfinite(unknown) and unknown > 20
    report = blind_spots([out, out], [Truth(1, "Dog"), Truth(2, "Bird")], ["Dog", "Cat"], "active-v1", top=5)
    assert [row["task"] for row in report["highest_loss_tasks"]] == [2]  # task 1: right, so no blind spot
    assert report["per_class"]["Bird"]["recall"] == 0.0


def test_retraining_after_a_config_change_keeps_each_class_row_by_name():
    torch.manual_seed(0)
    model = classifier.TaskClassifier(3, "small_cnn")
    old = model.fc.weight.detach().clone()
    model.with_classes(["a", "b", "c"], ["c", "a", "new"])
    assert torch.equal(model.fc.weight[0], old[2]) and torch.equal(model.fc.weight[1], old[0])
    assert not any(torch.equal(model.fc.weight[2], row) for row in old), "a new class starts fresh"
    same = model.fc
    assert model.with_classes(["x", "y", "z"], ["x", "y", "z"]).fc is same


def test_augmentation_keeps_the_images_device():
    # Training with ACTIVE_DEVICE=cuda crashed in augment(): the flip draws (a CPU generator, for
    # reproducibility) stayed on the CPU. The meta device stands in for a GPU on a CPU-only machine.
    images = torch.zeros(4, 1, 28, 28, device="meta")
    assert classifier.augment(images, torch.Generator().manual_seed(0)).device == images.device


def test_a_wider_small_cnn_is_saved_and_loaded_at_its_width(tmp_path):
    torch.manual_seed(0)
    wide = classifier.TaskClassifier(3, "small_cnn", in_channels=1, width=2).eval()
    assert wide.backbone.channels == [32, 64, 128]
    classifier.save(wide, tmp_path / CLASSIFIER_FILE, ["a", "b", "c"], 28)
    loaded, names, _ = classifier.load(tmp_path / CLASSIFIER_FILE)
    x = torch.randn(2, 1, 28, 28)
    assert loaded.width == 2 and torch.equal(loaded(x)[0], wide(x)[0])
    with pytest.raises(ValueError, match="only small_cnn"):
        classifier.TaskClassifier(3, "resnet18", width=2)
