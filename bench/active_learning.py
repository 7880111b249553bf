"""Active-learning benchmark -> bench/results/active_learning.json (+ active_learning.png).

The protocol of Yoo & Kweon 2019 (and the papers they compare with), scaled to a 2-core CPU:
Fashion-MNIST, the 60k training images as the unlabeled pool and the 10k test images for accuracy.
Start with 200 random labels; each cycle draws a random subset of 10,000 unlabeled images (the
paper's subset trick, which also keeps set-based strategies affordable), lets the strategy pick
200 of them, adds them with their true labels, and retrains the task model from scratch. Every
strategy uses the same model (``backends.active.classifier.TaskClassifier``, the ``small_cnn``
backbone with the loss-prediction head), the same epochs and the same seeds; the first model of
each seed is shared by all strategies since they all start from the same 200 labels. Each model
trains for about 4,000 SGD steps (``Protocol.steps``) whatever the size of its labeled set, which
brings every cycle within a point of convergence (``bench/al_convergence.py``).

Reported: test accuracy per cycle (mean +- std over seeds), each strategy's gain over random at
mid-budget, and the labels each needs to reach random's final accuracy (linear interpolation
between cycles; null when it never does within the budget). With ``--validation`` also, per cycle
and run, Spearman's rho on the held-out images between each image's real loss and what predicts
it (the loss-prediction head, margin, entropy, least confidence; ``loss_correlations``): how well
``learning_loss`` can pick the images the model gets most wrong, next to the uncertainty proxies.

    .venv/bin/python bench/active_learning.py            # 3 seeds x 10 cycles (about 5 hours on 2 cores;
                                                         # killed, it resumes from the finished pairs)
    for seed in 0 1 2; do OMP_NUM_THREADS=1 .venv/bin/python bench/active_learning.py --seed $seed & done; wait
    .venv/bin/python bench/active_learning.py            # the same, one process per seed, then the summary
    .venv/bin/python bench/active_learning.py --epochs 30 --out bench/results/active_learning_30_epochs.json
                                                         # the earlier protocol: 30 epochs whatever the set size
    .venv/bin/python bench/active_learning.py --reuse random,entropy,margin,learning_loss,coreset,discriminative
                                                         # re-measure hybrid only, after changing it
    .venv/bin/python bench/active_learning.py --quick    # 1 seed x 3 cycles, small subsets (CI)
    .venv/bin/python bench/active_learning.py --validation 10000 --seeds 2 --cycles 5 \
        --strategies hybrid:prefilter=5,hybrid,hybrid:prefilter=20 --out bench/results/hybrid_prefilter.json
                                                         # choose a setting on held-out training images
    .venv/bin/python bench/active_learning.py --validation 10000 --seeds 2 --cycles 5 \
        --strategies random,learning_loss:prefilter=0,oracle_loss,margin,learning_loss \
        --out bench/results/learning_loss_validation.json
                                                         # learning_loss as the paper ranks it, as we do,
                                                         # and with the real loss: correlations per cycle
    .venv/bin/python bench/active_learning.py --validation 10000 --seeds 2 --cycles 5 \
        --strategies margin,margin:committee=3 --reuse random,margin --out bench/results/committee_validation.json
                                                         # margin on a 3-model committee (after copying
                                                         # margin_subset_10000.json there, to reuse its curves)
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from backends.active.classifier import TaskClassifier, TrainConfig, infer, train  # noqa: E402
from backends.active.strategies import LearningLoss, Pool, Strategy, entropy, get_strategy, least_confidence, margin  # noqa: E402
from bench import checkpoint, fmnist  # noqa: E402
from bench.machine import device_name  # noqa: E402

RESULTS = ROOT / "bench" / "results"
STRATEGIES = ["random", "entropy", "margin", "learning_loss", "coreset", "discriminative", "hybrid", "badge"]
MEAN, STD = 0.2860, 0.3530  # Fashion-MNIST training-set statistics


@dataclass
class Protocol:
    seeds: int = 3
    initial: int = 200
    per_cycle: int = 200
    cycles: int = 10
    subset: int = 10_000
    epochs: int = 30
    #: > 0: train each model for about this many SGD steps instead (epochs = steps x batch / labels,
    #: at least one): a fixed epoch count gives 200 labels a few dozen steps and 2,200 labels ten
    #: times more, so the small early sets end far from convergence (``bench/al_convergence.py``).
    steps: int = 4000
    batch: int = 64
    lr: float = 0.02
    test_limit: int | None = None  # None: the whole 10k test set
    #: > 0: hold this many training images out of the pool and measure on them instead of the test
    #: set, to choose a strategy's settings without looking at the figures that get reported.
    validation: int = 0
    #: where models train and infer. Part of the protocol: GPU kernels round differently, so a curve
    #: measured on one device is not resumed or reused next to another's.
    device: str = "cpu"
    #: channel multiplier of the small_cnn backbone (FLOPs grow with its square).
    width: int = 1
    #: the task model's backbone: small_cnn (the CPU protocol) or resnet18_small, the paper's
    #: CIFAR ResNet-18 (~200x the FLOPs: a GPU's work, ``--device cuda``).
    backbone: str = "small_cnn"

    @classmethod
    def quick(cls) -> Protocol:
        return cls(seeds=1, cycles=3, subset=2000, epochs=6, steps=0, test_limit=2000)


def tensors(images: np.ndarray) -> torch.Tensor:
    return ((torch.from_numpy(images.copy()).float() / 255.0 - MEAN) / STD)[:, None]


def epochs_for(protocol: Protocol, n_labels: int) -> int:
    if protocol.steps <= 0:
        return protocol.epochs
    return max(1, math.ceil(protocol.steps * protocol.batch / max(1, n_labels)))


def fit(x: torch.Tensor, y: np.ndarray, protocol: Protocol, seed: int) -> TaskClassifier:
    torch.manual_seed(seed)
    model = TaskClassifier(10, protocol.backbone, in_channels=1, width=protocol.width)
    config = TrainConfig(epochs=epochs_for(protocol, len(x)), batch=protocol.batch, lr=protocol.lr, seed=seed,
                         device=protocol.device)
    return train(model, x, torch.from_numpy(y).long(), config)


def accuracy(model: TaskClassifier, x: torch.Tensor, y: np.ndarray, device: str = "cpu") -> float:
    return float((infer(model, x, device=device).probs.argmax(1) == y).mean())


#: What a results file written before a protocol field existed was measured under.
WHEN_ABSENT: dict[str, Any] = {"steps": 0, "validation": 0, "device": "cpu", "width": 1, "backbone": "small_cnn"}


class Checkpoint(checkpoint.Checkpoint):
    """Finished (seed, strategy) curves on disk (``bench/checkpoint.py``), so a killed 5-hour run
    resumes where it stopped; a run under other settings never reuses curves measured under different ones."""

    when_absent = WHEN_ABSENT


def run_seed(seed: int, protocol: Protocol, data: dict[str, Any], strategies: list[str],
             checkpoint: Checkpoint) -> dict[str, list[float]]:
    rng = np.random.default_rng(seed)
    device = protocol.device
    x_pool, y_pool, x_test, y_test = data["x_pool"], data["y_pool"], data["x_test"], data["y_test"]
    initial = rng.choice(len(x_pool), protocol.initial, replace=False)
    curves = {name: saved for name in strategies if (saved := checkpoint.get(seed, name)) is not None}
    for name in curves:
        print(f"seed {seed} {name:>14}: resumed from {checkpoint.path}", flush=True)
    if len(curves) == len(strategies):
        return curves  # no need for the shared first model
    first = fit(x_pool[initial], y_pool[initial], protocol, seed)
    first_acc = accuracy(first, x_test, y_test, device)
    print(f"seed {seed}: {protocol.initial} labels, shared start: {first_acc:.4f}", flush=True)
    first_rho = loss_correlations(first, x_test, y_test, device) if protocol.validation else {}  # shared too
    for name in (name for name in strategies if name not in curves):
        strategy, committee = make_strategy(name)
        labeled = initial.copy()
        model, curve = first, [first_acc]
        rho = [first_rho] if protocol.validation else []
        cycle_rng = np.random.default_rng(seed * 1000 + 1)  # same candidate subsets draw for every strategy
        for cycle in range(1, protocol.cycles + 1):
            started = time.time()
            unlabeled = np.setdiff1d(np.arange(len(x_pool)), labeled)
            candidates = cycle_rng.choice(unlabeled, min(protocol.subset, len(unlabeled)), replace=False)
            outputs = infer(model, x_pool[candidates], device=device)
            if name.partition(":")[0] == ORACLE:
                outputs.predicted_loss = cross_entropy(outputs.probs, y_pool[candidates])
            if committee > 1:
                outputs.probs = committee_probs(outputs.probs, x_pool[labeled], y_pool[labeled],
                                                x_pool[candidates], committee, protocol, seed)
            pool = Pool(probs=outputs.probs, embeddings=outputs.embeddings, predicted_loss=outputs.predicted_loss,
                        labeled_embeddings=infer(model, x_pool[labeled], device=device).embeddings,
                        rng=np.random.default_rng(seed * 1000 + cycle))
            picked = candidates[strategy.select(pool, protocol.per_cycle)]
            selected_s = time.time() - started
            labeled = np.concatenate([labeled, picked])
            model = fit(x_pool[labeled], y_pool[labeled], protocol, seed)
            curve.append(accuracy(model, x_test, y_test, device))
            if protocol.validation:
                rho.append(loss_correlations(model, x_test, y_test, device))
            print(f"seed {seed} {name:>14} cycle {cycle}: {len(labeled)} labels acc {curve[-1]:.4f} "
                  f"(select {selected_s:.1f} s, total {time.time() - started:.1f} s)", flush=True)
        curves[name] = curve
        if rho:  # saved first: the curve's entry is what marks the pair done
            checkpoint.put(seed, f"{name}{CORRELATIONS}", rho)
        checkpoint.put(seed, name, curve)
    return {name: curves[name] for name in strategies}


#: checkpoint suffix of a run's per-cycle loss correlations (measured with ``--validation`` only)
CORRELATIONS = "#correlations"


def loss_correlations(model: TaskClassifier, x: torch.Tensor, y: np.ndarray, device: str) -> dict[str, float]:
    """Spearman's rho, over held-out images, between each image's real loss (the task model's
    cross-entropy on its true class) and what ranks images by it: the loss-prediction head
    (``learning_loss``), the uncertainty measures, and the head's and margin's mean rank
    (``learning_loss+margin``). A strategy can only pick high-loss images as well as its score
    orders them."""
    from scipy.stats import rankdata, spearmanr

    out = infer(model, x, device=device)
    real = cross_entropy(out.probs, y)
    predictors = {"learning_loss": out.predicted_loss, "margin": margin(out.probs), "entropy": entropy(out.probs),
                  "least_confidence": least_confidence(out.probs)}
    predictors["learning_loss+margin"] = rankdata(predictors["learning_loss"]) + rankdata(predictors["margin"])
    return {name: round(float(spearmanr(values, real).statistic), 4) for name, values in predictors.items()}


def correlation_summary(checkpoint: Checkpoint, seeds: int, strategies: list[str]) -> dict[str, Any]:
    """Mean rho per predictor and cycle over the seeds, for each run measured with correlations."""
    out: dict[str, Any] = {}
    for name in strategies:
        runs = [rows for seed in range(seeds) if (rows := checkpoint.curves.get(str(seed), {}).get(f"{name}{CORRELATIONS}"))]
        if runs:
            out[name] = {key: [round(float(np.mean([run[c][key] for run in runs])), 4) for c in range(len(runs[0]))]
                         for key in runs[0][0]}
    return out


def committee_probs(probs: np.ndarray, x_labeled: torch.Tensor, y_labeled: np.ndarray, x_candidates: torch.Tensor,
                    size: int, protocol: Protocol, seed: int) -> np.ndarray:
    """The class probabilities of a committee (Beluch et al. 2018, "The power of ensembles for active
    learning"): the task model plus ``size - 1`` more trained on the same labels from other seeds,
    averaged. Only the acquisition sees the committee; the accuracy reported is the task model's,
    so every strategy is still measured on the same single model."""
    members = [probs]
    for member in range(1, size):
        other = fit(x_labeled, y_labeled, protocol, seed + 7919 * member)
        members.append(infer(other, x_candidates, device=protocol.device).probs)
    return np.mean(members, axis=0)


#: the benchmark's own strategy: the paper's learning_loss selection (top n) with the candidates'
#: *real* loss (read from their labels) in place of the head's prediction: what a perfect loss
#: predictor would pick, the ceiling of any top-n ``learning_loss``
ORACLE = "oracle_loss"


def cross_entropy(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    return -np.log(np.clip(probs[np.arange(len(labels)), labels], 1e-12, None))


def make_strategy(spec: str) -> tuple[Strategy, int]:
    """``name`` or ``name:key=value;...`` (e.g. ``hybrid:prefilter=20``), to compare a strategy's settings.
    ``committee=K`` is the benchmark's own: select on the averaged probabilities of K models; so is
    the ``oracle_loss`` strategy (``ORACLE``)."""
    name, _, params = spec.partition(":")
    strategy, committee = LearningLoss(prefilter=0) if name == ORACLE else get_strategy(name), 1
    for pair in filter(None, params.split(";")):
        key, _, value = pair.partition("=")
        if key == "committee":
            committee = int(value)
        elif not hasattr(strategy, key):
            raise SystemExit(f"{name} has no setting {key!r}")
        else:
            setattr(strategy, key, type(getattr(strategy, key))(value))
    return strategy, committee


def labels_to_reach(labels: list[int], curve: list[float], target: float) -> float | None:
    for i, acc in enumerate(curve):
        if acc >= target:
            if i == 0:
                return float(labels[0])
            previous = curve[i - 1]
            fraction = (target - previous) / (acc - previous) if acc > previous else 1.0
            return float(labels[i - 1] + fraction * (labels[i] - labels[i - 1]))
    return None


def summarise(per_seed: list[dict[str, list[float]]], protocol: Protocol) -> dict[str, Any]:
    labels = [protocol.initial + protocol.per_cycle * c for c in range(protocol.cycles + 1)]
    mid = protocol.cycles // 2
    strategies: dict[str, Any] = {}
    for name in per_seed[0]:
        runs = np.array([seed[name] for seed in per_seed])
        strategies[name] = {"mean": runs.mean(0).round(4).tolist(), "std": runs.std(0).round(4).tolist(),
                            "per_seed": runs.round(4).tolist()}
    random_mean = np.array(strategies["random"]["mean"])
    target = float(random_mean[-1])
    for entry in strategies.values():
        mean = np.array(entry["mean"])
        needed = labels_to_reach(labels, mean.tolist(), target)
        entry["gain_over_random_points"] = ((mean - random_mean) * 100).round(2).tolist()
        entry["gain_mid_budget_points"] = round(float(mean[mid] - random_mean[mid]) * 100, 2)
        entry["labels_to_reach_random_final"] = None if needed is None else round(needed, 1)
        entry["label_saving_vs_random"] = None if needed is None else round(1 - needed / labels[-1], 3)
    best = max((n for n in strategies if n != "random"), key=lambda n: strategies[n]["gain_mid_budget_points"])
    return {"labels": labels, "mid_budget_labels": labels[mid], "random_final_accuracy": round(target, 4),
            "strategies": strategies, "best_mid_budget": best,
            "goals": {"best_gain_mid_budget_ge_3_points": strategies[best]["gain_mid_budget_points"] >= 3.0,
                      "some_strategy_saves_ge_25pct": any((s["label_saving_vs_random"] or 0) >= 0.25
                                                          for n, s in strategies.items() if n != "random")}}


def plot(summary: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    labels = summary["labels"]
    for name, entry in summary["strategies"].items():
        mean, std = np.array(entry["mean"]), np.array(entry["std"])
        ax.plot(labels, mean * 100, marker="o", markersize=3, label=name, linewidth=2 if name == "random" else 1.2)
        ax.fill_between(labels, (mean - std) * 100, (mean + std) * 100, alpha=0.15)
    ax.set_xlabel("labeled images")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("Fashion-MNIST active learning (mean ± std over seeds)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def load_data(protocol: Protocol) -> dict[str, Any]:
    x_pool, y_pool = fmnist.load("train")
    x_test, y_test = fmnist.load("test")
    if protocol.validation:
        held_out = np.random.default_rng(12345).permutation(len(x_pool))
        x_test, y_test = x_pool[held_out[:protocol.validation]], y_pool[held_out[:protocol.validation]]
        x_pool, y_pool = x_pool[held_out[protocol.validation:]], y_pool[held_out[protocol.validation:]]
    if protocol.test_limit:
        x_test, y_test = x_test[:protocol.test_limit], y_test[:protocol.test_limit]
    return {"x_pool": tensors(x_pool), "y_pool": y_pool.astype(np.int64), "x_test": tensors(x_test),
            "y_test": y_test.astype(np.int64)}


def run(protocol: Protocol, strategies: list[str] | None = None, out: Path | None = None,
        reuse: list[str] | None = None, only_seed: int | None = None) -> dict[str, Any] | None:
    # every core unless OMP_NUM_THREADS says otherwise (several runs side by side, one thread each)
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS") or os.cpu_count() or 1))
    strategies = strategies or STRATEGIES
    if "random" not in strategies:
        strategies = ["random", *strategies]
    data = load_data(protocol)
    started = time.time()
    checkpoint = Checkpoint(out.with_suffix(".partial.json") if out is not None else None, protocol)
    if reuse and out is not None:
        print(f"reusing {checkpoint.reuse(out, reuse)} from {out}", flush=True)
    if only_seed is not None:  # one seed's share of a run split across processes: checkpointed only
        run_seed(only_seed, protocol, data, strategies, checkpoint)
        return None
    per_seed = [run_seed(seed, protocol, data, strategies, checkpoint) for seed in range(protocol.seeds)]
    summary = summarise(per_seed, protocol)
    if protocol.validation:
        summary["loss_correlation"] = correlation_summary(checkpoint, protocol.seeds, strategies)
    result = {"protocol": asdict(protocol), "pool": len(data["x_pool"]), "test": len(data["y_test"]),
              "measured_on": f"{protocol.validation} training images held out" if protocol.validation else "test set",
              "model": f"TaskClassifier({protocol.backbone}, width {protocol.width}) + loss-prediction head", **summary,
              "seconds": round(time.time() - started, 1), "pairs_resumed": checkpoint.resumed,
              "pairs_measured": protocol.seeds * len(strategies) - checkpoint.resumed,
              "machine": {"cpus": os.cpu_count(), "device": device_name(protocol.device)}}
    checkpoint.finish(out, result, lambda png: plot(summary, png))
    return result


def argument_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="1 seed, 3 cycles, small subsets (for CI)")
    parser.add_argument("--seeds", type=int)
    parser.add_argument("--cycles", type=int)
    parser.add_argument("--epochs", type=int, help="a fixed epoch count per model, whatever its labeled set "
                                                    "(turns the default --steps budget off)")
    parser.add_argument("--steps", type=int, help="train each model for about this many SGD steps (default "
                                                   f"{Protocol.steps}; see Protocol.steps)")
    parser.add_argument("--subset", type=int, help="candidates drawn from the unlabeled pool each cycle (default "
                                                    f"{Protocol.subset})")
    parser.add_argument("--device", help="where models train and infer: cpu (default), cuda")
    parser.add_argument("--width", type=int, help="channel multiplier of the small_cnn backbone (default 1)")
    parser.add_argument("--backbone", choices=["small_cnn", "resnet18_small"],
                        help="the task model's backbone (default small_cnn; resnet18_small wants --device cuda)")
    parser.add_argument("--seed", type=int, help="run only this seed, into the checkpoint beside --out (several "
                                                 "processes, one seed each); then run without --seed to summarise")
    parser.add_argument("--validation", type=int, help="measure on N training images held out of the pool, "
                                                      "not the test set (to choose settings)")
    parser.add_argument("--strategies", default=",".join(STRATEGIES))
    parser.add_argument("--out", type=Path, default=RESULTS / "active_learning.json")
    parser.add_argument("--reuse", default="", help="strategies whose curves are taken from --out (same protocol) "
                                                     "instead of re-measured, e.g. after changing one strategy")
    return parser


def protocol_for(args: argparse.Namespace) -> Protocol:
    protocol = Protocol.quick() if args.quick else Protocol()
    if args.epochs is not None and args.steps is None:
        protocol.steps = 0  # asking for epochs means a fixed epoch count, not the default step budget
    for field in ("seeds", "cycles", "epochs", "steps", "subset", "validation", "device", "width", "backbone"):
        if getattr(args, field) is not None:
            setattr(protocol, field, getattr(args, field))
    return protocol


def main(argv: list[str] | None = None) -> dict[str, Any] | None:
    args = argument_parser().parse_args(argv)
    protocol = protocol_for(args)
    if args.seed is not None and not 0 <= args.seed < protocol.seeds:
        raise SystemExit(f"--seed {args.seed}: the protocol has seeds 0 to {protocol.seeds - 1}")
    result = run(protocol, args.strategies.split(","), args.out, [n for n in args.reuse.split(",") if n], args.seed)
    if result is None:
        print(f"seed {args.seed} checkpointed in {args.out.with_suffix('.partial.json')}")
        return None
    print(json.dumps({k: v for k, v in result.items() if k != "strategies"}, indent=2))
    for name, entry in result["strategies"].items():
        print(f"{name:>15}: final {entry['mean'][-1]:.4f}  mid-budget gain {entry['gain_mid_budget_points']:+.2f} pts"
              f"  labels to random's final: {entry['labels_to_reach_random_final']}")
    return result


if __name__ == "__main__":
    main()
