"""The active backend's task model for classification projects: an image classifier whose backbone
stages also feed a loss-prediction head (Yoo & Kweon 2019), trained jointly.

Plain PyTorch, no server: a notebook or the benchmark builds a :class:`TaskClassifier`, calls
:func:`train` and :func:`infer`, and gets what the acquisition strategies need (class
probabilities, embeddings, predicted losses) in one pass.

Backbones: ``resnet18`` (torchvision; what the backend uses on real images), ``resnet18_small``
(the same network with the CIFAR stem Yoo & Kweon used for 32x32 images: ImageNet's 7x7 stride-2
conv and max-pool shrink a 28-64 px image to a few pixels before the first block) and ``small_cnn``
(three conv blocks; what the CPU benchmark uses on 28x28 Fashion-MNIST, where a ResNet-18 would
spend hours per strategy). All expose several stages to the loss-prediction head, as the paper
does with ResNet's four blocks.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .loss_prediction import LossPredictionHead, margin_ranking_loss

BACKBONES = ("resnet18", "resnet18_small", "small_cnn")


class _SmallCNN(nn.Module):
    """Three conv-BN-ReLU-pool blocks (16, 32, 64 channels x ``width``): ~2 MFLOPs per 28x28 image at
    width 1, so the CPU benchmark can retrain hundreds of times; FLOPs grow with width squared."""

    def __init__(self, in_channels: int, width: int = 1) -> None:
        super().__init__()

        def block(cin: int, cout: int) -> nn.Sequential:
            return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(),
                                 nn.MaxPool2d(2))

        self.channels = [16 * width, 32 * width, 64 * width]
        cin = [in_channels, *self.channels[:-1]]
        self.stages = nn.ModuleList([block(i, o) for i, o in zip(cin, self.channels)])

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        features = []
        for stage in self.stages:
            x = stage(x)
            features.append(x)
        return features


class _ResNet18(nn.Module):
    """torchvision's ResNet-18 cut into a stem and four stages; ``small_input`` swaps the stem for
    the CIFAR one (3x3 stride-1 conv, no max-pool) so small images keep their resolution."""

    def __init__(self, in_channels: int, small_input: bool = False) -> None:
        super().__init__()
        from torchvision.models import resnet18

        net = resnet18(weights=None)
        if small_input:
            net.conv1, net.maxpool = nn.Conv2d(in_channels, 64, 3, 1, 1, bias=False), nn.Identity()
        elif in_channels != 3:
            net.conv1 = nn.Conv2d(in_channels, 64, 7, 2, 3, bias=False)
        self.stem = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool)
        self.stages = nn.ModuleList([net.layer1, net.layer2, net.layer3, net.layer4])
        self.channels = [64, 128, 256, 512]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.stem(x)
        features = []
        for stage in self.stages:
            x = stage(x)
            features.append(x)
        return features


class TaskClassifier(nn.Module):
    """Backbone -> pooled last stage (the embedding) -> linear classifier, plus a loss-prediction
    head over every stage. ``forward`` returns (logits, predicted loss, embedding)."""

    def __init__(self, num_classes: int, backbone: str = "resnet18", in_channels: int = 3, width: int = 1) -> None:
        super().__init__()
        if backbone not in BACKBONES:
            raise ValueError(f"unknown backbone {backbone!r}; choose one of {', '.join(BACKBONES)}")
        if width != 1 and backbone != "small_cnn":
            raise ValueError(f"width {width}: only small_cnn has a channel multiplier")
        self.backbone_name, self.width = backbone, width
        if backbone == "small_cnn":
            self.backbone: nn.Module = _SmallCNN(in_channels, width)
        else:
            self.backbone = _ResNet18(in_channels, small_input=backbone == "resnet18_small")
        self.fc = nn.Linear(self.backbone.channels[-1], num_classes)
        self.loss_head = LossPredictionHead(self.backbone.channels)

    def forward(self, x: torch.Tensor, detach_loss_head: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        features = self.backbone(x)
        embedding = features[-1].mean(dim=(2, 3))
        return self.fc(embedding), self.loss_head(features, detach=detach_loss_head), embedding

    def with_classes(self, old: list[str], new: list[str]) -> TaskClassifier:
        """Transfer learning's "swap the last layer" when the config's classes changed: keep the
        backbone and loss head, and the classifier rows of classes kept (matched by name, so a
        reordered or renamed config does not train the old rows under other names); new classes
        start fresh."""
        if old == new:
            return self
        fc = nn.Linear(self.fc.in_features, len(new))
        with torch.no_grad():
            for i, name in enumerate(new):
                if name in old:
                    fc.weight[i] = self.fc.weight[old.index(name)]
                    fc.bias[i] = self.fc.bias[old.index(name)]
        self.fc = fc
        return self


@dataclass
class TrainConfig:
    epochs: int = 10
    batch: int = 32
    lr: float = 0.01
    weight_decay: float = 5e-4
    #: weight of the loss-prediction objective (the paper's lambda).
    loss_weight: float = 1.0
    #: fraction of the epochs after which the loss head's gradient into the backbone is cut
    #: (the paper: after 120 of 200 epochs).
    detach_after: float = 0.6
    augment: bool = True
    seed: int = 0
    device: str = "cpu"


def train(model: TaskClassifier, images: torch.Tensor, labels: torch.Tensor, config: TrainConfig,
          on_epoch: Callable[[int, float], None] | None = None) -> TaskClassifier:
    """SGD with momentum on cross-entropy + ``loss_weight`` x the margin ranking loss of the
    loss-prediction head; the learning rate drops 10x at 80 % of the epochs (as the paper's schedule).

    ``images`` are float [N, C, H, W] already normalised (see :func:`to_tensor`).
    """
    generator = torch.Generator().manual_seed(config.seed)
    torch.manual_seed(config.seed)
    model.to(config.device).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=0.9, weight_decay=config.weight_decay)
    drop_at = max(1, math.ceil(0.8 * config.epochs))
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=[drop_at], gamma=0.1)
    detach_epoch = int(config.detach_after * config.epochs)
    n = len(images)
    for epoch in range(config.epochs):
        order = torch.randperm(n, generator=generator)
        total, seen = 0.0, 0
        for start in range(0, n, config.batch):
            index = order[start:start + config.batch]
            if len(index) < 2 and n >= 2:
                continue  # batch norm and the pairwise ranking loss need two samples
            x = images[index].to(config.device)
            y = labels[index].to(config.device)
            if config.augment:
                x = augment(x, generator)
            logits, predicted_loss, _ = model(x, detach_loss_head=epoch >= detach_epoch)
            per_sample = nn.functional.cross_entropy(logits, y, reduction="none")
            loss = per_sample.mean() + config.loss_weight * margin_ranking_loss(predicted_loss, per_sample.detach())
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * len(index)
            seen += len(index)
        scheduler.step()
        if on_epoch is not None:
            on_epoch(epoch, total / max(1, seen))
    return model.eval()


def augment(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random horizontal flip and a random shift of up to 1/8 of the side (pad and crop)."""
    # the generator is a CPU one (reproducible whatever the device): move its draws to the images'
    flip = (torch.rand(len(x), generator=generator) < 0.5).to(x.device)
    x = torch.where(flip[:, None, None, None], x.flip(3), x)
    pad = max(1, x.shape[-1] // 8)
    padded = nn.functional.pad(x, (pad, pad, pad, pad), mode="reflect" if pad < x.shape[-1] else "constant")
    dx, dy = (int(v) for v in torch.randint(0, 2 * pad + 1, (2,), generator=generator))
    return padded[..., dy:dy + x.shape[-2], dx:dx + x.shape[-1]]


@dataclass
class Outputs:
    """What the strategies need about a set of samples, from one forward pass."""

    probs: np.ndarray  # [N, C]
    embeddings: np.ndarray  # [N, D]
    predicted_loss: np.ndarray  # [N]


@torch.no_grad()
def infer(model: TaskClassifier, images: torch.Tensor, batch: int = 256, device: str = "cpu") -> Outputs:
    model.to(device).eval()
    probs, embeddings, losses = [], [], []
    for start in range(0, len(images), batch):
        logits, predicted_loss, embedding = model(images[start:start + batch].to(device))
        probs.append(torch.softmax(logits, 1).cpu())
        embeddings.append(embedding.cpu())
        losses.append(predicted_loss.cpu())
    if not probs:
        return Outputs(np.zeros((0, model.fc.out_features)), np.zeros((0, model.fc.in_features)), np.zeros(0))
    return Outputs(torch.cat(probs).numpy(), torch.cat(embeddings).numpy(), torch.cat(losses).numpy())


# -- images ----------------------------------------------------------------------------------------
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def to_tensor(images: list[Any], size: int) -> torch.Tensor:
    """PIL images -> normalised float tensor [N, 3, size, size] (ImageNet statistics, so real
    pretrained ResNet weights see what they were trained on)."""
    arrays = [np.asarray(img.convert("RGB").resize((size, size)), dtype=np.float32) / 255.0 for img in images]
    if not arrays:
        return torch.zeros((0, 3, size, size))
    x = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2)
    mean = torch.tensor(IMAGENET_MEAN)[None, :, None, None]
    std = torch.tensor(IMAGENET_STD)[None, :, None, None]
    return (x - mean) / std


# -- persistence -------------------------------------------------------------------------------------
def save(model: TaskClassifier, path: Path, names: list[str], imgsz: int) -> None:
    """A plain state dict plus what rebuilding needs: loadable with ``weights_only=True``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": model.state_dict(), "names": list(names), "backbone": model.backbone_name,
                "imgsz": int(imgsz), "in_channels": _in_channels(model), "width": model.width}, path)


def load(path: Path) -> tuple[TaskClassifier, list[str], int]:
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    model = TaskClassifier(len(checkpoint["names"]), checkpoint["backbone"], checkpoint["in_channels"],
                           checkpoint.get("width", 1))
    model.load_state_dict(checkpoint["state_dict"])
    return model.eval(), list(checkpoint["names"]), int(checkpoint["imgsz"])


def load_base(backbone: str, num_classes: int, weights: str | None) -> TaskClassifier:
    """The starting point of a project's first version: ``weights`` is empty (random init, what the
    offline tests use), a torchvision ResNet-18 state dict file (e.g. ImageNet weights), or one of
    our own checkpoints; the classifier layer is always replaced for the project's classes."""
    model = TaskClassifier(num_classes, backbone)
    if not weights:
        return model
    state = torch.load(weights, map_location="cpu", weights_only=True)
    state = state.get("state_dict", state)
    if any(k.startswith("backbone.") for k in state):
        own = {k: v for k, v in state.items() if not k.startswith("fc.")}
    else:  # a torchvision resnet18 state dict: map its names onto our stages
        own = {_torchvision_key(k): v for k, v in state.items() if not k.startswith("fc.")}
    # resnet18_small's 3x3 first conv cannot take ImageNet's 7x7 one: it starts fresh, the rest transfers
    shapes = model.state_dict()
    own = {k: v for k, v in own.items() if k not in shapes or shapes[k].shape == v.shape}
    missing, _ = model.load_state_dict(own, strict=False)
    fresh = "backbone.stem.0." if backbone == "resnet18_small" else None
    absent = [k for k in missing if k.startswith("backbone.") and not (fresh and k.startswith(fresh))]
    if absent:
        raise ValueError(f"{weights} does not hold {backbone} backbone weights (missing {absent[:3]} ...)")
    return model


def _torchvision_key(key: str) -> str:
    head, _, rest = key.partition(".")
    stem = {"conv1": "backbone.stem.0", "bn1": "backbone.stem.1"}
    if head in stem:
        return f"{stem[head]}.{rest}"
    if head.startswith("layer"):
        return f"backbone.stages.{int(head[5:]) - 1}.{rest}"
    return key


def _in_channels(model: TaskClassifier) -> int:
    first = next(m for m in model.backbone.modules() if isinstance(m, nn.Conv2d))
    return first.in_channels
