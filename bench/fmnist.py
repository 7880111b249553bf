"""Fashion-MNIST, offline: Debian's ``dataset-fashion-mnist`` package, and a detection set built from it.

``load()`` returns (images uint8 [N, 28, 28], labels [N]) for ``train`` or ``test``, fetching the
.deb with ``apt-get download`` into ``bench/.cache`` the first time. ``canvases()`` composes items
onto larger canvases and returns each canvas with its exact boxes (the tight box of the item's
non-zero pixels), so detection benchmarks run on real images with known ground truth;
``placed_items()`` gives each item's mask and (optionally rotated) rectangle too, for masks,
keypoints, classes and rotated boxes.
"""

from __future__ import annotations

import fcntl
import gzip
import math
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

CACHE = Path(__file__).resolve().parent / ".cache"
NAMES = ["T-shirt", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]


def _dataset_dir() -> Path:
    root = CACHE / "fashion-mnist"
    found = list(root.rglob("train-images-idx3-ubyte*"))
    if found:
        return found[0].parent
    CACHE.mkdir(parents=True, exist_ok=True)
    # Test workers (pytest-xdist) and parallel benchmark seeds may all arrive here on a fresh clone:
    # one downloads and unpacks into a scratch folder renamed into place, the others wait for it.
    with open(CACHE / ".fashion-mnist.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not root.exists():
            scratch = Path(tempfile.mkdtemp(dir=CACHE, prefix=".fashion-mnist-"))
            subprocess.run(["apt-get", "download", "dataset-fashion-mnist"], cwd=scratch, check=True,
                           capture_output=True)
            deb = next(scratch.glob("dataset-fashion-mnist*.deb"))
            subprocess.run(["dpkg", "-x", str(deb), str(scratch / "unpacked")], check=True)
            (scratch / "unpacked").rename(root)
            shutil.rmtree(scratch)
    return next(root.rglob("train-images-idx3-ubyte*")).parent


def _read_idx(path: Path) -> np.ndarray:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as fh:
        data = fh.read()
    ndim = data[3]
    shape = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def load(split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    folder = _dataset_dir()
    prefix = "train" if split == "train" else "t10k"
    images = _read_idx(next(folder.glob(f"{prefix}-images-idx3-ubyte*")))
    labels = _read_idx(next(folder.glob(f"{prefix}-labels-idx1-ubyte*")))
    return images, labels


def canvases(images: np.ndarray, labels: np.ndarray, classes: list[int], n: int, *, size: int = 320,
             per_image: tuple[int, int] = (1, 4), scale: tuple[int, int] = (2, 4),
             seed: int = 0) -> list[tuple[Image.Image, list[tuple[int, float, float, float, float]]]]:
    """``n`` canvases; each box is (class index within ``classes``, x, y, w, h) in pixels."""
    rng = np.random.default_rng(seed)
    pool = np.flatnonzero(np.isin(labels, classes))
    out = []
    for _ in range(n):
        canvas = np.full((size, size), rng.integers(0, 60), dtype=np.uint8)
        placed: list[tuple[int, int, int, int]] = []
        boxes = []
        for _ in range(rng.integers(per_image[0], per_image[1] + 1)):
            idx = rng.choice(pool)
            factor = int(rng.integers(scale[0], scale[1] + 1))
            item = np.kron(images[idx], np.ones((factor, factor), dtype=np.uint8))
            ys, xs = np.nonzero(item > 20)
            if len(xs) == 0:
                continue
            item = item[ys.min():ys.max() + 1, xs.min():xs.max() + 1]
            h, w = item.shape
            for _attempt in range(20):
                x, y = int(rng.integers(0, size - w)), int(rng.integers(0, size - h))
                if all(x + w <= px or px + pw <= x or y + h <= py or py + ph <= y for px, py, pw, ph in placed):
                    region = canvas[y:y + h, x:x + w]
                    np.maximum(region, item, out=region)
                    placed.append((x, y, w, h))
                    boxes.append((classes.index(int(labels[idx])), float(x), float(y), float(w), float(h)))
                    break
        out.append((Image.fromarray(canvas).convert("RGB"), boxes))
    return out


@dataclass
class PlacedItem:
    """One item on a canvas: its class (index within ``classes``), its pixels (a boolean mask of
    the canvas) and the rectangle it was drawn in, as a Label Studio rectangle value (percent of
    the canvas; ``rotation`` in degrees clockwise about its top-left corner, as Label Studio's)."""

    label: int
    mask: np.ndarray
    rect: dict[str, float]


def placed_items(images: np.ndarray, labels: np.ndarray, classes: list[int], n: int, *, size: int = 320,
                 per_image: tuple[int, int] = (1, 4), scale: tuple[int, int] = (2, 4), rotate: bool = False,
                 seed: int = 0) -> list[tuple[Image.Image, list[PlacedItem]]]:
    """``n`` canvases with every item's exact mask and rectangle (rotated at random with
    ``rotate``): ground truth for masks, keypoints, classes and rotated boxes, not only boxes."""
    rng = np.random.default_rng(seed)
    pool = np.flatnonzero(np.isin(labels, classes))
    out = []
    for _ in range(n):
        canvas = np.full((size, size), rng.integers(0, 60), dtype=np.uint8)
        taken = np.zeros((size, size), dtype=bool)
        items: list[PlacedItem] = []
        for _ in range(rng.integers(per_image[0], per_image[1] + 1)):
            idx = rng.choice(pool)
            angle = float(rng.uniform(0, 180)) if rotate else 0.0
            placed = _place(_tight(images[idx], int(rng.integers(scale[0], scale[1] + 1))), angle, size, taken, rng)
            if placed is not None:
                pixels, rect = placed
                np.maximum(canvas, pixels, out=canvas)
                taken |= pixels > 0
                items.append(PlacedItem(classes.index(int(labels[idx])), pixels > ITEM_THRESHOLD, rect))
        out.append((Image.fromarray(canvas).convert("RGB"), items))
    return out


ITEM_THRESHOLD = 20  # an item's pixel (Fashion-MNIST's background is 0)


def _tight(item: np.ndarray, factor: int) -> np.ndarray:
    """The item scaled up by ``factor``, cropped to its pixels over ``ITEM_THRESHOLD``."""
    item = np.kron(item, np.ones((factor, factor), dtype=np.uint8))
    ys, xs = np.nonzero(item > ITEM_THRESHOLD)
    return item[ys.min():ys.max() + 1, xs.min():xs.max() + 1] if len(xs) else item[:0, :0]


def _place(item: np.ndarray, angle: float, size: int, taken: np.ndarray, rng: np.random.Generator
           ) -> tuple[np.ndarray, dict[str, float]] | None:
    """``item`` drawn on an empty canvas rotated by ``angle`` about its top-left corner, at a
    random spot inside the canvas that overlaps no item already there; None after 20 tries."""
    h, w = item.shape
    if not h:
        return None
    cos, sin = math.cos(math.radians(angle)), math.sin(math.radians(angle))
    corners = [(u * cos - v * sin, u * sin + v * cos) for u, v in ((0, 0), (w, 0), (w, h), (0, h))]
    lo_x, hi_x = min(c[0] for c in corners), max(c[0] for c in corners)
    lo_y, hi_y = min(c[1] for c in corners), max(c[1] for c in corners)
    if hi_x - lo_x >= size - 1 or hi_y - lo_y >= size - 1:
        return None
    for _attempt in range(20):
        x0 = float(rng.uniform(-lo_x, size - 1 - hi_x))
        y0 = float(rng.uniform(-lo_y, size - 1 - hi_y))
        # PIL's AFFINE maps each canvas pixel back into the item: the inverse rotation
        data = (cos, sin, -(cos * x0 + sin * y0), -sin, cos, sin * x0 - cos * y0)
        pixels = np.asarray(Image.fromarray(item).transform((size, size), Image.Transform.AFFINE, data,
                                                            resample=Image.Resampling.NEAREST))
        if not (taken & (pixels > 0)).any():
            return pixels, {"x": 100 * x0 / size, "y": 100 * y0 / size, "width": 100 * w / size,
                            "height": 100 * h / size, "rotation": angle}
    return None
