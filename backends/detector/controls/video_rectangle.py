"""``<VideoRectangle>`` on a ``<Video>``: boxes tracked across frames, one region per track."""

from __future__ import annotations

import math
from typing import Any

from backends.core.errors import LabelConfigError

from ..video import (
    DEFAULT_TOLERANCE,
    Track,
    VideoInfo,
    ls_framerate,
    ls_frames_count,
    merge_duplicates,
    sequence,
    stitch,
)
from .base import ControlModel
from .rectangle import boxes_of

#: seconds between the frames a submitted video trains on (neighbours are near copies)
DEFAULT_SAMPLE_S = 0.5
#: the longest a tracked object may be lost (seconds) and still continue its track (``video.stitch``)
DEFAULT_STITCH_S = 1.0
#: detections down to this confidence reach the tracker: ByteTrack's second association stage
#: recovers occluded objects from low-score boxes (ultralytics' own ``track`` default)
TRACK_LOW_CONF = 0.1


class VideoRectangleModel(ControlModel):
    """Tracked boxes on a video. ``<VideoRectangle>`` has no labels of its own: Label Studio labels
    video boxes with the ``<Labels>`` tag on the same ``<Video>``, so the classes come from there.
    A track is kept when its mean confidence reaches ``model_score_threshold``; its keyframes are
    thinned to ``model_keyframe_tolerance`` percent of the frame (default 0.5). A track that
    starts within ``model_stitch_s`` seconds (default 1; 0: never) of another's end, where that
    one was heading, continues it (``video.stitch``). Training takes a frame every
    ``model_sample_s`` seconds of an annotated video (default 0.5)."""

    tag = "VideoRectangle"
    yolo_task = "detect"
    on_video = True

    def connect(self, interface: Any) -> None:
        labels = [c for c in interface.controls if c.tag == "Labels" and self.to_name in (c.to_name or [])]
        if not labels:
            raise LabelConfigError(f'<VideoRectangle name="{self.from_name}"> needs a <Labels toName="{self.to_name}"> '
                                   "holding the classes to predict (Label Studio labels video boxes with it)")
        self.label_control = labels[0]
        video = interface.get_object(self.to_name)
        # Label Studio reads XML attributes case-insensitively (docs write frameRate, its template
        # framerate), and takes "$field" from the task's data
        self.framerate_attr = next((v for k, v in (video.attr or {}).items() if k.lower() == "framerate"), None)
        self.tolerance = self._number("model_keyframe_tolerance", DEFAULT_TOLERANCE, "percent of the frame")
        self.sample_s = self._number("model_sample_s", DEFAULT_SAMPLE_S, "seconds between training frames")
        self.stitch_s = self._number("model_stitch_s", DEFAULT_STITCH_S, "seconds an object may be lost", zero=True)

    def _number(self, name: str, default: float, meaning: str, zero: bool = False) -> float:
        raw = (self.control.attr or {}).get(name, default)
        try:
            value = float(raw)
        except ValueError:
            value = -1.0
        if not ((value > 0 or (zero and value == 0)) and math.isfinite(value)):
            kind = "a number >= 0" if zero else "a positive number"
            raise LabelConfigError(f"VideoRectangle {self.from_name!r}: {name}={raw!r} is not {kind} ({meaning})")
        return value

    def framerate_for(self, task: dict[str, Any]) -> float:
        """The frame rate Label Studio numbers this task's frames at."""
        raw = self.framerate_attr
        if isinstance(raw, str) and raw.startswith("$"):
            raw = (task.get("data") or {}).get(raw[1:])
        return ls_framerate(raw)

    @property
    def detection_conf(self) -> float:
        """The confidence floor of the boxes handed to the tracker (never 0: ultralytics' ``track``
        reads a 0 as unset and uses 0.1)."""
        return max(min(self.threshold, TRACK_LOW_CONF), 1e-6)

    def video_regions(self, tracks: dict[int, Track], info: VideoInfo, framerate: float) -> list[dict[str, Any]]:
        """One ``videorectangle`` region per object (``objects``); ``framerate``: Label Studio's for
        the task (``framerate_for``)."""
        from label_studio_sdk.label_interface.control_tags import VideoRectangleValue

        out = []
        count = ls_frames_count(info, framerate)
        for track_id, track in sorted(self.objects(tracks, info.fps).items()):
            value = {"framesCount": count, "duration": round(info.duration, 4),
                     "sequence": sequence(track, info.fps, framerate, self.tolerance, count), "labels": [track.label]}
            VideoRectangleValue(**value)  # the SDK's schema (it drops "enabled", so only validates)
            out.append({"id": f"{self.from_name}-t{track_id}", "from_name": self.from_name, "to_name": self.to_name,
                        "type": "videorectangle", "origin": "manual", "value": value, "score": round(track.score, 4)})
        return out

    def objects(self, tracks: dict[int, Track], fps: float) -> dict[int, Track]:
        """One track per object: tracks under the score threshold left out first (folded in, they
        would drag a good track's mean below it), then duplicates folded, then the fragments of an
        object lost for under ``model_stitch_s`` joined."""
        confident = {key: track for key, track in tracks.items() if track.score >= self.threshold}
        return stitch(merge_duplicates(confident), round(self.stitch_s * fps))

    def regions(self, result: Any, names: dict[int, str], width: int, height: int) -> list[dict[str, Any]]:
        """One frame's boxes as rectangles: what corrections per image compares on a trained
        version's sampled val frames (a video's own pre-labels are tracks: ``video_regions``)."""
        return [{"type": "rectanglelabels", "from_name": self.from_name, "to_name": self.to_name,
                 "original_width": width, "original_height": height, "value": value, "score": round(float(conf), 4)}
                for value, conf in boxes_of(result, self.label_map(names), self.threshold)]
