"""Video pre-labels: keyframe thinning, track labels, Label Studio's frame numbers, tracker settings,
ultralytics' ByteTrack over a generated clip, /predict end to end, bad videos; with a real Label
Studio, a long video left to the prelabel job, and one annotated clip teaching the detector to
track the same items on a new clip (its retrieved predictions)."""

from __future__ import annotations

import base64
from pathlib import Path

import numpy as np
import pytest
import requests
from hypothesis import given, settings
from hypothesis import strategies as st
from label_studio_sdk.label_interface.control_tags import VideoRectangleValue

from backends.core.app import create_app
from backends.core.errors import LabelConfigError, MediaError
from backends.core.settings import CoreSettings
from backends.detector.model import DetectorModel
from backends.detector.video import (
    Pacing,
    Track,
    VideoTooLong,
    collect_tracks,
    keyframes,
    ls_frame,
    ls_framerate,
    merge_duplicates,
    probe,
    sequence,
    stitch,
    tracker_config,
)
from bench.fmnist import NAMES
from bench.moving_items import Mover, clip, fashion_movers
from tests.detector.conftest import OFFLINE_ENV, one_class_checkpoint
from tests.harness import wait_until

SIZE = (320, 240)
# random-init weights score every box ~0.0002: trackers that start tracks that low make them track,
# matching by IoU alone (fused with such scores, no box would match its track a second time)
LOW = (' tracker_track_high_thresh="0.0001" tracker_new_track_thresh="0.0001" tracker_track_low_thresh="0.00005"'
       ' tracker_fuse_score="false"')
CONFIG = ('<View><Labels name="videoLabels" toName="video"><Label value="Trouser"/><Label value="Bag"/></Labels>'
          '<Video name="video" value="$video" framerate="25.0"/><VideoRectangle name="box" toName="video"{low}/></View>')


def interpolated(seq: list[dict], frame: int) -> np.ndarray | None:
    """The box Label Studio draws at ``frame`` from the keyframes (None where the region is off)."""
    keys = ("x", "y", "width", "height")
    before = [k for k in seq if k["frame"] <= frame]
    if not before:
        return None
    k0 = before[-1]
    if k0["frame"] == frame:
        return np.array([k0[k] for k in keys])
    after = [k for k in seq if k["frame"] > frame]
    if not k0["enabled"] or not after:
        return None
    k1 = after[0]
    t = (frame - k0["frame"]) / (k1["frame"] - k0["frame"])
    return np.array([k0[k] + t * (k1[k] - k0[k]) for k in keys])


# -- keyframes ------------------------------------------------------------------------------------
@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 12), st.floats(-3, 3), st.floats(-3, 3), st.floats(-1, 1)), min_size=1,
                max_size=8), st.floats(0.05, 2.0), st.floats(0, 0.6))
def test_dropped_boxes_lie_within_the_tolerance_of_what_label_studio_interpolates(legs, tolerance, noise):
    """Piecewise-linear motion with noise: every box is within ``tolerance`` of the line drawn
    between the keyframes around it, and the first and last boxes are keyframes."""
    rng = np.random.default_rng(len(legs))
    box, boxes = np.array([50.0, 50.0, 10.0, 10.0]), []
    for frames, dx, dy, dw in legs:
        for _ in range(frames):
            box = box + np.array([dx, dy, dw, dw])
            boxes.append(box + rng.uniform(-noise, noise, 4))
    boxes = np.array(boxes)
    times = np.arange(len(boxes), dtype=float)
    kept = keyframes(times, boxes, tolerance)
    assert kept[0] == 0 and kept[-1] == len(boxes) - 1 and kept == sorted(set(kept))
    drawn = np.empty_like(boxes)
    for a, b in zip(kept, kept[1:]):
        t = (times[a:b + 1] - times[a]) / (times[b] - times[a])
        drawn[a:b + 1] = boxes[a] + t[:, None] * (boxes[b] - boxes[a])
    drawn[kept[0]] = boxes[kept[0]]
    assert np.abs(drawn - boxes).max() <= tolerance + 1e-9


def test_straight_motion_keeps_two_keyframes_and_a_stop_keeps_its_corners():
    times = np.arange(30, dtype=float)
    line = np.stack([times, times / 2, np.full(30, 10.0), np.full(30, 8.0)], axis=1)
    assert keyframes(times, line, 0.5) == [0, 29]
    stop = line.copy()
    stop[10:20, :2] = stop[10, :2]  # stands still for 10 frames, then moves on
    stop[20:, :2] = stop[10, :2] + (stop[20:, :2] - stop[20, :2]) + [1, 0.5]
    assert {10, 19} <= set(keyframes(times, stop, 0.5))


# -- tracks to Label Studio's format --------------------------------------------------------------
def test_a_tracks_label_is_the_majority_of_its_frames_and_a_tie_goes_to_confidence():
    track = Track()
    for i, (label, score) in enumerate([("Bag", 0.9), ("Trouser", 0.5), ("Trouser", 0.5), ("Bag", 0.3),
                                        ("Trouser", 0.2)]):
        track.add(i, (0, 0, 1, 1), label, score)
    assert track.label == "Trouser"
    tie = Track()
    for i, (label, score) in enumerate([("Bag", 0.9), ("Trouser", 0.5), ("Trouser", 0.3), ("Bag", 0.2)]):
        tie.add(i, (0, 0, 1, 1), label, score)
    assert tie.label == "Bag"


def moving(frames: range, x0: float, dx: float, label: str = "Bag", y: float = 40.0) -> Track:
    """A 10 x 10 % box moving dx per frame from x0 (at frames[0]) along y."""
    track = Track()
    for i in frames:
        track.add(i, (x0 + dx * (i - frames[0]), y, 10.0, 10.0), label, 0.8)
    return track


def test_an_object_lost_for_a_while_is_one_track_and_others_stay_apart():
    first = moving(range(0, 20), 0.0, 1.0)
    back = moving(range(35, 50), 35.0, 1.0, label="Trouser")  # re-found 15 frames on, where it was heading
    elsewhere = moving(range(30, 40), 80.0, -1.0)  # a new object at the other side
    beside = moving(range(5, 30), 0.0, 1.0, y=70.0)  # overlapping in time: another object
    joined = stitch({1: first, 2: back, 3: elsewhere, 4: beside}, max_gap=25)
    assert sorted(joined) == [1, 3, 4]
    assert joined[1].indices == [*range(0, 20), *range(35, 50)] and joined[1].label == "Bag"  # 20 Bag, 15 Trouser
    seq = sequence(joined[1], 25.0, 25.0, 0.5)
    assert [(k["frame"], k["enabled"]) for k in seq] == [(1, True), (20, False), (36, True), (50, False)]
    assert sorted(stitch({1: first, 2: back}, max_gap=10)) == [1, 2]  # lost longer than allowed
    assert sorted(stitch({1: first, 2: back}, max_gap=15)) == [1]  # lost frames 20-34: 15 frames, allowed
    assert sorted(stitch({1: first, 2: back}, max_gap=0)) == [1, 2]  # model_stitch_s="0": off


def test_two_tracks_on_one_object_become_one_and_neighbours_stay_two():
    main = moving(range(0, 40), 0.0, 1.0)
    echo = Track()  # a second box on the same object, a little offset, on frames 0-14 with two gaps
    for i in [*range(0, 3), *range(5, 15)]:
        echo.add(i, (i * 1.0 + 1.5, 41.0, 10.0, 10.0), "Bag", 0.3)
    main_gap = Track()
    for i, box, label, score in zip(main.indices, main.boxes, main.labels, main.scores):
        if i not in (20, 21):
            main_gap.add(i, box, label, score)
    neighbour = moving(range(0, 40), 0.0, 1.0, y=52.0)  # touching, not the same (IoU 0)
    merged = merge_duplicates({7: echo, 3: main_gap, 9: neighbour})
    assert sorted(merged) == [3, 9] and merged[3].indices == main_gap.indices
    passing = moving(range(37, 60), 36.0, 3.0, y=41.0, label="Shirt")  # crosses the end of main, moves on
    merged = merge_duplicates({3: main_gap, 8: passing})
    assert sorted(merged) == [3, 8] and merged[3].label == "Bag"  # 3 of its 23 frames in main's lifespan
    handed = Track()  # the object handed to a second id while the first lost it, then back
    for i in [*range(0, 3), *range(18, 24)]:  # boxes on main's frames 0-2 and across its 20-21 gap
        handed.add(i, (i * 1.0 + 1.0, 40.5, 10.0, 10.0), "Bag", 0.4)
    merged = merge_duplicates({3: main_gap, 6: handed})
    assert sorted(merged) == [3] and merged[3].indices == list(range(0, 40))  # its gap filled
    lone = moving(range(20, 22), 21.5, 1.0, y=41.0)  # only on the frames the main track lacks
    merged = merge_duplicates({3: main_gap, 5: lone, 7: echo})
    assert sorted(merged) == [3, 5]  # no shared frame: not known to be the same object (stitching's case)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 60), st.integers(1, 30), st.floats(0, 90), st.floats(-2, 2)),
                min_size=1, max_size=8), st.integers(0, 40))
def test_stitching_keeps_every_box_once_and_duplicates_keep_every_frame(pieces, max_gap):
    tracks = {k: moving(range(start, start + length), x0, dx) for k, (start, length, x0, dx) in enumerate(pieces)}
    joined = stitch(tracks, max_gap)
    assert sorted(i for t in joined.values() for i in t.indices) == sorted(i for t in tracks.values() for i in t.indices)
    merged = merge_duplicates(tracks)  # every frame some track had is still covered, none twice in a track
    assert {i for t in merged.values() for i in t.indices} == {i for t in tracks.values() for i in t.indices}
    for track in [*joined.values(), *merged.values()]:
        assert all(a < b for a, b in zip(track.indices, track.indices[1:]))
        assert len(track.boxes) == len(track.labels) == len(track.scores) == len(track.indices)
    assert set(joined) <= set(tracks)


def test_a_gap_ends_a_lifespan_and_the_last_keyframe_turns_the_region_off():
    track = Track()
    for i in [*range(0, 10), *range(15, 20)]:  # lost for frames 10-14
        track.add(i, (float(i), 10.0, 5.0, 5.0), "Bag", 0.8)
    seq = sequence(track, 25.0, 25.0, 0.5)
    assert [(k["frame"], k["enabled"]) for k in seq] == [(1, True), (10, False), (16, True), (20, False)]
    assert [k["time"] for k in seq] == [1 / 25, 10 / 25, 16 / 25, 20 / 25]  # Label Studio's frame / framerate
    assert interpolated(seq, 12) is None and interpolated(seq, 5)[0] == pytest.approx(4.0)


def test_label_studio_frames_count_at_the_configs_framerate_matched_by_time():
    assert [ls_frame(i, 25.0, 25.0) for i in range(3)] == [1, 2, 3]
    assert ls_frame(30, 30.0, 24.0) == 25  # one second in: frame 25 at Label Studio's default 24
    assert (ls_framerate(None), ls_framerate("25.0"), ls_framerate("0.04"), ls_framerate("x")) == (24.0, 25.0, 25.0, 24.0)
    track = Track()
    for i, x in enumerate([0, 10, 10, 30, 35, 70]):  # 50 fps file, 25 fps config: two file frames a frame
        track.add(i, (x, 0.0, 5.0, 5.0), "Bag", 0.9)
    seq = sequence(track, 50.0, 25.0, 0.0)
    assert [(k["frame"], k["x"]) for k in seq] == [(1, 0), (2, 10), (3, 35)] and seq[-1]["enabled"] is False


def test_tracker_settings_come_from_the_control_and_a_wrong_one_is_named(tmp_path):
    import yaml

    assert tracker_config({}, tmp_path).endswith("bytetrack.yaml")
    assert tracker_config({"model_tracker": "botsort"}, tmp_path).endswith("botsort.yaml")
    changed = yaml.safe_load(Path(tracker_config({"tracker_track_buffer": "60", "tracker_fuse_score": "false"},
                                                 tmp_path)).read_text())
    assert changed["track_buffer"] == 60 and changed["fuse_score"] is False and changed["tracker_type"] == "bytetrack"
    for attrs, named in [({"model_tracker": "sort"}, "model_tracker='sort'"),
                         ({"tracker_max_age": "3"}, "tracker_max_age"),
                         ({"tracker_track_buffer": "long"}, "tracker_track_buffer='long'")]:
        with pytest.raises(LabelConfigError, match=named):
            tracker_config(attrs, tmp_path)


# -- ultralytics' ByteTrack over a generated clip -------------------------------------------------
def tracked_ground_truth(movers: list[Mover], frames: int, jitter: float, tmp_path: Path):
    """Each frame's ground-truth boxes (with jitter) as detections, tracked by ultralytics' own
    ByteTrack exactly as its ``track`` callback runs it: what a detector that finds every item gives."""
    from ultralytics.engine.results import Boxes
    from ultralytics.trackers.byte_tracker import BYTETracker
    from ultralytics.utils import YAML, IterableSimpleNamespace

    tracker = BYTETracker(IterableSimpleNamespace(**YAML.load(tracker_config({}, tmp_path))))
    rng = np.random.default_rng(0)
    shape = (SIZE[1], SIZE[0])
    for index in range(frames):
        dets = [[x, y, x + w, y + h] + rng.uniform(-jitter, jitter, 4) for m in movers if (b := m.boxes.get(index))
                for x, y, w, h in [b]]
        rows = [[*d, 0.9, m.label] for d, m in zip(dets, [m for m in movers if index in m.boxes])]
        tracks = tracker.update(Boxes(np.array(rows, dtype=float).reshape(-1, 6), shape), None)
        yield index, Boxes(tracks[:, :7], shape) if len(tracks) else None


def test_bytetrack_over_a_clip_gives_one_track_per_item_with_its_label_and_a_gap_where_it_hid(tmp_path):
    movers = fashion_movers([1, 8])
    movers[1].hidden = range(20, 26)  # the bag hides for six frames
    clip(tmp_path / "clip.webm", movers, frames=50)
    mapping = {1: "Trouser", 8: "Bag"}
    tracks = collect_tracks(tracked_ground_truth(movers, 50, 0.5, tmp_path), mapping)
    assert sorted(t.label for t in tracks.values()) == ["Bag", "Trouser"], {k: (t.label, len(t.indices)) for k, t in tracks.items()}
    for track in tracks.values():
        mover = next(m for m in movers if NAMES[m.label] == track.label)
        seq = sequence(track, 25.0, 25.0, 0.5)
        assert len(seq) < len(track.indices) / 3  # thinned: straight motion needs few keyframes
        VideoRectangleValue(framesCount=50, duration=2.0, sequence=seq, labels=[track.label])
        for index, (x, y, w, h) in mover.boxes.items():
            if index < track.indices[0]:
                continue  # before the tracker confirmed the track
            drawn = interpolated(seq, index + 1)
            truth = 100 * np.array([x / SIZE[0], y / SIZE[1], w / SIZE[0], h / SIZE[1]])
            assert drawn is not None and np.abs(drawn - truth).max() < 0.5 + 100 * 0.5 / SIZE[1] + 0.4, (index, drawn, truth)
        if track.label == "Bag":  # off while hidden, on again after
            assert any(not k["enabled"] for k in seq[:-1]) and interpolated(seq, 23) is None


def test_probe_names_the_task_for_a_truncated_an_empty_a_non_video_and_an_unknown_codec_file(tmp_path):
    import cv2

    good = clip(tmp_path / "good.mp4", fashion_movers([1]), frames=10) and tmp_path / "good.mp4"
    assert probe(good, "task 1").frames == 10 and probe(good, "task 1").fps == pytest.approx(25.0)
    (tmp_path / "cut.mp4").write_bytes(good.read_bytes()[: good.stat().st_size // 3])
    (tmp_path / "text.mp4").write_bytes(b"these are not the frames you are looking for" * 50)
    clip(tmp_path / "mjpeg.avi", fashion_movers([1]), frames=3)  # a codec no decoder here knows: ZZZZ
    (tmp_path / "codec.avi").write_bytes((tmp_path / "mjpeg.avi").read_bytes().replace(b"MJPG", b"ZZZZ"))
    empty = cv2.VideoWriter(str(tmp_path / "empty.webm"), cv2.VideoWriter_fourcc(*"VP90"), 25, SIZE)
    empty.release()
    for name in ("cut.mp4", "text.mp4", "empty.webm", "codec.avi"):
        with pytest.raises(MediaError, match="task 9") as refused:
            probe(tmp_path / name, "task 9")
        assert refused.value.status == 422


def slow_frames(count: int, seconds: float):
    import time

    for index in range(count):
        time.sleep(seconds)
        yield index


def test_pacing_stops_a_run_projected_past_its_budget_after_a_few_frames_and_reports_progress():
    reports = []
    with pytest.raises(VideoTooLong) as long:
        list(Pacing(budget_s=0.5).frames(slow_frames(1000, 0.01), 1000))
    assert long.value.done == 5 and long.value.projected_s > 5  # ~10 s projected, stopped at the fifth frame
    assert list(Pacing(budget_s=0.5, report=lambda d, t: reports.append((d, t)), report_every_s=0.02).frames(
        slow_frames(20, 0.01), 20)) == list(range(20))
    assert reports[-1] == (20, 20) and len(reports) > 2  # periodic, then the end
    assert len(list(Pacing().frames(slow_frames(30, 0.001), 30))) == 30  # no budget: never stops


# -- /predict -------------------------------------------------------------------------------------
@pytest.fixture
def client(detector_env, tmp_path, monkeypatch):
    monkeypatch.setenv("DETECTOR_BASE_WEIGHTS", str(one_class_checkpoint("detect", detector_env, {0: "trouser", 1: "bag"})))
    monkeypatch.setenv("DETECTOR_SCORE_THRESHOLD", "0")
    monkeypatch.setenv("DETECTOR_MAX_DET", "3")
    settings = CoreSettings(DATA_DIR=tmp_path / "data", WARMUP=False, EMBEDDED_WORKER=False)
    return create_app(DetectorModel, settings, start_worker=False).test_client()


def video_uri(path: Path) -> str:
    return f"data:video/{path.suffix[1:]};base64," + base64.b64encode(path.read_bytes()).decode()


def test_predict_returns_one_videorectangle_region_per_track_in_label_studios_format(client, tmp_path):
    clip(tmp_path / "a.webm", fashion_movers([1, 8]), frames=30)
    task = {"id": 4, "data": {"video": video_uri(tmp_path / "a.webm")}}
    for config, tracked in [(CONFIG.format(low=LOW), True), (CONFIG.format(low=""), False)]:
        reply = client.post("/predict", json={"tasks": [task], "label_config": config, "project": "3.1"})
        assert reply.status_code == 200, reply.get_json()
        (prediction,) = reply.get_json()["results"]
        regions = prediction["result"]
        # random weights score ~0.0002: only trackers told to start tracks that low make any
        assert bool(regions) is tracked, regions
        for region in regions:
            assert region["type"] == "videorectangle" and (region["from_name"], region["to_name"]) == ("box", "video")
            value = region["value"]
            VideoRectangleValue(**value)
            assert value["framesCount"] == 30 and value["duration"] == pytest.approx(1.2)
            assert value["labels"][0] in ("Trouser", "Bag")
            frames = [k["frame"] for k in value["sequence"]]
            assert frames == sorted(set(frames)) and 1 <= frames[0] and frames[-1] <= 30
            assert value["sequence"][-1]["enabled"] is False


def test_a_bad_video_is_a_422_naming_the_task_and_the_other_tasks_still_get_predictions(client, tmp_path):
    good = clip(tmp_path / "a.webm", fashion_movers([1]), frames=15) and tmp_path / "a.webm"
    (tmp_path / "cut.webm").write_bytes(good.read_bytes()[:2000])
    config = CONFIG.format(low=LOW)
    bad = {"id": 7, "data": {"video": video_uri(tmp_path / "cut.webm")}}
    reply = client.post("/predict", json={"tasks": [bad], "label_config": config, "project": "3.1"})
    assert reply.status_code == 422 and "task 7" in reply.get_json()["message"], reply.get_json()
    tasks = [bad, {"id": 8, "data": {"video": video_uri(good)}}, {"id": 9, "data": {"video": ""}}]
    reply = client.post("/predict", json={"tasks": tasks, "label_config": config, "project": "3.1"})
    assert reply.status_code == 200
    assert [bool(p["result"]) for p in reply.get_json()["results"]] == [False, True, False]


def test_a_video_too_long_for_predict_is_left_to_a_prelabel_job_and_the_answer_says_so(client, tmp_path, monkeypatch):
    from backends.detector import model as detector_model

    monkeypatch.setenv("DETECTOR_VIDEO_PREDICT_S", "0.2")
    detector_model.env_settings.cache_clear()
    clip(tmp_path / "long.webm", fashion_movers([1, 8]), frames=60)
    task = {"id": 21, "data": {"video": video_uri(tmp_path / "long.webm")}}
    reply = client.post("/predict", json={"tasks": [task], "label_config": CONFIG.format(low=LOW), "project": "5.1"})
    assert reply.status_code == 200, reply.get_json()
    answer = reply.get_json()
    assert answer["results"] == [[]]  # Label Studio stores no prediction for it now
    (note,) = answer["deferred"]
    assert note["task"] == 21 and "DETECTOR_VIDEO_PREDICT_S=0.2" in note["reason"] and "60 frames" in note["reason"]
    journal = client.application.extensions["labelloop"]["services"].journal
    (job,) = [j for j in journal.list_jobs("detector", 5) if j.kind == "prelabel"]
    assert job.id == note["job"] and job.state == "pending"


def test_a_video_box_without_labels_is_refused_at_setup(client):
    reply = client.post("/setup", json={"project": "3.1", "schema": '<View><Video name="video" value="$video"/>'
                                        '<VideoRectangle name="box" toName="video"/></View>'})
    assert reply.status_code == 422 and '<Labels toName="video">' in reply.get_json()["message"]


# -- a real Label Studio --------------------------------------------------------------------------
@pytest.mark.labelstudio
def test_a_long_video_is_pre_labelled_by_the_background_job_with_frame_progress(label_studio, start_backend, tmp_path):
    base = one_class_checkpoint("detect", tmp_path / "weights", {0: "trouser", 1: "bag"})
    env = {**OFFLINE_ENV, "DETECTOR_BASE_WEIGHTS": base, "DATA_DIR": tmp_path / "det", "LABEL_STUDIO_URL": label_studio.url,
           "LABEL_STUDIO_API_KEY": label_studio.token, "DETECTOR_SCORE_THRESHOLD": 0, "DETECTOR_MAX_DET": 3,
           "DETECTOR_VIDEO_PREDICT_S": 0.2}
    detector = start_backend("backends.detector", env)[1]
    project = label_studio.create_project(CONFIG.format(low=LOW), title="long video")
    clip(tmp_path / "long.webm", fashion_movers([1, 8]), frames=60)
    (task,) = label_studio.upload_images(project, {"long.webm": (tmp_path / "long.webm").read_bytes()}, "video/webm")
    label_studio.connect_backend(project, detector, "detector", train_on_submit=False)
    label_studio.retrieve_predictions(project, [task])  # /predict defers it: nothing stored by this call

    def finished():
        jobs = requests.get(f"{detector}/jobs?project={project}", timeout=5).json()["jobs"]
        return next((j for j in jobs if j["kind"] == "prelabel" and j["state"] in ("done", "failed")), None)

    job = wait_until(finished, 180, "the prelabel job to track the video", interval=1)
    assert job["state"] == "done", job
    assert job["progress"]["video_frames_done"] == job["progress"]["video_frames_total"] >= 60, job["progress"]
    assert job["result"]["created"] == 1, job["result"]
    (stored,) = label_studio.predictions(task)
    assert stored["result"] and {r["type"] for r in stored["result"]} == {"videorectangle"}
    assert stored["model_version"] == "detector-base-detect-2"


def annotation_of(movers: list[Mover], frames: int, every: int = 5) -> list[dict]:
    """A labeler's tracks of the clip's items: a keyframe every ``every`` frames, the last one off."""
    regions = []
    for mover in movers:
        keys = sorted(i for i in mover.boxes if i % every == 0 or i == max(mover.boxes))
        sequence = [{"frame": i + 1, "enabled": i != keys[-1], "rotation": 0, "time": (i + 1) / 25,
                     "x": 100 * x / SIZE[0], "y": 100 * y / SIZE[1], "width": 100 * w / SIZE[0],
                     "height": 100 * h / SIZE[1]} for i in keys for x, y, w, h in [mover.boxes[i]]]
        regions.append({"from_name": "box", "to_name": "video", "type": "videorectangle", "origin": "manual",
                        "value": {"framesCount": frames, "duration": frames / 25, "sequence": sequence,
                                  "labels": [NAMES[mover.label]]}})
    return regions


@pytest.mark.labelstudio
def test_a_clip_labelled_once_teaches_the_detector_to_track_each_item_on_a_new_clip(label_studio, start_backend,
                                                                                    tmp_path):
    """The loop video teams want: one annotated clip, a fine-tune from it, and the next clip of the
    same objects on other paths comes back from the new version tracked, every track labelled as
    the item it follows (not one label for all: upstream #664), one track per item."""
    env = {**OFFLINE_ENV, "DATA_DIR": tmp_path / "det", "LABEL_STUDIO_URL": label_studio.url,
           "LABEL_STUDIO_API_KEY": label_studio.token, "DETECTOR_BASE_WEIGHTS": one_class_checkpoint(
               "detect", tmp_path / "weights", {0: "trouser", 1: "bag"}), "TRAIN_DEBOUNCE_S": 1,
           "DETECTOR_EPOCHS": 30, "DETECTOR_IMGSZ": 160, "DETECTOR_PREDICT_IMGSZ": 160, "DETECTOR_BATCH": 8,
           "DETECTOR_FREEZE": 0, "DETECTOR_PUBLISH": "always", "DETECTOR_PRELABEL": "request"}
    detector = start_backend("backends.detector", env)[1]
    # a short clip: a training frame every 2nd frame (model_sample_s), 50 in all
    project = label_studio.create_project(CONFIG.format(low=' model_sample_s="0.08"'), title="video loop")
    seen = clip(tmp_path / "seen.webm", fashion_movers([1, 8], seed=3), frames=100)
    new = [Mover(m.picture, m.label, (250.0 - m.start[0], 150.0 - m.start[1]), (-m.velocity[0], -0.5 * m.velocity[1]))
           for m in seen]
    clip(tmp_path / "new.webm", new, frames=40)
    tasks = label_studio.upload_images(project, {n: (tmp_path / n).read_bytes() for n in ("seen.webm", "new.webm")},
                                       "video/webm")
    label_studio.connect_backend(project, detector, "detector")
    label_studio.annotate(tasks[0], annotation_of(seen, 100))

    def trained():
        jobs = requests.get(f"{detector}/jobs?project={project}", timeout=5).json()["jobs"]
        return next((j for j in jobs if j["kind"] != "prelabel" and j["state"] in ("done", "failed")), None)

    assert wait_until(trained, 600, "the fine-tune on the annotated clip", interval=2)["state"] == "done"
    versions = requests.get(f"{detector}/versions?project={project}", timeout=5).json()
    current = next(v for v in versions["details"] if v["name"] == versions["current"])
    entry, report = current["controls"]["box"], current["report"]
    assert entry["trained"] and entry["task"] == "detect" and entry["names"] == ["Trouser", "Bag"], entry
    # every 2nd frame of the labelled span (model_sample_s=0.08 at 25 fps), both items on each
    assert report["n_annotated"] == 1 and report["n_boxes"] == 2 * 50 and report["n_negatives"] == 0, report

    label_studio.retrieve_predictions(project, [tasks[1]])
    (stored,) = label_studio.predictions(tasks[1])
    assert stored["model_version"] == versions["current"] != "detector-base-detect-2", stored
    covered = {}
    for region in stored["result"]:  # each track on the item its first box lies on, with that item's label
        first = region["value"]["sequence"][0]
        centre = np.array([first["x"] + first["width"] / 2, first["y"] + first["height"] / 2])
        item = min(new, key=lambda m: np.linalg.norm(centre - box_centre(m, first["frame"] - 1)))
        assert region["value"]["labels"] == [NAMES[item.label]], (region["value"]["labels"], NAMES[item.label])
        covered.setdefault(NAMES[item.label], []).append(len(region["value"]["sequence"]))
    # one track per item: the version's duplicate boxes on an item are folded, its lost stretches stitched
    assert {name: len(lengths) for name, lengths in covered.items()} == {"Bag": 1, "Trouser": 1}, covered


def box_centre(mover: Mover, index: int) -> np.ndarray:
    x, y, w, h = mover.boxes[index]
    return 100 * np.array([(x + w / 2) / SIZE[0], (y + h / 2) / SIZE[1]])


def test_a_region_back_after_a_one_frame_gap_goes_on_and_no_keyframe_passes_the_last_frame():
    track = Track()
    for i in [*range(0, 6), *range(7, 11)]:  # 60 fps file under 24: lost on file frame 6, whose frame 3
        track.add(i, (float(i * i), 0.0, 5.0, 5.0), "Bag", 0.9)  # holds the gap's both ends
    seq = sequence(track, 60.0, 24.0, 0.0, frames_count=4)
    assert [(k["frame"], k["enabled"]) for k in seq] == [(1, True), (2, True), (3, True), (4, False)], seq
    assert seq[2]["x"] == 49.0  # the comeback's box (file frame 7), not the lifespan's end


def test_the_frame_rate_attribute_is_read_whatever_its_case_or_from_the_tasks_data():
    from label_studio_sdk.label_interface import LabelInterface

    from backends.detector.controls import VideoRectangleModel

    for attribute, task, rate in [('frameRate="30"', {}, 30.0), ('framerate="$fps"', {"fps": 50}, 50.0),
                                  ("", {}, 24.0)]:
        config = CONFIG.format(low="").replace('framerate="25.0"', attribute)
        interface = LabelInterface(config)
        control = VideoRectangleModel(interface.get_control("box"), 0.25)
        control.connect(interface)
        assert control.framerate_for({"data": task}) == rate, attribute
    interface = LabelInterface(CONFIG.format(low=' model_stitch_s="0"'))
    control = VideoRectangleModel(interface.get_control("box"), 0.25)
    control.connect(interface)
    assert (control.stitch_s, control.sample_s) == (0.0, 0.5)  # stitching off; sampling keeps its default
    with pytest.raises(LabelConfigError, match="model_stitch_s='-1' is not a number >= 0"):
        interface = LabelInterface(CONFIG.format(low=' model_stitch_s="-1"'))
        VideoRectangleModel(interface.get_control("box"), 0.25).connect(interface)
    with pytest.raises(LabelConfigError, match="model_sample_s='inf'"):
        interface = LabelInterface(CONFIG.format(low=' model_sample_s="inf"'))
        VideoRectangleModel(interface.get_control("box"), 0.25).connect(interface)


def test_a_request_that_would_wait_past_its_budget_for_the_tracker_goes_to_a_job():
    import threading
    import time

    from backends.detector.model import _held

    lock = threading.Lock()
    lock.acquire()  # another video is being tracked
    started = time.monotonic()
    with pytest.raises(VideoTooLong) as long:
        with _held(lock, Pacing(budget_s=0.3)):
            pass
    assert long.value.done == 0 and 0.25 < time.monotonic() - started < 2
    lock.release()
    with _held(lock, Pacing(budget_s=0.3)):
        assert lock.locked()
    assert not lock.locked()
