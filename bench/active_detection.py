"""Active learning for detection -> bench/results/active_detection.json (+ active_detection.png).

Does the queue save labels for a team that draws boxes? ``bench/active_learning.py`` answers it for
classification; this is the same protocol for the detector and the active backend's detection code:

- **Images**: ``bench/scenes.py``: 1-6 Fashion-MNIST items per 320 px canvas on crops of real photos,
  longest side 40-130 px, overlapping up to 30 % of a box. Target classes Sandal, Shirt, Sneaker, Bag,
  Ankle boot, with **Bag rare** (5 % of the objects; the others share the rest). Pool, validation and
  test canvases are drawn from disjoint Fashion-MNIST items (training images 0-49,999, 50,000-59,999
  and the test images).
- **Model**: yolo11n pretrained on canvases of the five *other* classes (as ``bench/detector.py``
  (b); offline its start is random weights, so the base is what gives it features), fine-tuned by the
  detector's own training code (``backends.detector.training.fine_tune``, its split and dataset
  writer, its hyper-parameters except image size and epochs). Like a project, each cycle continues
  from the previous cycle's weights (the serving version), on all the labels so far.
- **Loop**: 50 random labeled canvases, then 8 cycles of 50 picked by the strategy. Each cycle scores
  ``candidates`` unlabeled canvases drawn at random (the subset trick of Yoo & Kweon 2019, which keeps
  set-based strategies and inference affordable; the same draw for every strategy of a seed) with the
  active backend's detection code: ``DetectorTaskModel.outputs`` (boxes at the detector's serving
  score threshold, pooled backbone embeddings), ``ranking.build_pool`` (per-box uncertainty aggregated
  per image; ``learning_loss``'s ridge regression from the labeled canvases' embeddings and box
  uncertainties to their 1 - F1), and ``ranking.stable_scores``, the order Label Studio serves with ``ACTIVE_QUEUE_SIZE``
  set to the round's 50 (set-based strategies choose those 50 as one batch). They go to the labeler.
  ``oracle_loss`` is the benchmark's own: ``learning_loss`` ranked by each candidate's real loss
  (read from its true boxes), what a perfect loss predictor would pick: if it does not beat random,
  no loss predictor can.
- **Measured** on the test canvases after every cycle: mAP50-95, mAP50 and the rare class's AP50-95
  and AP50 (ultralytics' val), mean +- std over seeds; the labels each strategy needs to reach
  random's final mAP50-95; the rare class's AP gain over random at mid-budget. And, for the models of
  the ``random`` and ``learning_loss`` runs, the Spearman correlation on the validation canvases
  between each image's real loss (1 - F1 at IoU 0.5, ``report.detection_loss``) and what predicts it:
  ``learning_loss``'s ridge (``ridge``; fit on the held-out split only: ``ridge_held_out``; on the
  embedding or the box uncertainties alone: ``ridge_embedding_only``, ``ridge_uncertainty_only``),
  and box uncertainty (``margin_max``, ``margin_mean``, ``margin_sum``, ``entropy_max``, ``boxes``
  (the box count)).

Sizes (the defaults), chosen from a probe at larger ones on 2 CPU cores: at 320 px one labeled canvas
costs ~55 ms per epoch of fine-tuning (the 20 % val split's pass included: 58 s for 10 epochs at 100
labels), inference with embeddings ~48 ms a canvas (scoring 1,000 candidates took 50 s), and
measuring 1,000 test canvases ~30 s. The work is dominated by training, which grows with the labels
(50 to 450), so: 5 epochs a cycle (each cycle continues from the last, so the model at 450 labels
has had 45 epochs; fewer left the first cycles' models at a few points of mAP, where no ranking
means much), 500 candidates a cycle (ten times the 50 picked, as Yoo & Kweon's subset), 1,000 test
canvases (~3,400 objects, ~130 of the rare class, whose AP is what the queue is judged on) and
300 validation canvases. One (seed, strategy) run then takes
~22 minutes on 2 cores (train ~13, score ~4, measure ~5; the ``random`` and ``learning_loss`` runs
~4.5 more for the loss correlations): 9 strategies x 3 seeds is about 10 hours, plus 20 minutes
once for the base (600 canvases x 20 epochs, shared by every run with the same ``BASE_FIELDS``).
That is more than the 6 hours first aimed at: the 1,000-canvas test set and the epochs were kept,
and the time is spread instead: the run checkpoints after every cycle beside ``--out`` and resumes
from there, and ``--seed K`` runs one seed's share, so three processes on a machine with 6 cores
or more finish in about 3.5 hours. Every cycle's weights are kept (~5 MB each, ~1.4 GB for the run)
so a measurement can be repeated without training again. ``--evaluate-on validation`` measures on
the validation canvases instead of the test set, to choose settings without looking at the
figures that get reported.

    .venv/bin/python bench/active_detection.py                       # the full run (~10 h on 2 cores)
    .venv/bin/python bench/active_detection.py --seed 1              # one seed's share (several processes)
    .venv/bin/python bench/active_detection.py --device cuda --epochs 30 --imgsz 640 \\
        --out bench/results/active_detection_gpu.json               # a GPU: longer training, full size
    .venv/bin/python bench/active_detection.py --quick               # CI: the whole path on a toy budget
    .venv/bin/python bench/active_detection.py --evaluate-on validation --strategies margin_max,margin_sum
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("YOLO_OFFLINE", "1")

import numpy as np  # noqa: E402

from backends.active.ranking import MIN_LOSS_SAMPLES, build_pool, loss_features, ridge_predictor, stable_scores  # noqa: E402
from backends.active.report import Truth, detection_loss  # noqa: E402
from backends.active.task_models import DetectorTaskModel, ImageOutputs  # noqa: E402
from backends.core.media import LoadedImage  # noqa: E402
from backends.core.model import parse_label_config  # noqa: E402
from backends.detector.dataset import Sample, split, write_dataset  # noqa: E402
from backends.detector.settings import DetectorSettings  # noqa: E402
from backends.detector.training import adapt_head, evaluate, fine_tune, save_checkpoint  # noqa: E402
from backends.detector.weights import load_model  # noqa: E402
from bench import fmnist, scenes  # noqa: E402
from bench.active_learning import labels_to_reach  # noqa: E402
from bench.checkpoint import Checkpoint  # noqa: E402
from bench.machine import device_name  # noqa: E402

RESULTS = ROOT / "bench" / "results"
BASE_CLASSES, TARGET_CLASSES = [0, 1, 2, 3, 4], [5, 6, 7, 8, 9]
NAMES = [fmnist.NAMES[c] for c in TARGET_CLASSES]
RARE = "Bag"
#: benchmark name -> (the active backend's strategy, its box aggregation)
STRATEGIES: dict[str, tuple[str, str]] = {
    "random": ("random", "max"), "margin_max": ("margin", "max"), "margin_mean": ("margin", "mean"),
    "margin_sum": ("margin", "sum"), "learning_loss": ("learning_loss", "max"), "coreset": ("coreset", "max"),
    "badge": ("badge", "max"), "hybrid": ("hybrid", "max"), "oracle_loss": ("learning_loss", "max"),
}
#: the benchmark's own strategy: learning_loss ranked by the candidates' *real* loss (1 - F1 against
#: their true boxes) instead of the ridge's prediction: what a perfect loss predictor would pick,
#: the ceiling of any ``learning_loss``
ORACLE = "oracle_loss"
METRICS = ("map50_95", "map50", "rare_ap50_95", "rare_ap50")
USES_LABELED = ("learning_loss", "coreset", "discriminative")  # strategies whose ranking reads labeled outputs
CORRELATED = ("random", "learning_loss")  # runs whose models get the loss-correlation measurement
CONFIG = ('<View><Image name="image" value="$image"/><RectangleLabels name="label" toName="image">'
          + "".join(f'<Label value="{name}"/>' for name in NAMES) + "</RectangleLabels></View>")


@dataclass
class Protocol:
    seeds: int = 3
    initial: int = 50
    per_cycle: int = 50
    cycles: int = 8
    pool: int = 5000
    test: int = 1000
    validation: int = 300
    candidates: int = 500  # unlabeled canvases scored per cycle
    imgsz: int = 320
    epochs: int = 5  # per cycle, continuing from the previous cycle's weights
    batch: int = 16
    base_canvases: int = 600
    base_epochs: int = 20
    rare_share: float = 0.05
    evaluate_on: str = "test"
    device: str = "cpu"
    box_threshold: float = 0.05  # ACTIVE_BOX_THRESHOLD: the boxes uncertainty is computed from

    @classmethod
    def quick(cls) -> Protocol:
        return cls(seeds=1, initial=8, per_cycle=8, cycles=2, pool=48, test=16, validation=16, candidates=24,
                   imgsz=128, epochs=1, batch=8, base_canvases=16, base_epochs=1)

    def key(self, fields: tuple[str, ...] | None = None) -> str:
        """A name for what ``fields`` (default: all) of the protocol determine."""
        chosen = {k: v for k, v in asdict(self).items() if fields is None or k in fields}
        return hashlib.sha256(json.dumps(chosen, sort_keys=True).encode()).hexdigest()[:12]


#: what the base weights depend on: runs that differ in anything else share one base
BASE_FIELDS = ("imgsz", "batch", "base_canvases", "base_epochs", "device")


@dataclass
class Canvases:
    """Grey canvases and their boxes (class index within ``NAMES``, x, y, w, h in px)."""

    images: np.ndarray
    boxes: list[list[scenes.Box]]

    def items(self, indices: Any) -> list[tuple[Any, list[scenes.Box]]]:
        return [(scenes.rgb(self.images[i]), self.boxes[i]) for i in indices]

    def truth(self, i: int) -> Truth:
        """The labeler's boxes for canvas ``i`` as the active backend reads a submitted annotation."""
        size = self.images.shape[1]
        return Truth(int(i), boxes=[(100 * x / size, 100 * y / size, 100 * w / size, 100 * h / size)
                                    for _, x, y, w, h in self.boxes[i]],
                     box_labels=[NAMES[k] for k, *_ in self.boxes[i]])


@dataclass
class Data:
    pool: Canvases
    test: Canvases
    validation: Canvases
    test_yaml: Path = field(default=Path())  # the canvases measured on, as a YOLO dataset


def make_data(protocol: Protocol, work: Path) -> Data:
    x, y = fmnist.load("train")
    xt, yt = fmnist.load("test")
    weights = [protocol.rare_share if NAMES[i] == RARE else (1 - protocol.rare_share) / (len(NAMES) - 1)
               for i in range(len(NAMES))]

    def draw(images: np.ndarray, labels: np.ndarray, n: int, seed: int) -> Canvases:
        return Canvases(*scenes.scenes(images, labels, TARGET_CLASSES, n, size=320, weights=weights, seed=seed))

    data = Data(pool=draw(x[:50_000], y[:50_000], protocol.pool, 1), test=draw(xt, yt, protocol.test, 2),
                validation=draw(x[50_000:], y[50_000:], protocol.validation, 3))
    measured = data.validation if protocol.evaluate_on == "validation" else data.test
    root = work / f"{protocol.evaluate_on}-data"
    done = root / "complete"

    def write() -> None:
        yolo_set(root, measured.items(range(len(measured.boxes))), NAMES, val_ratio=0.999)
        done.touch()

    built_once(done, write)  # --seed processes share it: written once, never under another's reads
    data.test_yaml = root / "data.yaml"
    return data


def built_once(done: Path, build: Callable[[], None]) -> None:
    """Run ``build`` unless ``done`` exists, one process at a time (``--seed`` processes share the work
    folder). ``build`` creates ``done`` last, so a run killed half-way builds it again."""
    done.parent.mkdir(parents=True, exist_ok=True)
    with open(done.parent / f".{done.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not done.exists():
            build()


def yolo_set(root: Path, items: list[tuple[Any, list[scenes.Box]]], names: list[str], val_ratio: float,
             seed: int = 0) -> Path:
    """A YOLO dataset of ``items`` written by the detector's own dataset writer and split."""
    samples, images = [], {}
    for i, (img, boxes) in enumerate(items):
        w, h = img.size
        samples.append(Sample(i, "", [(c, (bx + bw / 2) / w, (by + bh / 2) / h, bw / w, bh / h)
                                      for c, bx, by, bw, bh in boxes]))
        images[i] = img
    train, val = split(list(images), val_ratio, seed)
    if root.exists():
        shutil.rmtree(root)
    return write_dataset(root, samples, images, names, train, val)


def settings_for(protocol: Protocol, *, epochs: int, freeze: int, seed: int) -> DetectorSettings:
    """The detector's training settings (freeze, lr0, patience, val_ratio: its defaults) at the
    protocol's image size and epochs."""
    return DetectorSettings(imgsz=protocol.imgsz, batch=protocol.batch, epochs=epochs, device=protocol.device,
                            seed=seed, freeze=freeze)


def train_base(protocol: Protocol, work: Path) -> Path:
    """yolo11n trained on scenes of the five other classes; kept beside ``work`` for resumed runs and
    for runs of other strategies or sizes (it depends on ``BASE_FIELDS`` only)."""
    done = work.parent / f"base-{protocol.key(BASE_FIELDS)}.pt"
    built_once(done, lambda: _train_base(protocol, work / "base", done))
    return done


def _train_base(protocol: Protocol, work: Path, done: Path) -> None:
    x, y = fmnist.load("train")
    base_names = [fmnist.NAMES[c] for c in BASE_CLASSES]
    images, boxes = scenes.scenes(x[:50_000], y[:50_000], BASE_CLASSES, protocol.base_canvases, seed=11)
    data = yolo_set(work / "base-data", Canvases(images, boxes).items(range(len(boxes))), base_names, 0.1)
    scratch = save_checkpoint(adapt_head(load_model("yolo11n.yaml").model.model, base_names), work / "scratch.pt")
    trainer = fine_tune(scratch, data, work / "base", settings_for(protocol, epochs=protocol.base_epochs, freeze=0,
                                                                    seed=0))
    shutil.copy(trainer.best, done.with_suffix(".tmp"))
    done.with_suffix(".tmp").replace(done)
    print(f"base: {protocol.base_canvases} canvases x {protocol.base_epochs} epochs -> {done}", flush=True)


def target_start(base: Path, work: Path) -> Path:
    """The base with its head adapted to the target classes (``adapt_head``, as a project's first version)."""
    path = work / "start.pt"

    def write() -> None:
        save_checkpoint(adapt_head(load_model(str(base)).model.model, NAMES), path.with_suffix(".tmp"))
        path.with_suffix(".tmp").replace(path)

    built_once(path, write)
    return path


def train_cycle(start: Path, data: Data, labeled: list[int], protocol: Protocol, workdir: Path, seed: int) -> Path:
    """Fine-tune ``start`` on the labeled canvases; the cycle's best weights, copied out of ultralytics' run."""
    yaml = yolo_set(workdir / "data", data.pool.items(labeled), NAMES, DetectorSettings().val_ratio, seed)
    settings = settings_for(protocol, epochs=protocol.epochs, freeze=DetectorSettings().freeze, seed=seed)
    trainer = fine_tune(start, yaml, workdir, settings)
    weights = workdir / "weights.pt"
    shutil.copy(trainer.best, weights)
    shutil.rmtree(workdir / "runs", ignore_errors=True)
    shutil.rmtree(workdir / "data", ignore_errors=True)
    return weights


def measure(weights: Path, data: Data, protocol: Protocol, workdir: Path) -> dict[str, float]:
    settings = settings_for(protocol, epochs=1, freeze=0, seed=0)
    result = evaluate(weights, data.test_yaml, settings, NAMES, workdir=workdir)
    shutil.rmtree(workdir / "runs", ignore_errors=True)
    rare = result["per_class"].get(RARE, {"map50_95": 0.0, "map50": 0.0})  # absent: never detected
    return {"map50_95": round(result["map50_95"], 4), "map50": round(result["map50"], 4),
            "rare_ap50_95": round(rare["map50_95"], 4), "rare_ap50": round(rare["map50"], 4)}


class Scorer:
    """The active backend's view of one model version: its ``DetectorTaskModel``, boxes at the
    detector's serving score threshold, doubts down to the protocol's ``box_threshold`` (the active
    backend's ``ACTIVE_BOX_THRESHOLD``), on the protocol's image size."""

    def __init__(self, weights: Path, protocol: Protocol) -> None:
        control = parse_label_config(CONFIG).get_control("label")
        self.model = DetectorTaskModel(weights.parent.name, weights, control, DetectorSettings().score_threshold,
                                       device=_device(protocol.device), imgsz=protocol.imgsz,
                                       doubt_threshold=protocol.box_threshold)

    def outputs(self, canvases: Canvases, indices: Any, chunk: int = 64) -> list[ImageOutputs]:
        out: list[ImageOutputs] = []
        indices = list(indices)
        for start in range(0, len(indices), chunk):
            # what the scoring job hands it: loaded task images (no URL or content key needed here)
            part = canvases.items(indices[start:start + chunk])
            out.extend(self.model.outputs([LoadedImage(img, "", "") for img, _ in part]))
        return out


def _device(device: str) -> str:
    from backends.core.devices import resolve_device

    return resolve_device(device)


def select(name: str, scorer: Scorer, data: Data, labeled: list[int], candidates: np.ndarray, n: int,
           seed: int) -> tuple[list[int], str | None]:
    """The ``n`` candidates Label Studio would serve first under the strategy, and the ranking's note."""
    strategy, aggregate = STRATEGIES[name]
    if strategy == "random":
        return [int(i) for i in np.random.default_rng(seed).choice(candidates, n, replace=False)], None
    unlabeled_out = scorer.outputs(data.pool, candidates)
    # the labeled canvases' outputs only where the ranking reads them (the backend computes them for
    # its blind-spot report too, which is not measured here): a third of the scoring time saved
    # (the oracle's ranking replaces the regressor's, which needs them)
    labeled_out = scorer.outputs(data.pool, labeled) if strategy in USES_LABELED and name != ORACLE else []
    losses = [detection_loss(out, data.pool.truth(i)) for i, out in zip(labeled, labeled_out)]
    pool, note = build_pool(unlabeled_out, labeled_out, strategy, labeled_losses=losses, aggregate=aggregate,  # type: ignore[arg-type]
                            seed=seed)
    if name == ORACLE:
        pool.predicted_loss = np.array([detection_loss(out, data.pool.truth(int(i)))
                                        for i, out in zip(candidates, unlabeled_out)])
        note = None  # build_pool's "too few labels for the regressor": no regressor is used
    # the queue as the backend writes it with ACTIVE_QUEUE_SIZE set to a labeling round (n): set-based
    # strategies choose their head of n as one batch, as they are designed to. At the default 1,000
    # the head would be all 500 candidates, and hybrid's clustering would leave margin's order
    order = np.argsort(stable_scores(pool, strategy, queue_size=n), kind="stable")[:n]
    return [int(candidates[i]) for i in order], note


def loss_correlations(scorer: Scorer, data: Data, labeled: list[int], seed: int) -> dict[str, float | None]:
    """Spearman correlation between each validation canvas's real loss (1 - F1) and its predictors."""
    from scipy.stats import spearmanr

    indices = range(len(data.validation.boxes))
    outputs = scorer.outputs(data.validation, indices)
    real = np.array([detection_loss(out, data.validation.truth(i)) for i, out in zip(indices, outputs)])
    labeled_out = scorer.outputs(data.pool, labeled)
    losses = [detection_loss(out, data.pool.truth(i)) for i, out in zip(labeled, labeled_out)]
    predictors: dict[str, np.ndarray] = {"boxes": np.array([len(o.box_confidences) for o in outputs], float)}
    ridge, _ = build_pool(outputs, labeled_out, "learning_loss", labeled_losses=losses, seed=seed)
    predictors["ridge"] = np.asarray(ridge.predicted_loss)  # the backend's: embedding + box uncertainties
    # the same regression fit only on the labeled canvases the fine-tunes never trained on (the
    # detector's val split, stable per canvas): their losses are what unseen images get, where the
    # trained ones' are a training fit
    _, held = split(list(range(len(labeled))), DetectorSettings().val_ratio, seed)
    held_out = sorted(held)
    if len(held_out) >= MIN_LOSS_SAMPLES:  # fewer: build_pool would fall back to entropy
        ridge_held, _ = build_pool(outputs, [labeled_out[i] for i in held_out], "learning_loss",
                                   labeled_losses=[losses[i] for i in held_out], seed=seed)
        predictors["ridge_held_out"] = np.asarray(ridge_held.predicted_loss)
    if len(labeled_out) >= MIN_LOSS_SAMPLES:  # the regression on parts of its features
        target = np.asarray(losses, dtype=float)
        for name, columns in (("ridge_embedding_only", slice(None, -3)), ("ridge_uncertainty_only", slice(-3, None))):
            predict = ridge_predictor(loss_features(labeled_out)[:, columns], target)
            predictors[name] = predict(loss_features(outputs)[:, columns])
    for strategy, aggregate in (("margin", "max"), ("margin", "mean"), ("margin", "sum"), ("entropy", "max")):
        pool, _ = build_pool(outputs, labeled_out, strategy, aggregate=aggregate, seed=seed)  # type: ignore[arg-type]
        predictors[f"{strategy}_{aggregate}"] = np.asarray(pool.uncertainty)
    out: dict[str, float | None] = {}
    for key, values in predictors.items():
        rho = spearmanr(values, real).statistic if np.ptp(values) > 0 and np.ptp(real) > 0 else float("nan")
        out[key] = None if not np.isfinite(rho) else round(float(rho), 4)
    trained = [loss for i, loss in enumerate(losses) if i not in held]
    for key, part in (("mean_loss_trained", trained), ("mean_loss_held_out", [losses[i] for i in held_out]),
                      ("mean_loss_validation", real.tolist())):
        out[key] = round(float(np.mean(part)), 4) if part else None
    return out


def run_strategy(name: str, seed: int, first: dict[str, Any], data: Data, protocol: Protocol, work: Path,
                 checkpoint: Checkpoint) -> dict[str, Any]:
    """One strategy's curve for one seed, from the shared first model, saved after every cycle."""
    state = checkpoint.get(seed, name) or {"labeled": first["labeled"], "metrics": [first["metrics"]],
                                           "correlations": [first.get("correlations")], "weights": first["weights"],
                                           "notes": [], "seconds": []}
    draw = np.random.default_rng(seed * 1000 + 1)
    for cycle in range(1, protocol.cycles + 1):
        # the labeled set as this cycle began (picks are appended in order), so a resumed run draws
        # the candidates an uninterrupted one would have
        before = state["labeled"][:protocol.initial + protocol.per_cycle * (cycle - 1)]
        unlabeled = np.setdiff1d(np.arange(len(data.pool.boxes)), before)
        candidates = draw.choice(unlabeled, min(protocol.candidates, len(unlabeled)), replace=False)
        if cycle < len(state["metrics"]):
            continue  # measured before a restart
        if not Path(state["weights"]).exists():
            raise SystemExit(f"{state['weights']} is gone: delete {checkpoint.path} to start the run over")
        run_cycle(name, seed, cycle, state, candidates, data, protocol, work / f"seed{seed}" / name / f"cycle{cycle}")
        checkpoint.put(seed, name, state)
        print(f"seed {seed} {name:>13} cycle {cycle}: {len(state['labeled'])} labels {state['metrics'][-1]} "
              f"seconds {state['seconds'][-1]}", flush=True)
    return state


def run_cycle(name: str, seed: int, cycle: int, state: dict[str, Any], candidates: np.ndarray, data: Data,
              protocol: Protocol, workdir: Path) -> None:
    """Pick, label, fine-tune, measure: ``state`` gains the cycle's picks, weights, figures and timings."""
    seconds: dict[str, float] = {}
    with stage(seconds, "select"):
        picked, note = select(name, Scorer(Path(state["weights"]), protocol), data, state["labeled"], candidates,
                              protocol.per_cycle, seed * 1000 + cycle)
    state["notes"].append(note)
    state["labeled"] = state["labeled"] + picked
    with stage(seconds, "train"):
        weights = train_cycle(Path(state["weights"]), data, state["labeled"], protocol, workdir, seed)
    state["weights"] = str(weights)
    with stage(seconds, "measure"):
        state["metrics"].append(measure(weights, data, protocol, workdir))
    with stage(seconds, "correlate"):
        state["correlations"].append(loss_correlations(Scorer(weights, protocol), data, state["labeled"], seed)
                                     if name in CORRELATED and len(data.validation.boxes) else None)
    state["seconds"].append(seconds)


@contextmanager
def stage(seconds: dict[str, float], name: str) -> Iterator[None]:
    started = time.time()
    yield
    seconds[name] = round(time.time() - started, 1)


def first_model(seed: int, start: Path, data: Data, protocol: Protocol, work: Path,
                checkpoint: Checkpoint) -> dict[str, Any]:
    """The model every strategy of a seed starts from: ``initial`` random canvases."""
    saved = checkpoint.get(seed, "_first")
    if saved and Path(saved["weights"]).exists():
        return saved
    labeled = [int(i) for i in np.random.default_rng(seed).choice(len(data.pool.boxes), protocol.initial,
                                                                  replace=False)]
    workdir = work / f"seed{seed}" / "first"
    weights = train_cycle(start, data, labeled, protocol, workdir, seed)
    first = {"labeled": labeled, "weights": str(weights), "metrics": measure(weights, data, protocol, workdir)}
    if len(data.validation.boxes):
        first["correlations"] = loss_correlations(Scorer(weights, protocol), data, labeled, seed)
    checkpoint.put(seed, "_first", first)
    print(f"seed {seed}: {protocol.initial} random labels: {first['metrics']}", flush=True)
    return first


def summarise(per_seed: list[dict[str, dict[str, Any]]], protocol: Protocol) -> dict[str, Any]:
    labels = [protocol.initial + protocol.per_cycle * c for c in range(protocol.cycles + 1)]
    mid = protocol.cycles // 2
    strategies: dict[str, Any] = {}
    for name in per_seed[0]:
        curves = {m: np.array([[row[m] for row in seed[name]["metrics"]] for seed in per_seed]) for m in METRICS}
        strategies[name] = {"mean": {m: c.mean(0).round(4).tolist() for m, c in curves.items()},
                            "std": {m: c.std(0).round(4).tolist() for m, c in curves.items()},
                            "per_seed": [{m: c[s].tolist() for m, c in curves.items()} for s in range(len(per_seed))],
                            "seconds_per_cycle": [seed[name]["seconds"] for seed in per_seed],
                            "notes": sorted({n for seed in per_seed for n in seed[name]["notes"] if n})}
    random_mean = strategies["random"]["mean"]
    target = random_mean["map50_95"][-1]
    for entry in strategies.values():
        needed = labels_to_reach(labels, entry["mean"]["map50_95"], target)
        entry["labels_to_reach_random_final_map50_95"] = None if needed is None else round(needed, 1)
        entry["label_saving_vs_random"] = None if needed is None else round(1 - needed / labels[-1], 3)
        for metric in ("rare_ap50_95", "rare_ap50"):
            entry[f"{metric}_gain_mid_budget_points"] = round(
                100 * (entry["mean"][metric][mid] - random_mean[metric][mid]), 2)
    others = [n for n in strategies if n != "random"]
    saving = max(others, key=lambda n: strategies[n]["label_saving_vs_random"] or -1.0, default=None)
    rare = max(others, key=lambda n: strategies[n]["rare_ap50_95_gain_mid_budget_points"], default=None)
    return {"labels": labels, "mid_budget_labels": labels[mid], "random_final_map50_95": target,
            "strategies": strategies, "best_label_saving": saving, "best_rare_gain": rare,
            "loss_correlation": correlation_summary(per_seed),
            "goals": {
                "some_strategy_saves_ge_30pct": any((strategies[n]["label_saving_vs_random"] or 0) >= 0.30
                                                    for n in others),
                "rare_ap50_95_gain_mid_budget_ge_5_points": any(
                    strategies[n]["rare_ap50_95_gain_mid_budget_points"] >= 5.0 for n in others)}}


def correlation_summary(per_seed: list[dict[str, dict[str, Any]]]) -> dict[str, Any]:
    """Mean Spearman rho per predictor and cycle, over seeds, for each measured run."""
    out: dict[str, Any] = {}
    for name in CORRELATED:
        rows = [seed[name]["correlations"] for seed in per_seed if name in seed]
        if not rows or not rows[0] or rows[0][0] is None:
            continue
        # a predictor may be missing in some cycles (ridge_held_out needs 4 held-out canvases)
        keys = sorted({key for run in rows for cycle in run if cycle for key in cycle})
        out[name] = {key: [_mean([run[c].get(key) for run in rows if run[c]]) for c in range(len(rows[0]))]
                     for key in keys}
    return out


def _mean(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return round(float(np.mean(known)), 4) if known else None


def plot(summary: dict[str, Any], path: Path | None = None) -> Any:
    """The three curves (mAP50-95, mAP50, the rare class's AP50-95) per strategy; saved to ``path``
    and closed when given, else returned for a notebook to show."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(16, 5))
    titles = {"map50_95": "mAP50-95", "map50": "mAP50", "rare_ap50_95": f"{RARE} (rare) AP50-95"}
    for ax, (metric, title) in zip(axes, titles.items()):
        for name, entry in summary["strategies"].items():
            mean, std = np.array(entry["mean"][metric]), np.array(entry["std"][metric])
            ax.plot(summary["labels"], mean * 100, marker="o", markersize=3, label=name,
                    linewidth=2 if name == "random" else 1.2)
            ax.fill_between(summary["labels"], (mean - std) * 100, (mean + std) * 100, alpha=0.12)
        ax.set_xlabel("labeled canvases")
        ax.set_ylabel(f"{title} (%)")
        ax.set_title(title)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle("Detection active learning: Fashion-MNIST items on photos (mean ± std over seeds)")
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=110)
        plt.close(fig)
    return fig


def run(protocol: Protocol, strategies: list[str], out: Path | None, work: Path | None = None,
        only_seed: int | None = None) -> dict[str, Any] | None:
    work = work or ROOT / "bench" / ".cache" / "active_detection" / protocol.key()
    work.mkdir(parents=True, exist_ok=True)
    strategies = ["random", *[s for s in strategies if s != "random"]]
    started = time.time()
    data = make_data(protocol, work)
    checkpoint = Checkpoint(out.with_suffix(".partial.json") if out is not None else None, protocol)
    start = target_start(train_base(protocol, work), work)
    seeds = [only_seed] if only_seed is not None else range(protocol.seeds)
    per_seed = []
    for seed in seeds:
        first = first_model(seed, start, data, protocol, work, checkpoint)
        per_seed.append({name: run_strategy(name, seed, first, data, protocol, work, checkpoint)
                         for name in strategies})
    if only_seed is not None:
        return None
    objects = [k for boxes in data.pool.boxes for k, *_ in boxes]
    result = {"protocol": asdict(protocol), "classes": NAMES, "rare_class": RARE,
              "rare_share_of_pool_objects": round(objects.count(NAMES.index(RARE)) / max(1, len(objects)), 4),
              "pool": len(data.pool.boxes), "measured_on": f"{protocol.evaluate_on} canvases",
              **summarise(per_seed, protocol), "seconds": round(time.time() - started, 1),
              "machine": {"cpus": os.cpu_count(), "device": device_name(protocol.device)}}
    checkpoint.finish(out, result, lambda png: plot(result, png))
    return result


def argument_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="1 seed, 2 cycles, tiny sets and model (for CI)")
    for name, kind in (("seeds", int), ("cycles", int), ("epochs", int), ("imgsz", int), ("candidates", int),
                       ("pool", int), ("test", int), ("validation", int), ("device", str), ("box_threshold", float)):
        parser.add_argument(f"--{name.replace('_', '-')}", type=kind)
    parser.add_argument("--evaluate-on", choices=["test", "validation"],
                        help="measure on the validation canvases (to choose settings) instead of the test set")
    parser.add_argument("--seed", type=int, help="run only this seed into the checkpoint beside --out; then run "
                                                 "without --seed to summarise")
    parser.add_argument("--strategies", default=",".join(STRATEGIES))
    parser.add_argument("--out", type=Path, default=RESULTS / "active_detection.json")
    parser.add_argument("--work", type=Path, help="where the base, datasets and weights go (default: "
                                                  "bench/.cache/active_detection/<protocol>)")
    return parser


def protocol_for(args: argparse.Namespace) -> Protocol:
    protocol = Protocol.quick() if args.quick else Protocol()
    for name in ("seeds", "cycles", "epochs", "imgsz", "candidates", "pool", "test", "validation", "device",
                 "evaluate_on", "box_threshold"):
        if getattr(args, name) is not None:
            setattr(protocol, name, getattr(args, name))
    return protocol


def main(argv: list[str] | None = None) -> dict[str, Any] | None:
    import matplotlib

    matplotlib.use("Agg")  # the command line draws to the results' PNG only, with or without a display
    args = argument_parser().parse_args(argv)
    protocol = protocol_for(args)
    unknown = [s for s in args.strategies.split(",") if s not in STRATEGIES]
    if unknown:
        raise SystemExit(f"unknown strategies {unknown}; choose from {', '.join(STRATEGIES)}")
    if protocol.evaluate_on == "validation" and not protocol.validation:
        raise SystemExit("--evaluate-on validation needs --validation > 0")
    work = args.work
    if work is None and args.quick:  # the base goes beside work: inside this run's own folder
        work = Path(tempfile.mkdtemp(prefix="active-detection-")) / "run"
    out = args.out
    if out == RESULTS / "active_detection.json" and protocol != Protocol():
        # the full run's results and checkpoint are not for a run under other settings
        out = RESULTS / f"active_detection_{protocol.key()}.json"
        print(f"not the default protocol: writing {out.relative_to(ROOT)}", flush=True)
    result = run(protocol, args.strategies.split(","), out, work, args.seed)
    if result is None:
        print(f"seed {args.seed} checkpointed in {out.with_suffix('.partial.json')}")
        return None
    for name, entry in result["strategies"].items():
        print(f"{name:>13}: final mAP50-95 {entry['mean']['map50_95'][-1]:.4f}  labels to random's final: "
              f"{entry['labels_to_reach_random_final_map50_95']}  rare AP50-95 gain at mid-budget: "
              f"{entry['rare_ap50_95_gain_mid_budget_points']:+.2f} pts")
    return result


if __name__ == "__main__":
    main()
