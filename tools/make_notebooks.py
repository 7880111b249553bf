"""Writes notebooks/*.ipynb from the cells below, outputs cleared (run after editing a notebook's cells).

Keeping the source here makes notebook diffs reviewable; ``tests/notebooks`` executes the results.
"""

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

ROOT = Path(__file__).resolve().parents[1]

ACTIVE_LEARNING = [
    new_markdown_cell("""# Active learning on Fashion-MNIST: which strategy saves labels?

The protocol of `bench/active_learning.py` (Yoo & Kweon 2019, scaled to a CPU): start with 200 random
labels, add 200 per cycle chosen by each strategy from a random 10k subset of the unlabeled pool,
retrain the same classifier (`backends.active.classifier.TaskClassifier`, small CNN + loss-prediction
head) from scratch each cycle, and measure test accuracy. Mean ± std over seeds.

Set `LABELLOOP_FAST=1` for a one-seed, two-cycle run of three strategies (what the tests do). Otherwise
the notebook plots the committed full results (`bench/results/active_learning.json`) and, with
`LABELLOOP_RERUN=1`, reruns the full benchmark first (about 40 minutes on 2 CPU cores)."""),
    new_code_cell("""import json, os, sys
from pathlib import Path

ROOT = Path.cwd() if (Path.cwd() / "bench").is_dir() else Path.cwd().parent
sys.path.insert(0, str(ROOT))
from bench import active_learning as al

FAST = os.environ.get("LABELLOOP_FAST") == "1"
RESULTS = ROOT / "bench" / "results" / "active_learning.json"
if FAST:
    protocol = al.Protocol.quick()
    protocol.cycles = 2
    result = al.run(protocol, ["random", "margin", "learning_loss"])
elif os.environ.get("LABELLOOP_RERUN") == "1" or not RESULTS.exists():
    result = al.run(al.Protocol(), al.STRATEGIES, RESULTS)
else:
    result = json.loads(RESULTS.read_text())
print(f"protocol: {result['protocol']}")"""),
    new_code_cell("""import matplotlib.pyplot as plt
import numpy as np

fig, ax = plt.subplots(figsize=(8, 5))
for name, entry in result["strategies"].items():
    mean, std = np.array(entry["mean"]) * 100, np.array(entry["std"]) * 100
    ax.plot(result["labels"], mean, marker="o", markersize=3, label=name, linewidth=2.5 if name == "random" else 1.2)
    ax.fill_between(result["labels"], mean - std, mean + std, alpha=0.15)
ax.set(xlabel="labeled images", ylabel="test accuracy (%)", title="accuracy vs labels (mean ± std over seeds)")
ax.grid(alpha=0.3)
ax.legend()
plt.show()"""),
    new_markdown_cell("How many labels each strategy needs to reach random's final accuracy, and its gain at mid-budget:"),
    new_code_cell("""rows = []
for name, entry in result["strategies"].items():
    rows.append((name, entry["mean"][-1], entry["gain_mid_budget_points"], entry["labels_to_reach_random_final"],
                 entry["label_saving_vs_random"]))
print(f"{'strategy':>15} {'final acc':>9} {'mid gain':>9} {'labels to random final':>23} {'saving':>7}")
for name, final, gain, needed, saving in sorted(rows, key=lambda r: -r[2]):
    print(f"{name:>15} {final:9.4f} {gain:+9.2f} {str(needed):>23} {str(saving):>7}")
assert result["strategies"]["random"]["mean"][-1] > 0.3, "the classifier learns"
"""),
]

TRANSFER_LEARNING = [
    new_markdown_cell("""# Transfer learning: fine-tuning the detector from a base vs from scratch

What the detector's `fit` does on every submit, shown with curves and pictures. The protocol of
`bench/detector.py` part (b): Fashion-MNIST items pasted onto 320x320 canvases with exact boxes. A base
YOLO (`yolo11n`, random init: no network here) is pretrained on classes 0-4; then classes 5-9 are
labeled and the model is fine-tuned **from the base** (new head for the new classes, backbone kept,
first 10 layers frozen: `backends.detector.training.adapt_head`) or **from scratch**, same epochs.

`LABELLOOP_FAST=1` (the tests) trains tiny versions in a couple of minutes; otherwise one budget of
50 labeled canvases with the full epochs (about 10 minutes on 2 CPU cores). The committed figures of
the full benchmark (25/50/100 labels) are printed at the end."""),
    new_code_cell("""import json, os, sys, tempfile
from pathlib import Path

ROOT = Path.cwd() if (Path.cwd() / "bench").is_dir() else Path.cwd().parent
sys.path.insert(0, str(ROOT))
from bench import detector as bench_detector, fmnist
from backends.detector.weights import configure_ultralytics

FAST = os.environ.get("LABELLOOP_FAST") == "1"
work = Path(tempfile.mkdtemp(prefix="nb-transfer-"))
configure_ultralytics(work)
transfer = bench_detector.part_transfer(work, quick=FAST, budgets=None if FAST else [50])
row = transfer["rows"][0]
print(f"base mAP50 on its own classes: {transfer['base_map50_on_own_classes']:.3f}")
print(f"{row['labeled_images']} labeled canvases of new classes -> test mAP50 from base {row['from_base_map50']:.3f}, "
      f"from scratch {row['from_scratch_map50']:.3f}")"""),
    new_markdown_cell("Fine-tuning curves: mAP50 on the fine-tuning set's val split after each epoch."),
    new_code_cell("""import matplotlib.pyplot as plt

fig, ax = plt.subplots(figsize=(7, 4))
for label, style in (("from_base", "o-"), ("from_scratch", "s--")):
    curve = row[f"{label}_val_curve"]
    ax.plot(range(1, len(curve) + 1), curve, style, label=label.replace("_", " "))
ax.set(xlabel="epoch", ylabel="val mAP50", title=f"fine-tuning on {row['labeled_images']} labeled canvases")
ax.grid(alpha=0.3)
ax.legend()
plt.show()
assert len(row["from_base_val_curve"]) == transfer["finetune_epochs"]"""),
    new_markdown_cell("Predictions (green, confidence >= 0.1) on test canvases of the new classes, with the ground truth "
                      "dashed: before fine-tuning (the base with its new, untrained head) and after (from the base, and "
                      "from scratch). In fast mode the models are too short-trained to find anything."),
    new_code_cell("""from matplotlib.patches import Rectangle
from ultralytics import YOLO

xt, yt = fmnist.load("test")
canvases = fmnist.canvases(xt, yt, [5, 6, 7, 8, 9], 3, seed=transfer["test_canvases_seed"])
n = row["labeled_images"]
models = {"base, before": YOLO(str(bench_detector.transfer_weights(work, "from_base", n)[0])),
          "from base, after": YOLO(str(bench_detector.transfer_weights(work, "from_base", n)[1])),
          "from scratch, after": YOLO(str(bench_detector.transfer_weights(work, "from_scratch", n)[1]))}
fig, axes = plt.subplots(len(canvases), len(models), figsize=(3.2 * len(models), 3.2 * len(canvases)))
for i, (image, truth) in enumerate(canvases):
    for j, (title, model) in enumerate(models.items()):
        ax = axes[i][j]
        ax.imshow(image, cmap="gray")
        for _c, x, y, w, h in truth:  # ground truth, dashed
            ax.add_patch(Rectangle((x, y), w, h, fill=False, color="cyan", linestyle="--", linewidth=1))
        result = model.predict(image, imgsz=320, conf=0.1, verbose=False)[0]
        for (x1, y1, x2, y2), c, conf in zip(result.boxes.xyxy.tolist(), result.boxes.cls.tolist(), result.boxes.conf.tolist()):
            ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, color="lime", linewidth=1.5))
            ax.text(x1, y1, f"{result.names[int(c)]} {conf:.2f}", color="lime", fontsize=7, va="bottom")
        ax.set_title(title if i == 0 else "", fontsize=9)
        ax.axis("off")
plt.tight_layout()
plt.show()"""),
    new_markdown_cell("The committed full benchmark (`bench/results/detector.json`, `.venv/bin/python bench/detector.py --parts b`):"),
    new_code_cell("""committed = json.loads((ROOT / "bench" / "results" / "detector.json").read_text())["transfer"]
print(f"{'labels':>6} {'from base':>10} {'from scratch':>13}")
for r in committed["rows"]:
    print(f"{r['labeled_images']:>6} {r['from_base_map50']:>10.3f} {r['from_scratch_map50']:>13.3f}")"""),
]


def main() -> None:
    out = ROOT / "notebooks"
    out.mkdir(exist_ok=True)
    metadata = {"kernelspec": {"name": "python3", "display_name": "Python 3"}}
    for name, cells in (("02_active_learning", ACTIVE_LEARNING), ("03_transfer_learning", TRANSFER_LEARNING)):
        for i, cell in enumerate(cells):
            cell.id = f"{name[:2]}-{i:02d}"  # stable ids: regenerating leaves unchanged notebooks unchanged
        nbformat.write(new_notebook(cells=cells, metadata=metadata), out / f"{name}.ipynb")


if __name__ == "__main__":
    main()
