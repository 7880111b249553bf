"""bench/active_learning.py --quick: the benchmark's whole path runs in CI (1 seed, 3 cycles)."""

import json
import shutil

import pytest

from bench import active_learning


def test_quick_benchmark_writes_curves_for_every_strategy(tmp_path):
    if shutil.which("apt-get") is None and not list((active_learning.fmnist.CACHE).rglob("train-images*")):
        pytest.skip("Fashion-MNIST comes from Debian's dataset-fashion-mnist package: apt-get is unavailable here")
    out = tmp_path / "active_learning.json"
    active_learning.main(["--quick", "--out", str(out)])
    result = json.loads(out.read_text())
    assert set(result["strategies"]) == set(active_learning.STRATEGIES)
    assert result["labels"] == [200, 400, 600, 800]
    for name, entry in result["strategies"].items():
        assert len(entry["mean"]) == 4, name
        assert min(entry["mean"]) > 0.4, f"{name} learns far above chance (0.1): {entry['mean']}"
    assert result["strategies"]["random"]["labels_to_reach_random_final"] <= 800
    assert out.with_suffix(".png").stat().st_size > 10_000
