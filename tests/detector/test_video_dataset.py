"""VideoRectangle annotations as detection samples: Label Studio's interpolation, sampling, the
split by video, and frames decoded from a generated clip."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from backends.core.labelstudio import LabelStudioClient
from backends.core.media import MediaLoader
from backends.detector.dataset import BuildReport
from backends.detector.training import split_by_group
from backends.detector.video_dataset import FRAME_KEY, box_at, frame_samples, load_frames
from bench.moving_items import clip, fashion_movers


def key(frame, x, enabled=True):
    return {"frame": frame, "enabled": enabled, "x": x, "y": 10.0, "width": 20.0, "height": 10.0, "rotation": 0}


def test_boxes_between_keyframes_are_interpolated_hidden_after_a_disabled_one_and_kept_to_the_end():
    seq = [key(1, 0.0), key(11, 50.0, enabled=False), key(21, 10.0)]
    assert box_at(seq, 6, 40) == (25.0, 10.0, 20.0, 10.0)  # halfway
    assert box_at(seq, 11, 40)[0] == 50.0 and box_at(seq, 15, 40) is None  # shown on its keyframe, then off
    assert box_at(seq, 40, 40)[0] == 10.0 and box_at(seq, 41, 40) is None  # enabled last keyframe: to the end
    assert box_at(seq[:2], 12, 40) is None and box_at(seq, 0, 40) is None


def video_task(task_id, regions, frames_count=50, duration=2.0):
    return {"id": task_id, "data": {"video": f"/data/upload/1/{task_id}.webm"},
            "annotations": [{"id": task_id, "result": [
                {"from_name": "box", "to_name": "video", "type": "videorectangle",
                 "value": {"framesCount": frames_count, "duration": duration, "sequence": seq, "labels": [label]}}
                for label, seq in regions]}]}


def test_frames_are_sampled_over_the_labelled_span_with_a_known_label_and_split_by_video():
    control = SimpleNamespace(from_name="box", framerate=25.0)
    tasks = [video_task(1, [("Bag", [key(5, 0.0), key(25, 40.0, enabled=False)]),
                            ("Trouser", [key(10, 60.0), key(20, 70.0, enabled=False)]),
                            ("Shoe", [key(1, 5.0)])]),  # not a label of the project
             video_task(2, [("Bag", [key(1, 0.0)])]), video_task(3, [("Shoe", [key(1, 0.0)])])]
    report = BuildReport()
    samples = frame_samples(tasks, control, "video", {"Trouser": 0, "Bag": 1}, report, 0.2)  # 25 fps: every 5th
    first = [s for s in samples if s.group == 1]
    assert [s.frame for s in first] == [5, 10, 15, 20, 25] and first[0].task_id == FRAME_KEY + 5
    assert [sorted(c for c, *_ in s.boxes) for s in first] == [[1], [0, 1], [0, 1], [0, 1], [1]]
    assert first[1].boxes[0][1:] == pytest.approx(((10 + 10) / 100, 0.15, 0.2, 0.1))  # Bag at x=10% (frame 10)
    assert len([s for s in samples if s.group == 2]) == 10  # enabled to the end: frames 1..50 every 5th
    assert report.dropped_unknown_label == 2 and 3 in report.skipped_tasks and report.n_annotated == 2
    train, val = split_by_group(samples, 0.5, 0)
    for group in (1, 2):
        ids = {s.task_id for s in samples if s.group == group}
        assert ids <= train or ids <= val  # a video's frames never on both sides (unless it is the only one)


def test_sampled_frames_are_decoded_from_the_video_in_one_pass(tmp_path):
    movers = fashion_movers([1])
    clip(tmp_path / "c.webm", movers, frames=30)
    media = MediaLoader(LabelStudioClient("http://127.0.0.1:9", None), cache_dir=tmp_path / "cache",
                        local_files_root=tmp_path)
    url = "/data/local-files/?d=c.webm"
    control = SimpleNamespace(from_name="box", framerate=25.0)
    task = video_task(4, [("Bag", [key(3, 0.0)])], frames_count=30, duration=1.2)
    task["data"]["video"] = url
    samples = frame_samples([task], control, "video", {"Bag": 0}, BuildReport(), 0.4)
    samples.append(type(samples[0])(4 * FRAME_KEY + 99, url, [], group=4, frame=99, rate=25.0))  # past the end
    frames = load_frames(media, samples)
    assert [s.frame for s in samples[:-1]] == [3, 13, 23] and samples[-1].task_id not in frames
    for sample in samples[:-1]:  # the item's pixels are where the clip put it in that frame
        x, y, w, h = movers[0].boxes[sample.frame - 1]
        picture = np.asarray(frames[sample.task_id].convert("L"))
        assert picture[y:y + h, x:x + w].max() > 150 and picture.shape == (240, 320)
    broken = load_frames(MediaLoader(LabelStudioClient("http://127.0.0.1:9", None)), samples[:1])
    assert isinstance(broken[samples[0].task_id], Exception)


def test_an_imported_annotation_without_frames_count_or_with_broken_keyframes_still_trains():
    control = SimpleNamespace(from_name="box", framerate_for=lambda task: 25.0)
    broken = [key(1, 0.0), {"frame": "x"}, "nonsense", {**key(30, 10.0), "x": float("nan")}, key(11, 20.0)]
    task = video_task(5, [("Bag", broken)], frames_count=0, duration=2.0)  # framesCount missing: 2 s at 25
    report = BuildReport()
    samples = frame_samples([task], control, "video", {"Bag": 0}, report, 0.4)
    assert [s.frame for s in samples] == list(range(1, 51, 10)) and all(s.boxes for s in samples)
    assert report.n_negatives == 0 and report.dropped_outside == 0
