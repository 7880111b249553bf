"""Video pre-labels: a YOLO detector's boxes, tracked across frames by ultralytics' ByteTrack or
BoT-SORT, as Label Studio ``videorectangle`` regions (one per track).

Plain functions over plain data, so a notebook can call them and tests can feed them known boxes:
- ``probe``: what the file holds (frame rate, frame count, size), or a 422 naming the task when it
  does not decode (truncated, not a video, a codec this OpenCV build lacks, zero frames);
- ``ls_frame``: a file frame's number on Label Studio's timeline, which counts frames at the
  ``<Video framerate>`` of the config (24 when absent), not at the file's rate: the two are matched
  by time, so a 30 fps file under the default 24 still lines its boxes up with the picture;
- ``Track`` / ``collect_tracks``: per-frame tracked boxes grouped by track id; a track's label is
  the majority of its frames' classes (ties: the larger summed confidence), not the first frame's
  nor one label for every track (label-studio-ml-backend #664);
- ``merge_duplicates``: two tracks on one object at once (two overlapping boxes that NMS kept)
  become one;
- ``stitch``: tracks that are one object lost for a while (past the tracker's buffer, or re-found
  under a new id) joined into one, so Label Studio gets one region per object with a gap in its
  lifespan, not two regions a labeler must merge by hand;
- ``keyframes``: the fewest boxes whose linear interpolation (what Label Studio draws between two
  keyframes) passes within ``tolerance`` percent of every box dropped, first and last kept;
- ``sequence``: a track's keyframes in Label Studio's format; where the track is lost for a frame
  or more (occlusion, leaving the picture) the last keyframe before the gap has ``enabled: false``,
  so the editor hides the box until the track comes back, and so does the track's very last one.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from backends.core.errors import LabelConfigError, MediaError

from .corrections import box_iou

#: Label Studio's frame rate for a ``<Video>`` without ``framerate`` (its editor's default)
LS_DEFAULT_FRAMERATE = 24.0
TRACKERS = ("bytetrack", "botsort")
TRACKER_ATTR_PREFIX = "tracker_"
#: default keyframe tolerance, in percent of the frame's width/height: 0.5 % is 3 px on 640 px
DEFAULT_TOLERANCE = 0.5
#: frames timed before a run is projected: the first pays the predictor's setup and is left out
PACING_SAMPLE = 5
T = TypeVar("T")


class VideoTooLong(Exception):
    """Tracking this video would take longer than the budget allows (``Pacing.budget_s``), as
    projected after ``done`` of ``total`` frames (0 done: the budget ran out before tracking began)."""

    def __init__(self, projected_s: float, done: int, total: int, budget_s: float) -> None:
        super().__init__(f"{projected_s:.0f} s projected")
        self.projected_s, self.done, self.total, self.budget_s = projected_s, done, total, budget_s


@dataclass
class Pacing:
    """How one tracking run is paced. ``budget_s`` (None: no limit) is what ``/predict`` may spend
    on a video: after ``PACING_SAMPLE`` frames the run's length is projected from the time per
    frame so far plus what the request already spent (``since``), and a run projected past the
    budget stops at once (``VideoTooLong``) instead of outliving Label Studio's 100 s wait.
    ``report(done, total)`` is called about every ``report_every_s`` and at the end: a job's
    progress, and its chance to cancel (by raising)."""

    budget_s: float | None = None
    report: Callable[[int, int], None] | None = None
    report_every_s: float = 1.0
    #: when the request began: its download, model load and lock wait count against the budget
    #: too, and so do the request's earlier videos (Label Studio waits 100 s for all of it)
    since: float = field(default_factory=time.monotonic)
    done: int = 0  # frames of the last run: the length of a video whose container does not state it

    def remaining_s(self) -> float | None:
        return None if self.budget_s is None else self.budget_s - (time.monotonic() - self.since)

    def frames(self, frames: Iterable[T], total: int) -> Iterator[T]:
        """``total`` 0: unknown, the run then stops once the budget is spent rather than projected."""
        started = last_report = time.monotonic()
        first_done = started
        self.done = 0
        for self.done, item in enumerate(frames, 1):
            yield item
            now = time.monotonic()
            if self.done == 1:
                first_done = now
            elif self.budget_s is not None and self.done >= PACING_SAMPLE:
                left = (now - first_done) / (self.done - 1) * max(total - self.done, 0) if total else 0.0
                projected = (now - self.since) + left
                if projected > self.budget_s:
                    raise VideoTooLong(projected, self.done, total, self.budget_s)
            if self.report is not None and now - last_report >= self.report_every_s:
                last_report = now
                self.report(self.done, total)
        if self.report is not None:
            self.report(self.done, max(self.done, total))


@dataclass(frozen=True)
class VideoInfo:
    fps: float  # the file's frame rate
    frames: int  # as the container announces it (OpenCV's estimate for some formats); 0: unknown
    # (a browser-recorded WebM states no length): the frames tracked then tell
    width: int
    height: int

    @property
    def duration(self) -> float:
        return self.frames / self.fps


def probe(path: Path, what: str) -> VideoInfo:
    """The video's rate, length and size; a ``MediaError`` (422) naming ``what`` (the task and its
    URL) when OpenCV cannot open it or decode its first frame: a header that parses is not yet a
    file that decodes (a truncated upload, an unsupported codec)."""
    import cv2

    capture = cv2.VideoCapture(str(path))
    try:
        if not capture.isOpened():
            raise MediaError(f"{what} is not a video this server can read (not a video file, truncated, or a codec "
                             "its OpenCV build lacks)")
        fps = float(capture.get(cv2.CAP_PROP_FPS) or 0)
        frames = int(capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        width, height = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
        decoded, _ = capture.read()
    finally:
        capture.release()
    if not decoded:
        raise MediaError(f"{what} has no frame that decodes (an empty or truncated video, or an unsupported codec)")
    if not math.isfinite(fps) or fps <= 0:
        raise MediaError(f"{what} does not state a frame rate; re-encode it (e.g. ffmpeg -i in -r 25 out.mp4)")
    return VideoInfo(fps, frames, width, height)


def ls_framerate(value: Any) -> float:
    """``<Video framerate>`` as Label Studio's editor reads it: 24 when absent or not a number, and
    a value below 1 taken as a frame duration (its ``1/x``)."""
    try:
        rate = float(value)
    except (TypeError, ValueError):
        return LS_DEFAULT_FRAMERATE
    if not math.isfinite(rate) or rate <= 0:
        return LS_DEFAULT_FRAMERATE
    return 1 / rate if rate < 1 else rate


def ls_frame(index: int, file_fps: float, ls_fps: float) -> int:
    """Label Studio's 1-based frame number showing the file's 0-based frame ``index``: the one
    whose interval ``[(k-1)/ls_fps, k/ls_fps)`` holds the moment that frame starts (the epsilon
    keeps 29/30 s * 30 = 28.999... on frame 30 at equal rates)."""
    return int(math.floor(index / file_fps * ls_fps + 1e-6)) + 1


def ls_frames_count(info: VideoInfo, ls_fps: float) -> int:
    return max(1, int(round(info.duration * ls_fps)))


@dataclass
class Track:
    """One tracked object: the file frames it was seen in and its box there (x, y, width, height in
    percent of the frame, Label Studio's units), with each frame's class and confidence."""

    indices: list[int] = field(default_factory=list)
    boxes: list[tuple[float, float, float, float]] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)

    def add(self, index: int, box: tuple[float, float, float, float], label: str, score: float) -> None:
        self.indices.append(index)
        self.boxes.append(box)
        self.labels.append(label)
        self.scores.append(score)

    @property
    def label(self) -> str:
        """The majority of the frames' labels; a tie goes to the larger summed confidence."""
        votes: dict[str, tuple[int, float]] = {}
        for label, score in zip(self.labels, self.scores):
            count, total = votes.get(label, (0, 0.0))
            votes[label] = (count + 1, total + score)
        return max(votes, key=lambda name: votes[name])

    @property
    def score(self) -> float:
        return float(np.mean(self.scores))

    def extend(self, later: Track) -> None:
        """Continue with ``later``'s frames (all after this track's last)."""
        self.indices += later.indices
        self.boxes += later.boxes
        self.labels += later.labels
        self.scores += later.scores

    def fill(self, other: Track) -> None:
        """Take ``other``'s frames that this track has no box for, in frame order."""
        have = set(self.indices)
        rows = sorted([*zip(self.indices, self.boxes, self.labels, self.scores),
                       *(row for row in zip(other.indices, other.boxes, other.labels, other.scores) if row[0] not in have)],
                      key=lambda row: row[0])
        self.indices, self.boxes, self.labels, self.scores = (list(column) for column in zip(*rows))

    def copy(self) -> Track:
        return Track(list(self.indices), list(self.boxes), list(self.labels), list(self.scores))

    def carried_to(self, index: int) -> tuple[float, float, float, float]:
        """Where the last box would be at file frame ``index`` moving on at its last velocity (size kept)."""
        x, y, w, h = self.boxes[-1]
        if len(self.indices) < 2:
            return x, y, w, h
        (px, py, _, _), steps = self.boxes[-2], self.indices[-1] - self.indices[-2]
        if steps <= 0:  # two boxes on one frame (a tracker reporting an id twice): no velocity
            return x, y, w, h
        ahead = (index - self.indices[-1]) / steps
        return x + (x - px) * ahead, y + (y - py) * ahead, w, h


#: how much a track's first box must overlap where an ended one's last box was heading to continue it
STITCH_MIN_IOU = 0.3


def corners(box: tuple[float, float, float, float]) -> tuple[float, float, float, float]:
    """(x, y, width, height) -> (x1, y1, x2, y2), what ``box_iou`` takes."""
    return box[0], box[1], box[0] + box[2], box[1] + box[3]


#: IoU at which two tracks' boxes on a frame are the same object (see ``merge_duplicates``)
DUPLICATE_IOU = 0.5


def merge_duplicates(tracks: dict[int, Track], min_iou: float = DUPLICATE_IOU) -> dict[int, Track]:
    """``tracks`` with every track that follows the same object as a longer one folded into it: at
    least half of its frames lie within the longer one's lifespan, and on at least half of the frames
    both have a box their boxes overlap at IoU >= ``min_iou``. NMS keeps two boxes on one object when
    they overlap a little less than its threshold (a fine-tune from few images draws such pairs), and
    the tracker follows both, or hands the object from one id to the other and back: two regions
    for one object. The shorter one's frames the longer lacks fill its gaps; the rest are dropped.
    An object that crosses another and moves on lies mostly outside its lifespan: two tracks."""
    kept: dict[int, Track] = {}
    boxes: dict[int, dict[int, tuple[float, float, float, float]]] = {}
    for track_id, track in sorted(tracks.items(), key=lambda item: (-len(item[1].indices), item[0])):
        host = next((key for key, longer in kept.items() if same_object(longer, boxes[key], track, min_iou)), None)
        if host is None:
            kept[track_id] = track.copy()
        else:
            kept[host].fill(track)
        key = track_id if host is None else host
        boxes[key] = dict(zip(kept[key].indices, kept[key].boxes))
    return kept


def same_object(longer: Track, boxes: dict[int, tuple[float, float, float, float]], track: Track,
                min_iou: float) -> bool:
    """Whether ``track`` follows ``longer``'s object (``boxes``: ``longer``'s, by frame); see ``merge_duplicates``."""
    first, last = longer.indices[0], longer.indices[-1]
    if track.indices[0] > last or track.indices[-1] < first:
        return False
    inside = sum(first <= i <= last for i in track.indices)
    shared = [(boxes[i], box) for i, box in zip(track.indices, track.boxes) if i in boxes]
    close = sum(box_iou(corners(a), corners(b)) >= min_iou for a, b in shared)
    return inside >= len(track.indices) / 2 and bool(shared) and close >= len(shared) / 2


def stitch(tracks: dict[int, Track], max_gap: int, min_iou: float = STITCH_MIN_IOU) -> dict[int, Track]:
    """``tracks`` with each track that starts after another ended, at most ``max_gap`` file frames
    lost between, where that one's last box carried on at its last velocity overlaps its first at
    IoU >= ``min_iou``, joined to it (the best overlap when several qualify). Greedy by start frame, so a chain of
    fragments becomes one track, kept under its first id. Tracks that overlap in time never join:
    two objects side by side stay two. ``max_gap`` 0 leaves the tracks as they are."""
    if max_gap <= 0:
        return {key: track.copy() for key, track in tracks.items()}
    joined: dict[int, Track] = {}
    for track_id, track in sorted(tracks.items(), key=lambda item: (item[1].indices[0], item[0])):
        start = track.indices[0]
        # frames lost between the two: none when one track ends on the frame before the other starts
        ended = [(box_iou(corners(earlier.carried_to(start)), corners(track.boxes[0])), key) for key, earlier in joined.items()
                 if 0 <= start - earlier.indices[-1] - 1 <= max_gap]
        best = max(ended, default=None)
        if best is not None and best[0] >= min_iou:
            joined[best[1]].extend(track)
        else:
            joined[track_id] = track.copy()
    return joined


def collect_tracks(frames: Iterable[tuple[int, Any]], mapping: dict[int, str]) -> dict[int, Track]:
    """Tracks from ``(file frame index, ultralytics Boxes)`` pairs of a tracking run. Boxes of a
    class the project has no label for are left out; a frame without tracked boxes (``id`` None:
    nothing confirmed yet) adds nothing."""
    tracks: dict[int, Track] = {}
    for index, boxes in frames:
        if boxes is None or boxes.id is None:
            continue
        for track_id, (x1, y1, x2, y2), cls, conf in zip(boxes.id.tolist(), boxes.xyxyn.tolist(),
                                                          boxes.cls.tolist(), boxes.conf.tolist()):
            label = mapping.get(int(cls))
            if label is not None:
                box = (100 * x1, 100 * y1, 100 * (x2 - x1), 100 * (y2 - y1))
                tracks.setdefault(int(track_id), Track()).add(index, box, label, float(conf))
    return tracks


def keyframes(times: np.ndarray, boxes: np.ndarray, tolerance: float) -> list[int]:
    """Indices of the boxes to keep: linear interpolation between consecutive kept ones (by
    ``times``) comes within ``tolerance`` of every dropped box on every coordinate. Douglas-Peucker
    on the box trajectory: split a segment at its worst box until none is off by more."""
    count = len(times)
    keep = {0, count - 1}
    segments = [(0, count - 1)]
    while segments:
        first, last = segments.pop()
        if last - first < 2:
            continue
        inside = slice(first + 1, last)
        along = (times[inside] - times[first]) / (times[last] - times[first])
        drawn = boxes[first] + along[:, None] * (boxes[last] - boxes[first])
        error = np.abs(drawn - boxes[inside]).max(axis=1)
        worst = int(error.argmax())
        if error[worst] > tolerance:
            split = first + 1 + worst
            keep.add(split)
            segments += [(first, split), (split, last)]
    return sorted(keep)


def spans(indices: list[int]) -> list[tuple[int, int]]:
    """``[start, end)`` positions of the runs of consecutive file frames in ``indices``."""
    breaks = [i for i in range(1, len(indices)) if indices[i] - indices[i - 1] > 1]
    bounds = [0, *breaks, len(indices)]
    return list(zip(bounds[:-1], bounds[1:]))


def sequence(track: Track, file_fps: float, ls_fps: float, tolerance: float,
             frames_count: int | None = None) -> list[dict[str, Any]]:
    """The track's keyframes in Label Studio's ``sequence`` format, one lifespan per run of
    consecutive frames; each lifespan's last keyframe is ``enabled: false``. Frames past
    ``frames_count`` (a file rate over twice Label Studio's rounds the last one up) are clamped."""
    out: list[dict[str, Any]] = []
    boxes = np.asarray(track.boxes, dtype=float)
    for start, end in spans(track.indices):
        times = np.asarray(track.indices[start:end], dtype=float)
        kept = keyframes(times, boxes[start:end], tolerance)
        frames = [ls_frame(track.indices[start + k], file_fps, ls_fps) for k in kept]
        if frames_count:
            frames = [min(frame, frames_count) for frame in frames]
        for position, (k, frame) in enumerate(zip(kept, frames)):
            last = position == len(kept) - 1
            x, y, width, height = (round(float(v), 4) for v in boxes[start + k])
            key = {"frame": frame, "enabled": not last, "rotation": 0, "x": x, "y": y, "width": width,
                   "height": height, "time": frame / ls_fps}
            if out and out[-1]["frame"] >= frame:  # two file frames on one Label Studio frame (file rate higher)
                if position == 0 and not last:
                    out[-1] = key  # back after a one-frame gap: the region goes on from here, not off
                else:
                    out[-1]["enabled"] = out[-1]["enabled"] and not last
                continue
            out.append(key)
    if out:
        out[-1]["enabled"] = False
    return out


def tracker_config(attrs: dict[str, Any], scratch: Path) -> str:
    """The tracker YAML for a ``<VideoRectangle>``: ``model_tracker`` picks ultralytics' own
    ``bytetrack.yaml`` (default: fast, no appearance model) or ``botsort.yaml``; attributes named
    ``tracker_<setting>`` override that file's settings (``tracker_track_buffer="60"``), each cast
    to the type of the value it replaces. A changed config is written once, named by its content."""
    import yaml
    from ultralytics.utils.checks import check_yaml

    name = str(attrs.get("model_tracker", "bytetrack")).strip().lower()
    if name not in TRACKERS:
        raise LabelConfigError(f"model_tracker={name!r} is not a tracker here; use one of {', '.join(TRACKERS)}")
    source = Path(check_yaml(f"{name}.yaml"))
    overrides = {k[len(TRACKER_ATTR_PREFIX):]: v for k, v in attrs.items() if k.startswith(TRACKER_ATTR_PREFIX)}
    if not overrides:
        return str(source)
    settings = yaml.safe_load(source.read_text())
    for key, raw in overrides.items():
        if key not in settings or key == "tracker_type":
            known = ", ".join(k for k in settings if k != "tracker_type")
            raise LabelConfigError(f"{TRACKER_ATTR_PREFIX}{key}: {name} has no setting {key!r} (it has: {known})")
        settings[key] = _cast(raw, settings[key], f"{TRACKER_ATTR_PREFIX}{key}")
    text = yaml.safe_dump(settings, sort_keys=True)
    target = scratch / f"{name}-{hashlib.sha256(text.encode()).hexdigest()[:16]}.yaml"
    if not target.exists():
        scratch.mkdir(parents=True, exist_ok=True)
        partial = target.with_suffix(f".{id(text)}.tmp")
        partial.write_text(text)
        partial.replace(target)
    return str(target)


def _cast(raw: Any, like: Any, name: str) -> Any:
    text = str(raw).strip()
    try:
        if isinstance(like, bool):
            if text.lower() not in ("true", "false", "1", "0"):
                raise ValueError(text)
            return text.lower() in ("true", "1")
        if isinstance(like, int):
            return int(text)
        if isinstance(like, float):
            return float(text)
    except ValueError:
        raise LabelConfigError(f"{name}={text!r} is not a {type(like).__name__}") from None
    return text
