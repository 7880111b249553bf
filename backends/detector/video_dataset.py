"""From ``VideoRectangle`` annotations to detection samples: one sample per sampled frame.

- **Interpolation, as Label Studio draws it**: a region appears at its first keyframe; between
  two keyframes its box moves linearly (by frame number); after a keyframe with ``enabled: false``
  it is hidden until its next keyframe; after its last keyframe it stays, when that one is
  enabled, to the video's end (``framesCount``).
- **Sampling**: near-identical neighbouring frames would swamp a dataset (25 a second) and make
  its val split a copy of its train split, so frames are taken every ``sample_s`` seconds, over
  the span the annotation covers (first keyframe to the last frame any region shows): a frame
  there without a box is a negative, as the annotator saw it. Every sample of a video keeps its
  task as ``group``: the train/val split is by video, never by frame.
- **Frames** are Label Studio's (1-based, at the annotation's ``framesCount / duration`` rate, or
  the config's ``<Video framerate>``); ``load_frames`` maps them to the file's frames by time and
  decodes each video once, in one pass, keeping only the sampled frames.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from PIL import Image

from .dataset import BuildReport, Sample, annotated_images, rect_to_yolo
from .video import LS_DEFAULT_FRAMERATE

if TYPE_CHECKING:
    from backends.core.media import MediaLoader

    from .controls import ControlModel

#: sample ids are ``task id * FRAME_KEY + frame``: unique ints, as the dataset writer names files
FRAME_KEY = 10_000_000
Box = tuple[float, float, float, float]


@dataclass
class FrameSample(Sample):
    """One sampled frame of an annotated video: ``task_id`` is the frame's own key, ``group`` the task."""

    group: int = 0
    frame: int = 1  # Label Studio's, 1-based
    rate: float = 24.0  # Label Studio's frames per second for this video


def box_at(sequence: list[dict[str, Any]], frame: int, frames_count: int) -> Box | None:
    """The region's (x, y, width, height) in percent at ``frame``, or None where it is not shown."""
    keys = sorted((k for k in sequence if isinstance(k, dict) and "frame" in k), key=lambda k: k["frame"])
    before = [k for k in keys if k["frame"] <= frame]
    if not before or frame > frames_count:
        return None
    k0 = before[-1]
    after = [k for k in keys if k["frame"] > frame]
    if k0["frame"] != frame and not k0.get("enabled", True):
        return None
    if k0["frame"] == frame or not after:
        return _box(k0)
    k1 = after[0]
    t = (frame - k0["frame"]) / (k1["frame"] - k0["frame"])
    x, y, w, h = (a + t * (b - a) for a, b in zip(_box(k0), _box(k1)))
    return (x, y, w, h)


def _box(key: dict[str, Any]) -> Box:
    return (float(key["x"]), float(key["y"]), float(key["width"]), float(key["height"]))


def last_shown(sequence: list[dict[str, Any]], frames_count: int) -> int:
    keys = sorted((k for k in sequence if isinstance(k, dict) and "frame" in k), key=lambda k: k["frame"])
    if not keys:
        return 0
    return frames_count if keys[-1].get("enabled", True) else int(keys[-1]["frame"])


def frame_samples(tasks: Iterable[dict[str, Any]], control: ControlModel, image_key: str,
                  class_index: dict[str, int], report: BuildReport, sample_s: float) -> list[FrameSample]:
    """Frames every ``sample_s`` seconds over each annotated video's labelled span, with the boxes
    Label Studio shows there."""
    samples: list[FrameSample] = []
    for task, annotation, url in annotated_images(tasks, image_key, report.skipped_tasks):
        regions = [item for item in annotation.get("result") or []
                   if item.get("from_name") == control.from_name and item.get("type") == "videorectangle"]
        tracks = _labelled(regions, class_index, report)
        if not tracks:
            report.skipped_tasks[task["id"]] = f"no {control.from_name!r} region with a known label: nothing to learn"
            continue
        configured = control.framerate_for(task) if hasattr(control, "framerate_for") else LS_DEFAULT_FRAMERATE
        duration = max(_number(v.get("duration")) for _, v in tracks)
        # framesCount and duration as the editor saved them; either may be missing in an import
        frames_count = int(max(_number(v.get("framesCount")) for _, v in tracks)) or (
            int(round(duration * configured)) or max(int(k["frame"]) for _, v in tracks for k in v["sequence"]))
        rate = frames_count / duration if duration > 0 else configured
        first = min(int(k["frame"]) for _, v in tracks for k in v["sequence"])
        last = max(last_shown(v["sequence"], frames_count) for _, v in tracks)
        step = max(1, round(sample_s * rate))
        report.n_annotated += 1
        for frame in range(first, last + 1, step):
            boxes = [(cls, *yolo) for cls, value in tracks
                     if (box := box_at(value["sequence"], frame, frames_count)) is not None
                     and (yolo := rect_to_yolo(dict(zip(("x", "y", "width", "height"), box)))) is not None]
            report.n_negatives += not boxes
            report.n_boxes += len(boxes)
            samples.append(FrameSample(task["id"] * FRAME_KEY + frame, url, boxes, group=task["id"], frame=frame,
                                       rate=rate))
    return samples


def _labelled(regions: list[dict[str, Any]], class_index: dict[str, int], report: BuildReport
              ) -> list[tuple[int, dict[str, Any]]]:
    """(class, value with only well-formed keyframes) of each region with a known label; a region
    without one usable keyframe is dropped and counted (an import can hold anything)."""
    out = []
    for item in regions:
        value: dict[str, Any] = item["value"] if isinstance(item.get("value"), dict) else {}
        labels = value.get("labels") or []
        if not labels or labels[0] not in class_index:
            report.dropped_unknown_label += 1
            continue
        keys = [k for k in value.get("sequence") or [] if _keyframe(k)]
        if not keys:
            report.dropped_outside += 1
            continue
        out.append((class_index[labels[0]], {**value, "sequence": keys}))
    return out


def _keyframe(key: Any) -> bool:
    if not isinstance(key, dict) or isinstance(key.get("frame"), bool) or not isinstance(key.get("frame"), int):
        return False
    return key["frame"] >= 1 and all(math.isfinite(_number(key.get(k), math.nan)) for k in ("x", "y", "width", "height"))


def _number(value: Any, default: float = 0.0) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return default
    return number if math.isfinite(number) else default


def load_frames(media: MediaLoader, samples: list[FrameSample]) -> dict[int, Image.Image | Exception]:
    """Each sample's frame as an RGB image (or the error loading its video), each video downloaded
    once and decoded in one pass up to its last sampled frame."""
    out: dict[int, Image.Image | Exception] = {}
    by_video: dict[str, list[FrameSample]] = {}
    for sample in samples:
        by_video.setdefault(sample.image_url, []).append(sample)
    for url, group in by_video.items():
        try:
            out.update(_decode(media.load_file(url), group))
        except Exception as exc:  # the caller reports it per task: one bad video must not fail the job
            out.update({s.task_id: exc for s in group})
    return out


def _decode(path: Any, samples: list[FrameSample]) -> dict[int, Image.Image]:
    import cv2

    capture = cv2.VideoCapture(str(path))
    try:
        fps = float(capture.get(cv2.CAP_PROP_FPS) or 0) or samples[0].rate
        wanted: dict[int, list[FrameSample]] = {}
        for sample in samples:  # Label Studio's frame -> the file's frame shown at that moment
            wanted.setdefault(int(math.floor((sample.frame - 1) / sample.rate * fps + 1e-6)), []).append(sample)
        out: dict[int, Image.Image] = {}
        for index in range(max(wanted) + 1):
            if index not in wanted:
                if not capture.grab():
                    break
                continue
            ok, frame = capture.read()
            if not ok:
                break
            picture = Image.fromarray(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
            out.update({s.task_id: picture for s in wanted[index]})
        return out
    finally:
        capture.release()
