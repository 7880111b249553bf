"""Detection scenes: Fashion-MNIST items on real photos, with exact boxes and a rare class.

``bench/fmnist.py``'s ``canvases()`` puts 1-4 items at three scales on a flat grey background,
never touching. A detection team's images are busier: clutter behind the objects, objects that
overlap, sizes that vary continuously, and classes that are far from equally common (finding the
rare one is what teams ask an active-learning queue for). ``scenes()`` draws that:

- the background is a random square crop of one of the photos that ship inside scikit-image (no
  download), in grey, resized to the canvas;
- 1-6 items, each class drawn with the given weights (e.g. one class at 5 % of the objects);
- each item scaled so its longest side is 40-130 px, placed where it covers at most
  ``max_overlap`` of any earlier item's box (the later item is drawn on top: occlusion, as in
  photos); its box is the tight box of its own pixels, whatever covers it afterwards.

Boxes are (class index within ``classes``, x, y, w, h) in pixels, as ``canvases()`` returns them, so
``bench/detector.py``'s ``yolo_set`` writes either. Canvases are grey uint8 arrays (a 5,000-canvas
pool at 320 px is 0.5 GB; RGB PIL images would be three times that) made RGB when used.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import numpy as np
from PIL import Image

Box = tuple[int, float, float, float, float]
#: scikit-image's bundled photos (``skimage.data``; none needs a network)
PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "camera", "brick", "grass", "gravel", "immunohistochemistry",
          "hubble_deep_field", "moon", "retina", "clock", "coins")
ITEM_THRESHOLD = 20  # an item's pixel (Fashion-MNIST's background is 0)


@lru_cache(maxsize=1)
def photos() -> tuple[np.ndarray, ...]:
    from skimage import data

    grey = []
    for name in PHOTOS:
        image = np.asarray(getattr(data, name)())
        if image.ndim == 3:
            image = (image[..., :3].astype(np.float32) @ np.array([0.299, 0.587, 0.114])).astype(np.uint8)
        grey.append(image)
    return tuple(grey)


def scenes(images: np.ndarray, labels: np.ndarray, classes: Sequence[int], n: int, *, size: int = 320,
           weights: Sequence[float] | None = None, per_image: tuple[int, int] = (1, 6),
           longest: tuple[int, int] = (40, 130), max_overlap: float = 0.3,
           seed: int = 0) -> tuple[np.ndarray, list[list[Box]]]:
    """``n`` grey canvases [n, size, size] and each one's boxes; see the module docstring."""
    rng = np.random.default_rng(seed)
    by_class = [np.flatnonzero(labels == c) for c in classes]
    p = np.full(len(classes), 1 / len(classes)) if weights is None else np.asarray(weights, float) / sum(weights)
    canvases = np.empty((n, size, size), dtype=np.uint8)
    all_boxes = []
    for i in range(n):
        canvas = background(rng, size)
        boxes: list[Box] = []
        for _ in range(int(rng.integers(per_image[0], per_image[1] + 1))):
            k = int(rng.choice(len(classes), p=p))
            item = scaled_item(images[rng.choice(by_class[k])], int(rng.integers(longest[0], longest[1] + 1)))
            spot = free_spot(item.shape, boxes, size, max_overlap, rng)
            if spot is not None:
                draw(canvas, item, *spot)
                boxes.append((k, float(spot[0]), float(spot[1]), float(item.shape[1]), float(item.shape[0])))
        canvases[i] = canvas.round().astype(np.uint8)
        all_boxes.append(boxes)
    return canvases, all_boxes


def background(rng: np.random.Generator, size: int) -> np.ndarray:
    """A random square crop (half to all of the photo's short side) of a random photo, at ``size``."""
    photo = photos()[int(rng.integers(len(photos())))]
    short = min(photo.shape)
    side = int(rng.integers(short // 2, short + 1))
    y, x = int(rng.integers(0, photo.shape[0] - side + 1)), int(rng.integers(0, photo.shape[1] - side + 1))
    crop = Image.fromarray(photo[y:y + side, x:x + side]).resize((size, size), Image.Resampling.BILINEAR)
    return np.asarray(crop, dtype=np.float32)


def scaled_item(item: np.ndarray, longest: int) -> np.ndarray:
    """The item cropped to its pixels and resized so its longest side is ``longest`` px."""
    ys, xs = np.nonzero(item > ITEM_THRESHOLD)
    item = item[ys.min():ys.max() + 1, xs.min():xs.max() + 1]
    h, w = item.shape
    factor = longest / max(h, w)
    size = (max(1, round(w * factor)), max(1, round(h * factor)))
    return np.asarray(Image.fromarray(item).resize(size, Image.Resampling.BILINEAR))


def free_spot(shape: tuple[int, ...], boxes: list[Box], size: int, max_overlap: float,
              rng: np.random.Generator) -> tuple[int, int] | None:
    """A top-left corner where an item of ``shape`` covers at most ``max_overlap`` of every earlier
    box; None after 20 tries (the canvas is full)."""
    h, w = shape[:2]
    if w > size or h > size:
        return None
    for _attempt in range(20):
        x, y = int(rng.integers(0, size - w + 1)), int(rng.integers(0, size - h + 1))
        if all(covered((x, y, w, h), box[1:]) <= max_overlap for box in boxes):
            return x, y
    return None


def covered(new: tuple[float, float, float, float], old: tuple[float, float, float, float]) -> float:
    """The share of ``old``'s box (x, y, w, h) that ``new``'s covers."""
    ix = max(0.0, min(new[0] + new[2], old[0] + old[2]) - max(new[0], old[0]))
    iy = max(0.0, min(new[1] + new[3], old[1] + old[3]) - max(new[1], old[1]))
    return ix * iy / (old[2] * old[3])


def draw(canvas: np.ndarray, item: np.ndarray, x: int, y: int) -> None:
    """Paint ``item`` over the canvas: opaque where it has pixels, fading out at its dark edges, so
    the photo shows around it and between a trouser's legs."""
    h, w = item.shape
    alpha = np.clip(item.astype(np.float32) / (3 * ITEM_THRESHOLD), 0.0, 1.0)
    region = canvas[y:y + h, x:x + w]
    region *= 1 - alpha
    region += alpha * item


def rgb(canvas: np.ndarray) -> Image.Image:
    return Image.fromarray(canvas).convert("RGB")
