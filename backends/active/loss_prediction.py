"""The loss-prediction module of Learning Loss for Active Learning (Yoo & Kweon, CVPR 2019).

Features of several backbone stages are global-average-pooled, each goes through FC(128) + ReLU,
the results are concatenated and a final FC predicts the target model's loss for that sample. It
is trained jointly with the task model by a margin ranking loss over pairs of samples in a batch
(only the *order* of losses is learnt, which is robust to the loss's scale shrinking as training
goes on), and after ``stop_epoch`` the gradient from it into the backbone is cut so it no longer
disturbs the task features (the paper's "detach after 120 of 200 epochs").
"""

from __future__ import annotations

import torch
from torch import nn


class LossPredictionHead(nn.Module):
    def __init__(self, channels: list[int], width: int = 128) -> None:
        super().__init__()
        self.branches = nn.ModuleList(nn.Sequential(nn.Linear(c, width), nn.ReLU()) for c in channels)
        self.out = nn.Linear(width * len(channels), 1)

    def forward(self, features: list[torch.Tensor], detach: bool = False) -> torch.Tensor:
        pooled = []
        for feature, branch in zip(features, self.branches):
            if detach:
                feature = feature.detach()
            pooled.append(branch(feature.mean(dim=(2, 3)) if feature.dim() == 4 else feature))
        return self.out(torch.cat(pooled, dim=1)).squeeze(1)


def margin_ranking_loss(predicted: torch.Tensor, target: torch.Tensor, margin: float = 1.0) -> torch.Tensor:
    """The paper's loss: split the batch into pairs (i, B-1-i); for each pair, the sample with the
    larger true loss must get a predicted loss larger by at least ``margin``."""
    if len(predicted) % 2:
        predicted, target = predicted[:-1], target[:-1]
    if len(predicted) == 0:
        return predicted.sum() * 0
    half = len(predicted) // 2
    pred_i, pred_j = predicted[:half], predicted.flip(0)[:half]
    target_i, target_j = target[:half], target.flip(0)[:half]
    sign = torch.sign(target_i - target_j).detach()
    return torch.clamp(margin - sign * (pred_i - pred_j), min=0).mean()
