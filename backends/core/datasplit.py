"""Deterministic train/val split by task id, shared by every backend that trains.

A task's side depends only on its id (and the seed), not on the order Label Studio returns tasks
in or on which other tasks exist: adding annotations never moves an existing task between train
and val, so successive versions are evaluated on comparable val sets.
"""

from __future__ import annotations

import hashlib


def split(task_ids: list[int], val_ratio: float, seed: int = 0) -> tuple[set[int], set[int]]:
    def fraction(task_id: int) -> float:
        digest = hashlib.sha1(f"{seed}:{task_id}".encode()).digest()
        return int.from_bytes(digest[:8], "big") / 2**64

    ranked = sorted(task_ids, key=fraction)
    val = {t for t in ranked if fraction(t) < val_ratio}
    if not val and ranked:
        val = {ranked[0]}
    train = set(task_ids) - val
    if not train:  # a single image: train and validate on it
        train = set(val)
    return train, val
