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


def main() -> None:
    out = ROOT / "notebooks"
    out.mkdir(exist_ok=True)
    notebook = new_notebook(cells=ACTIVE_LEARNING, metadata={"kernelspec": {"name": "python3", "display_name": "Python 3"}})
    nbformat.write(notebook, out / "02_active_learning.ipynb")


if __name__ == "__main__":
    main()
