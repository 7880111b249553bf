"""Videos with known tracks: Fashion-MNIST items moving across a real photo, written with OpenCV.

``clip()`` writes the video and returns every item's box in every frame (pixels), so tests and
``bench/video.py`` can check tracks against ground truth. Items move in straight lines at their
own speed and may pause (``pause``: frames where an item stands still, to show keyframe thinning
keeps a stop), and an item can be hidden for a stretch of frames (``hidden``) to make a track gap.
Codecs: ``VP90`` (VP9) in ``.webm`` plays in browsers (the editor's timeline test); ``mp4v`` in
``.mp4`` is what most cameras' tools write. Both are in opencv-python-headless's FFmpeg.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

FOURCC = {".webm": "VP90", ".mp4": "mp4v", ".avi": "MJPG"}


@dataclass
class Mover:
    """One item: its 28x28 Fashion-MNIST picture scaled ``scale`` times, its class, a start and a
    velocity in pixels per frame, and the frames in which it is hidden."""

    picture: np.ndarray
    label: int
    start: tuple[float, float]
    velocity: tuple[float, float]
    scale: int = 3
    hidden: range = range(0)
    boxes: dict[int, tuple[int, int, int, int]] = field(default_factory=dict)  # frame -> x, y, w, h (pixels)


def background(size: tuple[int, int]) -> np.ndarray:
    """A real photo (scikit-image's coffee cup), darkened so the bright items stand out, as BGR."""
    import cv2
    from skimage import data

    photo = cv2.resize(np.asarray(data.coffee()), size, interpolation=cv2.INTER_AREA)
    return cv2.cvtColor((photo * 0.45).astype(np.uint8), cv2.COLOR_RGB2BGR)


def clip(path: Path, movers: list[Mover], *, frames: int = 50, fps: float = 25.0,
         size: tuple[int, int] = (320, 240)) -> list[Mover]:
    """Write ``frames`` frames to ``path`` (codec by suffix) and fill each mover's ``boxes``."""
    import cv2

    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*FOURCC[path.suffix]), fps, size)
    if not writer.isOpened():
        raise RuntimeError(f"OpenCV cannot write {path.suffix} here")
    base = background(size)
    try:
        for index in range(frames):
            frame = base.copy()
            for mover in movers:
                if index not in mover.hidden:
                    _paste(frame, mover, index)
            writer.write(frame)
    finally:
        writer.release()
    return movers


def _paste(frame: np.ndarray, mover: Mover, index: int) -> None:
    import cv2

    item = cv2.resize(mover.picture, None, fx=mover.scale, fy=mover.scale, interpolation=cv2.INTER_NEAREST)
    height, width = item.shape
    x = int(round(mover.start[0] + mover.velocity[0] * index))
    y = int(round(mover.start[1] + mover.velocity[1] * index))
    x = min(max(x, 0), frame.shape[1] - width)
    y = min(max(y, 0), frame.shape[0] - height)
    region = frame[y:y + height, x:x + width]
    lit = item > 20
    region[lit] = np.stack([item[lit]] * 3, axis=-1)
    ys, xs = np.nonzero(lit)
    mover.boxes[index] = (x + int(xs.min()), y + int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1))


def fashion_movers(classes: list[int], seed: int = 0, count: int = 2) -> list[Mover]:
    """``count`` items of ``classes`` (cycled) with distinct start corners and speeds."""
    from bench.fmnist import load

    images, labels = load("test")
    rng = np.random.default_rng(seed)
    movers = []
    for n in range(count):
        label = classes[n % len(classes)]
        picture = images[rng.choice(np.flatnonzero(labels == label))]
        start = (20.0 + 150 * (n % 2), 20.0 + 100 * (n // 2 % 2))
        velocity = (float(rng.uniform(1.0, 2.5)) * (1 if n % 2 == 0 else -0.5), float(rng.uniform(0.5, 1.5)))
        movers.append(Mover(picture, label, start, velocity))
    return movers
