"""Is the active-learning benchmark's task model trained long enough? -> bench/results/al_convergence.json

Active-learning gains measured on under-trained models are mostly the noise of under-training, so
the benchmark's epochs per cycle should sit near the point where more epochs stop helping. This
measures that with *random* labels only (no acquisition strategy is involved, so the choice cannot
favour one) on 10k training images held out of the pool (the test set is never looked at): the
validation accuracy of ``bench/active_learning.py``'s model and training at a few label counts and
epoch budgets, mean +- std over seeds.

    .venv/bin/python bench/al_convergence.py                 # about 11 minutes on 2 cores
    .venv/bin/python bench/al_convergence.py --labels 200,1200,2200 --steps 1000,2000,4000 \
        --out bench/results/al_convergence_steps.json   # a step budget instead of epochs
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from bench import active_learning as al  # noqa: E402

OUT = ROOT / "bench" / "results" / "al_convergence.json"


def measure(labels: list[int], budgets: list[int], unit: str, seeds: int, validation: int) -> dict[str, Any]:
    """``budgets`` in ``unit``: "epochs" or "steps" (``Protocol.steps``)."""
    protocol = al.Protocol(validation=validation)
    data = al.load_data(protocol)
    rows = []
    for n in labels:
        for budget in budgets:
            setattr(protocol, unit, budget)
            accuracies, started = [], time.time()
            for seed in range(seeds):
                picked = np.random.default_rng(seed).choice(len(data["x_pool"]), n, replace=False)
                model = al.fit(data["x_pool"][picked], torch.from_numpy(data["y_pool"][picked]).long(), protocol, seed)
                accuracies.append(al.accuracy(model, data["x_test"], data["y_test"]))
            rows.append({"labels": n, unit: budget, "epochs_run": al.epochs_for(protocol, n), "accuracy_mean": round(float(np.mean(accuracies)), 4),
                         "accuracy_std": round(float(np.std(accuracies)), 4),
                         "seconds_per_run": round((time.time() - started) / seeds, 1)})
            print(f"{n:>5} labels {budget:>5} {unit}: {rows[-1]['accuracy_mean'] * 100:.2f} % "
                  f"(std {rows[-1]['accuracy_std'] * 100:.2f}, {rows[-1]['seconds_per_run']} s per run)", flush=True)
    return {"measured_on": f"{validation} training images held out of the pool", "seeds": seeds,
            "training": {k: v for k, v in asdict(protocol).items() if k in ("batch", "lr")}, "rows": rows,
            "machine": {"cpus": os.cpu_count()}}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser()
    parser.add_argument("--labels", default="400,1200")
    parser.add_argument("--epochs", default="30,50,80,120,200")
    parser.add_argument("--steps", default="", help="step budgets to measure instead of --epochs, e.g. 1000,2000")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--validation", type=int, default=10_000)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    unit = "steps" if args.steps else "epochs"
    result = measure([int(v) for v in args.labels.split(",")], [int(v) for v in (args.steps or args.epochs).split(",")],
                     unit, args.seeds, args.validation)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
