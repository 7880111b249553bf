"""``python -m backends.active score``: the queue's scoring outside Label Studio, to a CSV.

    # a folder of images, with a classifier version (its folder or classifier.pt) or detector weights
    python -m backends.active score --folder images/ --model .data/models/active/project-3/versions/active-v2 \\
        --strategy margin --out scores.csv
    # a Label Studio project (LABEL_STUDIO_URL / LABEL_STUDIO_API_KEY): runs the scoring job itself, as a
    # job of the server's journal (DATA_DIR), writing the queue into Label Studio exactly as the server would
    python -m backends.active score --project 3 --out scores.csv

CSV columns: task (file name or task id), score (Label Studio's: lower = label first), rank (0 first).
"""

from __future__ import annotations

import argparse
import csv
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from backends.core.errors import MediaError
from backends.core.media import LoadedImage, decode_image

from .ranking import build_pool, rank
from .settings import DEFAULT_STRATEGY, ActiveSettings
from .strategies import STRATEGIES, queue_scores
from .task_models import CLASSIFIER_FILE, ClassifierTaskModel, DetectorTaskModel, TaskModel

if TYPE_CHECKING:
    from backends.core.jobs import JobReporter
    from backends.core.journal import Event
    from backends.core.model import LabelLoopModel

    from .scoring import Scorer

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff"}


class _NoRegions:
    """Stands in for a label-config control when there is no project: regions are not needed."""

    def __init__(self, labels: list[str]) -> None:
        self.labels = labels

    def label(self, *_: Any, **__: Any) -> Any:
        return _Json()


class _Json:
    def to_json(self) -> str:
        return "{}"


def folder_model(path: Path, strategy_threshold: float = 0.25) -> TaskModel:
    if path.suffix == ".pt" and path.name != CLASSIFIER_FILE:
        from backends.detector.weights import load_model

        names = [str(n) for n in load_model(str(path)).names.values()]
        return DetectorTaskModel(path.stem, path, _NoRegions(names), strategy_threshold,
                                 doubt_threshold=ActiveSettings().box_threshold)
    folder = path.parent if path.name == CLASSIFIER_FILE else path
    return ClassifierTaskModel(folder.name, folder, _NoRegions([]))


def score_folder(folder: Path, model_path: Path | None, strategy: str | None,
                 queue_size: int = 1000) -> list[tuple[str, float, int]]:
    """Rank a folder's images by ``strategy`` (None: the default for the model's task type)."""
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise SystemExit(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in {folder}")
    if model_path is None:
        logging.warning("no --model: ranking at random")
        order = np.random.default_rng(0).permutation(len(files))
    else:
        model = folder_model(model_path)
        kind = "detection" if isinstance(model, DetectorTaskModel) else "classification"
        strategy = strategy or DEFAULT_STRATEGY[kind]
        outputs = []
        for start in range(0, len(files), 64):  # 64 decoded at a time: a folder of photos would not fit
            outputs.extend(model.outputs([_load(path) for path in files[start:start + 64]]))
        pool, note = build_pool(outputs, [], strategy)
        if note:
            logging.warning(note)
        order = rank(pool, strategy, queue_size)
    scores = queue_scores(order, len(files))
    ranks = np.empty(len(files), dtype=int)
    ranks[order] = np.arange(len(order))
    return [(f.name, round(float(s), 6), int(r)) for f, s, r in zip(files, scores, ranks)]


def _load(path: Path) -> LoadedImage:
    """Decoded as the server decodes task images (EXIF orientation, decompression-bomb guard)."""
    try:
        return LoadedImage(decode_image(path.read_bytes(), str(path)), "", str(path))
    except MediaError as exc:
        raise SystemExit(exc.message) from None


def score_project(project: int, strategy: str | None) -> list[tuple[str, float, int]]:
    from backends.core.errors import Conflict
    from backends.core.jobs import run_now
    from backends.core.services import Services
    from backends.core.settings import CoreSettings

    from .model import ActiveModel

    services = Services.from_settings(CoreSettings())
    # the project's settings as the server has them (its /setup's extra_params): otherwise this run
    # would rank with other settings and replace the server's queue with its own
    active = ActiveModel.for_project(project, services, label_config=services.ls.get_project(project)["label_config"],
                                     overrides={"strategy": strategy} if strategy else None)
    runner = _KeepScorer(active)
    try:
        # run_now calls nothing of its model but run_job, which _KeepScorer has (ModelFactory names the base class)
        job = run_now(services.journal, ActiveModel.backend, project, "score", "CLI_SCORE",
                      lambda _: cast("LabelLoopModel", runner))
    except Conflict as exc:
        raise SystemExit(exc.message) from None
    if job.state != "done" or runner.scorer is None:
        retried = "; it stays queued and the server's workers retry it" if job.state == "pending" else ""
        raise SystemExit(f"scoring job {job.id} of project {project} failed: {job.error}{retried}")
    summary = job.result or {}
    print(f"job {job.id}: queue {summary.get('queue_version')}: {summary.get('scored')} tasks"
          + (f" ({summary['note']})" if summary.get("note") else ""), file=sys.stderr)
    return [(str(task), score, i) for i, (task, score) in enumerate(runner.scorer.ranking)]


class _KeepScorer:
    """The job's model for :func:`run_now`: runs the project's scoring and keeps the scorer, whose
    full ranking the CSV needs (the job's recorded result holds only a summary)."""

    def __init__(self, active: Any) -> None:
        self.active = active
        self.scorer: Scorer | None = None

    def run_job(self, kind: str, events: Sequence[Event], job: JobReporter) -> dict[str, Any]:
        from .scoring import Scorer

        self.scorer = Scorer(self.active, job)
        return self.scorer.run()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m backends.active score", description=__doc__.split("\n\n")[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--folder", type=Path, help="a folder of images")
    source.add_argument("--project", type=int, help="a Label Studio project id")
    parser.add_argument("--model", type=Path, help="folder mode: a classifier version (folder or classifier.pt) or detector .pt")
    parser.add_argument("--strategy", choices=sorted(STRATEGIES), help="default: ACTIVE_STRATEGY, else the task type's "
                                                                 "(classification margin, detection random)")
    parser.add_argument("--out", type=Path, default=Path("scores.csv"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    if args.folder is not None:
        rows = score_folder(args.folder, args.model, args.strategy or ActiveSettings().strategy or None)
    else:
        rows = score_project(args.project, args.strategy)
    rows.sort(key=lambda row: row[2])
    with open(args.out, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["task", "score", "rank"])
        writer.writerows(rows)
    print(f"wrote {len(rows)} rows to {args.out}", file=sys.stderr)
    return 0
