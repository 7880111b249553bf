"""bench/active_detection.py --quick: the detection benchmark's whole path runs in CI (tiny sets, 2 cycles)."""

import json
import shutil

import numpy as np
import pytest

from bench import active_detection, scenes
from tests.harness import missing_system_dependency


def _fashion_mnist_or_skip() -> None:
    if shutil.which("apt-get") is None and not list(active_detection.fmnist.CACHE.rglob("train-images*")):
        missing_system_dependency("Fashion-MNIST comes from Debian's dataset-fashion-mnist package: apt-get is unavailable here")


@pytest.mark.timeout(1500)  # a whole (tiny) benchmark: a few minutes alone, more on a busy box
def test_quick_detection_benchmark_writes_curves_for_every_strategy(tmp_path):
    _fashion_mnist_or_skip()
    out = tmp_path / "active_detection.json"
    active_detection.main(["--quick", "--out", str(out), "--work", str(tmp_path / "work")])
    result = json.loads(out.read_text())
    protocol = active_detection.Protocol.quick()
    assert set(result["strategies"]) == set(active_detection.STRATEGIES)
    assert result["labels"] == [8, 16, 24]
    for name, entry in result["strategies"].items():
        for metric in active_detection.METRICS:
            curve = entry["mean"][metric]
            assert len(curve) == protocol.cycles + 1, (name, metric)
            assert all(0.0 <= v <= 1.0 for v in curve), (name, metric, curve)
    # the ridge and the uncertainty proxies were measured against the real loss after every cycle
    for run in ("random", "learning_loss"):
        correlations = result["loss_correlation"][run]
        assert {"ridge", "margin_max", "margin_sum", "entropy_max"} <= set(correlations), correlations
        assert all(len(values) == protocol.cycles + 1 for values in correlations.values())
    assert out.with_suffix(".png").stat().st_size > 10_000
    assert not out.with_suffix(".partial.json").exists()  # a finished run leaves no checkpoint


def test_a_strategy_picks_what_the_active_backends_queue_would_serve_first(tmp_path, monkeypatch):
    """select() is the backend's ranking: the picks are the lowest stable_scores of the candidates,
    none of them already labeled, and a second call with the same inputs picks the same."""
    _fashion_mnist_or_skip()
    calls = []
    real = active_detection.stable_scores

    def spy(pool, strategy, queue_size):
        scores = real(pool, strategy, queue_size)
        calls.append(scores)
        return scores

    monkeypatch.setattr(active_detection, "stable_scores", spy)
    canvases = active_detection.Canvases(*scenes.scenes(*_items(), [5, 6, 7, 8, 9], 12, size=96,
                                                                  longest=(20, 40), seed=5))
    data = active_detection.Data(pool=canvases, test=canvases, validation=canvases)
    weights = tmp_path / "start.pt"
    active_detection.save_checkpoint(active_detection.adapt_head(
        active_detection.load_model("yolo11n.yaml").model.model, active_detection.NAMES), weights)
    scorer = active_detection.Scorer(weights, active_detection.Protocol(imgsz=96))
    candidates = np.arange(4, 12)
    picked, _ = active_detection.select("margin_max", scorer, data, [0, 1, 2, 3], candidates, 3, seed=0)
    assert len(picked) == 3 and set(picked) <= set(candidates.tolist())
    assert picked == [int(candidates[i]) for i in np.argsort(calls[0], kind="stable")[:3]]
    again, _ = active_detection.select("margin_max", scorer, data, [0, 1, 2, 3], candidates, 3, seed=0)
    assert again == picked


def test_scenes_have_a_rare_class_overlaps_within_bounds_and_exact_boxes():
    _fashion_mnist_or_skip()
    images, labels = _items()
    weights = [0.2375, 0.2375, 0.2375, 0.05, 0.2375]
    canvases, boxes = scenes.scenes(images, labels, [5, 6, 7, 8, 9], 300, weights=weights, seed=0)
    counts = np.bincount([k for per in boxes for k, *_ in per], minlength=5)
    assert 0.025 < counts[3] / counts.sum() < 0.08  # the rare class near its 5 %
    assert min(len(b) for b in boxes) >= 1 and max(len(b) for b in boxes) == 6
    for per in boxes:
        for j, (_, *later) in enumerate(per):
            for _, *earlier in per[:j]:
                assert scenes.covered(tuple(later), tuple(earlier)) <= 0.3 + 1e-9
    for canvas, per in zip(canvases[:20], boxes[:20]):
        for _, x, y, w, h in per:
            assert 0 <= x and x + w <= canvas.shape[1] and 0 <= y and y + h <= canvas.shape[0]
            assert 40 <= max(w, h) <= 130


def _items():
    return active_detection.fmnist.load("train")


def test_processes_of_other_seeds_keep_each_others_latest_progress_and_other_protocols_are_refused(tmp_path):
    from bench.checkpoint import Checkpoint

    path = tmp_path / "run.partial.json"
    seed0, seed1 = Checkpoint(path, active_detection.Protocol()), Checkpoint(path, active_detection.Protocol())
    for cycle in range(1, 4):  # seed 1 saves three cycles while seed 0's process holds an old copy
        seed1.put(1, "margin_max", {"metrics": list(range(cycle))})
        seed0.put(0, "margin_max", {"metrics": list(range(cycle))})
    seed0.put(0, "random", {"metrics": [0]})
    saved = Checkpoint(path, active_detection.Protocol())
    assert saved.get(1, "margin_max") == {"metrics": [0, 1, 2]} and saved.get(0, "random") == {"metrics": [0]}
    with pytest.raises(SystemExit, match="another protocol"):
        Checkpoint(path, active_detection.Protocol.quick()).put(0, "random", {"metrics": []})
    assert Checkpoint(path, active_detection.Protocol()).get(1, "margin_max") == {"metrics": [0, 1, 2]}
