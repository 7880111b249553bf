"""bench/active_learning.py --quick: the benchmark's whole path runs in CI (1 seed, 3 cycles)."""

import json
import shutil
from dataclasses import asdict

import pytest

from bench import active_learning
from tests.harness import missing_system_dependency


@pytest.mark.timeout(1500)  # a whole (small) benchmark: minutes alone, far more on a busy box
def test_quick_benchmark_writes_curves_for_every_strategy(tmp_path):
    if shutil.which("apt-get") is None and not list((active_learning.fmnist.CACHE).rglob("train-images*")):
        missing_system_dependency("Fashion-MNIST comes from Debian's dataset-fashion-mnist package: apt-get is unavailable here")
    out = tmp_path / "active_learning.json"
    active_learning.main(["--quick", "--out", str(out)])
    result = json.loads(out.read_text())
    assert set(result["strategies"]) == set(active_learning.STRATEGIES)
    assert result["labels"] == [200, 400, 600, 800]
    for name, entry in result["strategies"].items():
        assert len(entry["mean"]) == 4, name
        # Chance is 0.1. 200 labels give ~0.38 on a 2-core CI box and every curve ends far higher after
        # 600 more: a broken selection or training step shows up as a flat or chance-level curve.
        assert min(entry["mean"]) > 0.25, f"{name} starts far above chance (0.1): {entry['mean']}"
        assert entry["mean"][-1] > 0.5, f"{name} learns from the labels it picked: {entry['mean']}"
        assert entry["mean"][-1] > entry["mean"][0] + 0.1, f"{name} improves with labels: {entry['mean']}"
    assert result["strategies"]["random"]["labels_to_reach_random_final"] <= 800
    assert out.with_suffix(".png").stat().st_size > 10_000


def test_a_step_budget_gives_small_labeled_sets_more_epochs():
    fixed = active_learning.Protocol(epochs=30, steps=0)
    assert active_learning.epochs_for(fixed, 200) == active_learning.epochs_for(fixed, 2200) == 30
    steps = active_learning.Protocol(steps=4000, batch=64)
    assert active_learning.epochs_for(steps, 2200) == 117  # ceil(4000 * 64 / 2200)
    assert active_learning.epochs_for(steps, 200) == 1280
    assert active_learning.epochs_for(active_learning.Protocol(steps=1, batch=64), 10_000) == 1


def test_the_default_protocol_trains_on_a_step_budget_and_epochs_turn_it_off():
    def protocol(*argv: str) -> active_learning.Protocol:
        return active_learning.protocol_for(active_learning.argument_parser().parse_args(list(argv)))

    assert protocol().steps == 4000
    assert protocol("--quick").steps == 0  # CI's quick run stays a few minutes
    fixed = protocol("--epochs", "30")
    assert (fixed.steps, fixed.epochs) == (0, 30)
    assert active_learning.epochs_for(fixed, 200) == 30
    assert protocol("--epochs", "30", "--steps", "1000").steps == 1000


def test_a_checkpoint_resumes_only_under_the_protocol_it_was_measured_with(tmp_path):
    path = tmp_path / "run.partial.json"
    first = active_learning.Checkpoint(path, active_learning.Protocol())
    first.put(0, "margin", [0.5, 0.6])
    assert active_learning.Checkpoint(path, active_learning.Protocol()).get(0, "margin") == [0.5, 0.6]
    assert active_learning.Checkpoint(path, active_learning.Protocol(steps=2000)).get(0, "margin") is None


def test_processes_running_one_seed_each_share_the_checkpoint(tmp_path):
    path = tmp_path / "run.partial.json"
    seed0, seed1 = (active_learning.Checkpoint(path, active_learning.Protocol()) for _ in range(2))  # both start empty
    seed0.put(0, "margin", [0.5, 0.6])
    seed1.put(1, "margin", [0.4, 0.7])
    seed0.put(0, "random", [0.5, 0.55])
    both = active_learning.Checkpoint(path, active_learning.Protocol())
    assert both.get(0, "margin") == [0.5, 0.6] and both.get(1, "margin") == [0.4, 0.7] and both.get(0, "random")
    assert active_learning.Checkpoint(path, active_learning.Protocol(width=2)).get(0, "margin") is None


def test_a_results_file_from_before_the_step_budget_counts_as_fixed_epochs(tmp_path):
    # bench/results/active_learning_30_epochs.json was written before Protocol.steps existed: it must not
    # pass for a 4,000-step run when curves are reused.
    old = {"protocol": {k: v for k, v in asdict(active_learning.Protocol(steps=0)).items()
                        if k not in ("steps", "validation")},
           "strategies": {"margin": {"per_seed": [[0.5, 0.6]]}}}
    results = tmp_path / "old.json"
    results.write_text(json.dumps(old))
    with pytest.raises(SystemExit, match="another protocol"):
        active_learning.Checkpoint(None, active_learning.Protocol()).reuse(results, ["margin"])
    fixed_epochs = active_learning.Checkpoint(None, active_learning.Protocol(steps=0))
    assert fixed_epochs.reuse(results, ["margin"]) == ["margin"]


def test_a_committee_selects_on_the_mean_of_models_trained_from_other_seeds():
    import numpy as np
    import torch

    strategy, committee = active_learning.make_strategy("margin:committee=3")
    assert (strategy.name, committee) == ("margin", 3)
    hybrid, alone = active_learning.make_strategy("hybrid:prefilter=5")
    assert (hybrid.prefilter, alone) == (5, 1)
    with pytest.raises(SystemExit, match="no setting 'views'"):
        active_learning.make_strategy("margin:views=2")
    protocol = active_learning.Protocol(steps=20, batch=16)
    x, y = torch.randn(40, 1, 28, 28), np.arange(40) % 10
    model = active_learning.fit(x, y, protocol, seed=0)
    probs = active_learning.infer(model, x[:8]).probs
    other = active_learning.infer(active_learning.fit(x, y, protocol, seed=7919), x[:8]).probs
    averaged = active_learning.committee_probs(probs, x, y, x[:8], 2, protocol, seed=0)
    np.testing.assert_allclose(averaged, (probs + other) / 2, rtol=1e-5, atol=1e-7)
    assert not np.allclose(averaged, probs)  # the second member is another model, not the first again


def test_the_backbone_is_part_of_the_protocol_and_reaches_the_model():
    import numpy as np
    import torch

    resnet = active_learning.protocol_for(active_learning.argument_parser().parse_args(
        ["--backbone", "resnet18_small", "--steps", "2"]))
    assert resnet.backbone == "resnet18_small" and active_learning.Protocol().backbone == "small_cnn"
    model = active_learning.fit(torch.randn(8, 1, 28, 28), np.arange(8) % 10, resnet, seed=0)
    assert model.backbone_name == "resnet18_small" and model.fc.in_features == 512
    checkpoint = active_learning.Checkpoint(None, active_learning.Protocol())
    before_the_option = {k: v for k, v in asdict(active_learning.Protocol()).items() if k != "backbone"}
    assert checkpoint.same_protocol(before_the_option)  # a results file from before counts as small_cnn
    assert not checkpoint.same_protocol(asdict(resnet))


def test_loss_correlations_rank_each_predictor_against_the_real_loss(tmp_path):
    """What ``--validation`` runs record per cycle: a rho in [-1, 1] per predictor, averaged over
    seeds by cycle in the summary."""
    import numpy as np
    import torch

    torch.manual_seed(0)
    model = active_learning.TaskClassifier(10, "small_cnn", in_channels=1)
    x = torch.randn(64, 1, 28, 28)
    y = np.random.default_rng(0).integers(0, 10, 64)
    rho = active_learning.loss_correlations(model, x, y, "cpu")
    assert set(rho) == {"learning_loss", "margin", "entropy", "least_confidence", "learning_loss+margin"}
    assert all(-1 <= value <= 1 for value in rho.values())
    # a model's entropy is its own expected cross-entropy: on its own predicted labels it ranks
    # the real loss better than chance whatever the weights
    own = active_learning.infer(model, x).probs.argmax(1)
    assert active_learning.loss_correlations(model, x, own, "cpu")["entropy"] > 0.3
    checkpoint = active_learning.Checkpoint(tmp_path / "c.partial.json", active_learning.Protocol())
    for seed, value in enumerate((0.2, 0.4)):
        checkpoint.put(seed, f"margin{active_learning.CORRELATIONS}", [{"margin": value}, {"margin": value + 0.1}])
    summary = active_learning.correlation_summary(checkpoint, 2, ["random", "margin"])
    assert summary == {"margin": {"margin": [0.3, 0.4]}}


def test_the_oracle_picks_the_candidates_the_model_gets_most_wrong():
    """``oracle_loss`` is learning_loss fed the real loss: the ceiling of any loss predictor."""
    import numpy as np

    from backends.active.strategies import Pool

    strategy, committee = active_learning.make_strategy(active_learning.ORACLE)
    probs = np.array([[0.9, 0.1], [0.6, 0.4], [0.2, 0.8], [0.5, 0.5]])
    real = active_learning.cross_entropy(probs, np.array([0, 0, 0, 1]))
    assert (strategy.name, strategy.prefilter, committee) == ("learning_loss", 0, 1)
    assert strategy.select(Pool(predicted_loss=real), 2).tolist() == [2, 3]  # p(true) 0.2, then 0.5
