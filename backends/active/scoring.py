"""The scoring job: rank every unlabeled task of a project and write the order into Label Studio.

Runs after each new task-model version, when tasks are imported, and on request. Steps:
1. list the project's tasks (paged); unlabeled = no annotation at all, labeled = a submitted one.
   A job started by imports alone, under the task model and settings of the last scoring, lists
   only the tasks created after the last one that scoring saw (``Scorer._increment_of``): reading
   the whole project was 38 of the 41 s of a re-score at 8,800 tasks, and it grows with the project;
2. model outputs for both, in chunks of ``ACTIVE_CHUNK`` tasks, cached per task-model version in
   the model store (``outputs/<version>.jsonl``): a re-run after an import only runs the model on
   the new tasks, and a job restarted after a crash or a failure resumes after its last finished
   chunk (chunks are shared with RQ helpers on a ``ChunkBoard``); older versions' outputs are
   deleted (one version's embeddings are kilobytes per task);
3. scores in [0, 1] from the project's strategy (``ranking.stable_scores``): a task's own value
   wherever the strategy has one, so an import adds scores and moves none (set-based strategies
   move their chosen head only);
4. write one prediction per unlabeled task under the queue version, switch the project to
   uncertainty sampling on that version, keep the "Active learning queue" tab. A re-run under the
   same task model writes only the scores that changed (an import: the new tasks); when more moved
   than a rewrite would cost, it writes a new generation of the version (``...~2``) in bulk;
5. the blind-spot report over the labeled tasks, and its "Model disagrees" tab (not redone by an
   increment, which lists no labeled task).

Tasks that fail to load (deleted, unreadable) are skipped with the reason logged; they never fail
the job. Without a task model yet, the order is random and the result says so.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from backends.core.errors import LabelLoopError, raise_if_outage
from backends.core.jobs import JobCancelled, NoJob, worker_id
from backends.core.labelstudio import is_labeled
from backends.core.predictions import SCORE_DECIMALS, TaskPrediction, bulk_requests, own_predictions
from backends.core.rq_jobs import ask_for_helpers
from backends.core.shared_work import ChunkBoard
from backends.core.timings import Timings

from .queue import (
    DISAGREE_TAB,
    GENERATION_MARK,
    QUEUE_TAB,
    QueueWriter,
    generation,
    latest_generation,
    task_ids_filter,
    unlabeled_filter,
)
from .ranking import SET_BASED, build_pool, hashed_scores, stable_scores
from .report import Truth, blind_spots, task_loss, truth_from_task
from .task_models import ImageOutputs, TaskModel

if TYPE_CHECKING:
    from backends.core.jobs import JobReporter
    from backends.core.journal import Event

    from .model import ActiveModel

log = logging.getLogger(__name__)
VERSION_PREFIX = "active-"
VERSIONS_STATE = "queue_versions.json"
IMAGES_IN_MEMORY = 32  # decoded images a scoring worker holds at once (see compute_chunk)
HEAD_KEPT = 10  # the queue's first tasks, in a job's result; kept in last_scoring.json for increments


def queue_version(strategy: str, task_model: TaskModel | None) -> str:
    """The model_version string of a queue: strategy and the task model it ranked with."""
    return f"{VERSION_PREFIX}{strategy}@{task_model.version if task_model else 'no-model'}"


class OutputCache:
    """Model outputs per task for one task-model version, as JSON lines (one per task)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.rows: dict[tuple[int, str], ImageOutputs] = {}
        if path.is_file():
            for line in path.read_text().splitlines():
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a line cut by a crash mid-write: recomputed
                self.rows[(row["task"], row["url"])] = _from_json(row)

    def get(self, task_id: int, url: str) -> ImageOutputs | None:
        return self.rows.get((task_id, url))

    def add(self, items: list[tuple[int, str, ImageOutputs]]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a") as fh:
            for task_id, url, out in items:
                self.rows[(task_id, url)] = out
                fh.write(json.dumps(_to_json(task_id, url, out)) + "\n")


class Scorer:
    def __init__(self, active: ActiveModel, job: JobReporter | None, events: Sequence[Event] = ()) -> None:
        self.active, self.job = active, job if job is not None else NoJob()
        self.events = list(events)  # what started the job: an import alone allows an increment
        self.settings = active.settings
        self.failed: dict[int, str] = {}
        self.chunks: dict[str, dict[str, Any]] = {}  # per "unlabeled"/"labeled": chunks, helpers, who did what
        self.ranking: list[tuple[int, float]] = []  # (task id, score), first served first
        self.timings = Timings()  # listing (Label Studio reads), outputs (the model), ranking, writing

    def run(self) -> dict[str, Any]:
        started = time.time()
        task_model = self.active.task_model()
        strategy = self.active.strategy if task_model else "random"
        version = queue_version(strategy, task_model)
        last = self._increment_of(task_model, strategy)
        with self.timings("listing"):
            after = self._list_after(last)
            tasks = {int(t["id"]): t for t in self.active.services.ls.iter_tasks(self.active.project, after=after)}
        unlabeled = [t for t in tasks.values() if not is_labeled(t)]
        # an increment leaves the blind-spot report as it is: the import labeled nothing it scored
        truths = [] if last else [tr for t in tasks.values()
                                  if (tr := truth_from_task(t, self.active.control.name, self.active.kind))]
        self.job.progress(stage="listing", tasks=len(tasks), unlabeled=len(unlabeled))
        note, report = None, None
        ranked: list[tuple[dict[str, Any], list[dict[str, Any]]]]  # (task, its regions), queue order
        if task_model is None:
            note = "no task model yet: tasks are ranked at random until the first version is published"
            ranked = [(t, []) for t in unlabeled]
            scores = self._random_scores(unlabeled)
        else:
            ranked, scores, note, report = self._rank(task_model, strategy, unlabeled, tasks, truths)
        entries = [TaskPrediction(int(task["id"]), round(float(score), SCORE_DECIMALS), regions)
                   for (task, regions), score in zip(ranked, scores)]
        with self.timings("writing"):
            recorded = self._written_versions(tasks, version)
            version = self._target_version(version, entries, tasks, recorded)
            written = self._write(version, entries, tasks, report, recorded)
        self.ranking = sorted(((e.task_id, e.score) for e in entries), key=lambda pair: pair[1])  # stable: ties by listing
        head = self._head(last)
        first = [int(task_id) for task_id, _ in head]
        summary = {"queue_version": version, "strategy": strategy, "note": note, "scored": len(entries),
                   "listed": {"tasks": len(tasks), "after_task": after}, "skipped": {str(k): v for k, v in self.failed.items()},
                   "first": first, **written, "chunks": self.chunks, "timings": self.timings,
                   "seconds": round(time.time() - started, 2)}
        self.active.save_state("last_scoring.json", {
            **summary, "task_model": task_model.version if task_model else None, "finished_at": time.time(),
            "ranked_by": self._ranked_by(strategy), "head": head,
            "max_task_id": max([last["max_task_id"] if last else 0, *tasks], default=0),
            "project_tasks": (last.get("project_tasks", 0) if last else 0) + len(tasks)})
        log.info("active project %s: queue %s over %d tasks%s (first %s)%s", self.active.project_id, version,
                 len(entries), f" imported after task {after}" if last else "", first[:3], f": {note}" if note else "")
        return summary

    def _list_after(self, last: dict[str, Any] | None) -> int | None:
        """The id after which an increment lists: the last scoring's highest, or lower when an
        import's own tasks start below it (ids are drawn when rows are inserted, not when they
        commit: an import that committed after a smaller, later one has lower ids)."""
        if last is None:
            return None
        imported = [int(t["id"]) for e in self.events for t in e.payload.get("tasks") or []
                    if isinstance(t, dict) and isinstance(t.get("id"), int)]
        return min([last["max_task_id"], *(i - 1 for i in imported)])

    def _head(self, last: dict[str, Any] | None) -> list[tuple[int, float]]:
        """The queue's first ``HEAD_KEPT`` (task, score): this run's ranking, merged with the last
        scoring's head, less its tasks labeled or deleted since, when this run scored the imported
        tasks only."""
        earlier = [(int(task), float(score)) for task, score in last["head"]] if last else []
        queued = self._still_queued([task for task, _ in earlier])
        return sorted([*(pair for pair in earlier if pair[0] in queued), *self.ranking[:HEAD_KEPT]],
                      key=lambda pair: pair[1])[:HEAD_KEPT]

    def _still_queued(self, task_ids: list[int]) -> set[int]:
        """Those of ``task_ids`` that exist and are unlabeled (one request each: at most ``HEAD_KEPT``)."""
        found = set()
        for task_id in task_ids:
            task = self.active.services.ls.get_task(task_id)
            if task is not None and not is_labeled(task):
                found.add(task_id)
        return found

    def _ranked_by(self, strategy: str) -> dict[str, Any]:
        """What a task's score depends on besides its own model output: an increment needs all equal."""
        config = hashlib.sha256((self.active.label_config or "").encode()).hexdigest()[:16]
        return {"strategy": strategy, "aggregate": self.settings.aggregate, "seed": self.settings.seed,
                "box_threshold": self.settings.box_threshold, "label_config": config}

    def _increment_of(self, task_model: TaskModel | None, strategy: str) -> dict[str, Any] | None:
        """The last scoring, when this job may list and score only the tasks imported since: it was
        started by imports alone (``TASKS_CREATED``), under the task model, strategy and settings of
        the last finished scoring, whose queue is the only one this backend has in the project, and the
        strategy scores each task by its own value (``ranking.stable_scores``: an import moves no
        other score). Set-based strategies (``learning_loss`` among them: it clusters its head, and
        on detection fits its loss regressor on the labeled images) choose their head from the
        whole pool: they list it all.
        None: score the whole project."""
        pool_wide = strategy in SET_BASED
        if not self.events or any(e.action != "TASKS_CREATED" for e in self.events) or pool_wide:
            return None
        last = self.active.load_state("last_scoring.json") or {}
        recorded = (self.active.load_state(VERSIONS_STATE) or {}).get("versions")
        same = (last.get("task_model") == (task_model.version if task_model else None)
                and last.get("ranked_by") == self._ranked_by(strategy)
                and str(last.get("queue_version", "")).partition(GENERATION_MARK)[0] == queue_version(strategy, task_model))
        if same and recorded == [last["queue_version"]] and isinstance(last.get("max_task_id"), int) and "head" in last:
            return last
        return None

    # -- ranking ----------------------------------------------------------------------------------
    def _rank(self, task_model: TaskModel, strategy: str, unlabeled: list[dict[str, Any]],
              tasks: dict[int, dict[str, Any]], truths: list[Truth]) -> tuple[list, np.ndarray, str | None, Any]:
        prune_outputs(self.active.state_dir / "outputs", task_model.version)
        cache = OutputCache(self.active.state_dir / "outputs" / task_model.cache_name)
        with self.timings("outputs"):
            unlabeled_out = self._outputs(task_model, unlabeled, cache, "unlabeled")
            labeled_out = self._outputs(task_model, [tasks[t.task_id] for t in truths], cache, "labeled")
        names = task_model.class_names or list(self.active.control.labels)
        pairs = [(truth, labeled_out[truth.task_id]) for truth in truths if truth.task_id in labeled_out]
        losses = [task_loss(out, truth, names) for truth, out in pairs]
        ranked_tasks = [t for t in unlabeled if int(t["id"]) in unlabeled_out]
        outputs = [unlabeled_out[int(t["id"])] for t in ranked_tasks]
        with self.timings("ranking"):
            pool, note = build_pool(outputs, [out for _, out in pairs], strategy, labeled_losses=losses,
                                    aggregate=self.settings.aggregate, seed=self.settings.seed)
            if not outputs:
                scores = np.zeros(0)
            elif strategy == "random":
                scores = self._random_scores(ranked_tasks)
            else:
                scores = stable_scores(pool, strategy, self.settings.queue_size)
        report = None
        if pairs:
            report = blind_spots([out for _, out in pairs], [truth for truth, _ in pairs], names,
                                 task_model.version, self.settings.disagreements)
        return [(t, o.regions) for t, o in zip(ranked_tasks, outputs)], scores, note, report

    def _random_scores(self, tasks: list[dict[str, Any]]) -> np.ndarray:
        """Repeatable per project and task: an import adds scores, it moves none."""
        return hashed_scores([int(t["id"]) for t in tasks], self.settings.seed, self.active.project)

    def _outputs(self, task_model: TaskModel, tasks: list[dict[str, Any]], cache: OutputCache,
                 what: str) -> dict[int, ImageOutputs]:
        found: dict[int, ImageOutputs] = {}
        todo = []
        for task in tasks:
            try:
                url = self.active.image_url(task)
            except LabelLoopError as exc:
                self.failed[int(task["id"])] = exc.message
                continue
            cached = cache.get(int(task["id"]), url)
            if cached is not None:
                found[int(task["id"])] = cached
            else:
                todo.append((task, url))
        if todo:
            found.update(self._shared_outputs(task_model, todo, cache, what, len(tasks) - len(todo)))
        return found

    # -- chunks, shared with RQ helpers -------------------------------------------------------------
    def _shared_outputs(self, task_model: TaskModel, todo: list[tuple[dict[str, Any], str]], cache: OutputCache,
                        what: str, cached: int) -> dict[int, ImageOutputs]:
        """Model outputs of ``todo`` in chunks on a :class:`ChunkBoard`: this job computes the chunks it
        claims; RQ workers asked to help (``ACTIVE_SCORING_HELPERS``, with ``REDIS_URL``) claim others."""
        size = self.settings.chunk
        chunks = [[[int(task["id"]), url] for task, url in todo[i:i + size]] for i in range(0, len(todo), size)]
        plan = {"project": self.active.project_id, "label_config": self.active.label_config,
                "extra_params": self.active.extra_params, "task_model": task_model.version, "what": what,
                "chunks": chunks}
        board = ChunkBoard.create(self.active.state_dir / "outputs", f"{task_model.version}.{what}", plan,
                                  len(chunks), lease_s=self.active.services.settings.job_lease_s)
        helpers = ask_for_helpers(self.active.services.settings, self.active, str(board.root),
                                  min(self.settings.scoring_helpers, len(chunks) - 1))

        computed_here: dict[int, list[tuple[int, str, ImageOutputs]]] = {}

        def compute(k: int) -> dict[str, Any]:
            self.job.check_cancelled()
            result = compute_chunk(self.active, task_model, chunks[k])
            # into the cache at once: a job that dies resumes from here even if tasks changed meanwhile
            # (which names its board anew). Helpers' chunks are cached below, by this process only.
            computed_here[k] = _rows(result)
            cache.add(computed_here[k])
            self.job.progress(stage=f"model outputs ({what})", done=board.count_finished() + 1, chunks=len(chunks),
                           tasks=len(todo), cached=cached, helpers_asked=helpers)
            return result

        try:
            results = board.work(compute, on_wait=self.job.check_cancelled)
        except JobCancelled:
            board.remove()  # helpers stop at their next step
            raise
        # any other failure keeps the board: the next scoring job with the same tasks resumes it
        found: dict[int, ImageOutputs] = {}
        by_worker: dict[str, int] = {}
        for k in sorted(results):
            result = results[k]
            rows = computed_here.get(k)
            if rows is None:  # a helper's chunk
                rows = _rows(result)
                cache.add(rows)
            found.update({task_id: out for task_id, _, out in rows})
            self.failed.update({int(t): reason for t, reason in result["failed"].items()})
            by_worker[result["worker"]] = by_worker.get(result["worker"], 0) + 1
        board.remove()
        self.chunks[what] = {"chunks": len(chunks), "helpers_asked": helpers, "by_worker": by_worker}
        return found

    def help(self, board: ChunkBoard) -> int:
        """An RQ helper's share of a scoring job: chunks of the board's plan, while the task model is
        still the plan's (a newer version means the owner's job is obsolete)."""
        plan = board.plan()
        task_model = self.active.task_model()
        if plan is None or task_model is None or task_model.version != plan["task_model"]:
            return 0
        done = board.help(lambda k: compute_chunk(self.active, task_model, plan["chunks"][k]))
        log.info("active project %s: helped with %d chunk(s) of %s", self.active.project_id, len(done),
                 board.root.name)
        return len(done)

    # -- writing ----------------------------------------------------------------------------------
    def _write(self, version: str, entries: list[TaskPrediction], tasks: dict[int, dict[str, Any]],
               report: dict[str, Any] | None, recorded: set[str]) -> dict[str, Any]:
        writer = QueueWriter(self.active.services.ls, self.active.project, version, VERSION_PREFIX)
        older = recorded - {version}
        # recorded before writing: a job that dies mid-write still has its version cleaned up later
        self.active.save_state(VERSIONS_STATE, {"versions": sorted(older | {version})})
        counts = self._write_beside(writer, entries, tasks, older)
        deleted: dict[str, int] = {}
        if entries and counts["created"] + counts["updated"] + counts["unchanged"]:
            writer.serve_by_score()
            # an increment lists a few tasks, but an older version may hold predictions on all of them
            deleted = writer.delete_versions(sorted(older), at_most=len(tasks) + self._known_tasks())
            self.active.save_state(VERSIONS_STATE, {"versions": [version]})
        writer.ensure_tab(QUEUE_TAB, ordering=["tasks:predictions_score"], filters=unlabeled_filter())
        if report is not None:
            self.active.save_state("report.json", report)
            worst = [row["task"] for row in report["highest_loss_tasks"]]
            # emptied, not left alone, when nothing disagrees any more: an old list would mislead
            writer.ensure_tab(DISAGREE_TAB, ordering=["tasks:id"], filters=task_ids_filter(worst))
        return {"predictions": counts, "older_versions_deleted": deleted}

    def _known_tasks(self) -> int:
        """Tasks the last scoring knew in the project (0 without one)."""
        return int((self.active.load_state("last_scoring.json") or {}).get("project_tasks", 0))

    def _write_beside(self, writer: QueueWriter, entries: list[TaskPrediction], tasks: dict[int, dict[str, Any]],
                      older: set[str]) -> dict[str, int]:
        """Write ``entries``. When another of our versions exists (``older``: a new generation or a
        new task model's queue is being written beside the served one), a failed write removes what
        it put in before the job fails: the labeling stream shows only the project's ``model_version``, but a task opened
        from the Data Manager shows its predictions of every version, so a half-written queue beside
        the served one would show labelers both until the retry. If that cleanup fails too (Label
        Studio down), the retry finds the half-written version recorded and completes it."""
        try:
            return writer.write(entries, tasks, progress=lambda n: self.job.progress(stage="writing", written=n,
                                                                                  total=len(entries)))
        except Exception:
            if older:
                self._take_back(writer, len(entries), older)
            raise

    def _take_back(self, writer: QueueWriter, at_most: int, older: set[str]) -> None:
        """Delete what a failed write of ``writer.version`` put in, unless that version is the one
        the project serves (updated in place: what it holds is what labelers have)."""
        ls = self.active.services.ls
        try:
            if ls.get_project(self.active.project).get("model_version") == writer.version:
                return
            gone = ls.delete_model_version(self.active.project, writer.version, at_most=at_most)
            log.warning("active project %s: writing queue %s failed; its %d prediction(s) written so far removed, "
                        "%s still serves", self.active.project_id, writer.version, gone, sorted(older))
        except Exception as cleanup:  # noqa: BLE001 - the write's own error is the one to report
            log.warning("active project %s: writing queue %s failed, and removing its partial predictions too (%s); "
                        "the retry completes it", self.active.project_id, writer.version, cleanup)

    def _target_version(self, base: str, entries: list[TaskPrediction], tasks: dict[int, dict[str, Any]],
                        recorded: set[str]) -> str:
        """The latest generation of ``base`` when updating it in place is cheap (nothing or little
        changed), else a new generation (a set-based strategy whose head moved a lot)."""
        latest = latest_generation(base, recorded)
        current = generation(base, latest)
        in_place = QueueWriter(self.active.services.ls, self.active.project, current,
                               VERSION_PREFIX).requests_needed(entries, tasks)
        fresh = bulk_requests(len(entries)) + 1  # bulk imports, then one delete of the old generation
        if in_place <= fresh:
            return current
        log.info("active project %s: updating queue %s in place would take %d requests; writing it anew as %s "
                 "(%d requests)", self.active.project_id, current, in_place, generation(base, latest + 1), fresh)
        return generation(base, latest + 1)

    def _written_versions(self, tasks: dict[int, dict[str, Any]], base: str) -> set[str]:
        """The queue versions this backend wrote in this project: exactly those are ever deleted, so
        another active backend's or a user's ``active-...`` predictions are safe. With them, every
        generation found on the tasks of a recorded version's base or of ``base``: ``/predict``
        answers under the base name while the queue is at ``~2``, and those predictions are ours
        too. Without a record (this backend's first scoring here), only ``base``'s generations: an
        ``active-...`` version on the tasks may be another active backend's queue, with its own store."""
        on_tasks = {str(p["model_version"]) for t in tasks.values() for p in own_predictions(t, VERSION_PREFIX)}
        record = self.active.load_state(VERSIONS_STATE) or {}
        recorded = set(record.get("versions", []))
        bases = {v.partition(GENERATION_MARK)[0] for v in recorded | {base}}
        return recorded | {v for v in on_tasks if v.partition(GENERATION_MARK)[0] in bases}


def prune_outputs(outputs_dir: Path, version: str) -> None:
    """Delete cached outputs and chunk boards of task-model versions other than ``version``: only the
    current version scores (a rollback recomputes), and a dead job's board would stay forever."""
    if not outputs_dir.is_dir():
        return
    for path in outputs_dir.iterdir():
        if not path.name.startswith(f"{version}."):
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)


def compute_chunk(active: Any, task_model: TaskModel, items: list[list[Any]],
                  batch: int = IMAGES_IN_MEMORY) -> dict[str, Any]:
    """One chunk's model outputs as JSON rows, and the tasks whose image could not be loaded.
    Images are decoded ``batch`` at a time: a chunk of 256 full-size photos would hold gigabytes."""
    rows: list[dict[str, Any]] = []
    failed: dict[str, str] = {}
    errors: list[LabelLoopError] = []
    for start in range(0, len(items), batch):
        images = []
        for task_id, url in items[start:start + batch]:
            try:
                images.append((task_id, url, active.services.media.load_image(url)))
            except LabelLoopError as exc:  # deleted or unreadable since it was listed
                failed[str(task_id)] = exc.message
                errors.append(exc)
                log.warning("active: task %s not scored: %s", task_id, exc.message)
        outputs = task_model.outputs([img for _, _, img in images]) if images else []
        rows.extend(_to_json(task_id, url, out) for (task_id, url, _), out in zip(images, outputs))
    # an outage fails the job (retried) and keeps the queue's current predictions, instead of
    # writing a version that leaves these tasks unscored
    raise_if_outage(errors, len(items), "a chunk")
    return {"rows": rows, "failed": failed, "worker": worker_id()}


def _to_json(task_id: int, url: str, out: ImageOutputs) -> dict[str, Any]:
    return {"task": task_id, "url": url, "embedding": np.round(out.embedding.astype(float), 6).tolist(),
            "regions": out.regions, "probs": None if out.probs is None else out.probs.astype(float).tolist(),
            "predicted_loss": out.predicted_loss, "box_confidences": out.box_confidences,
            "box_labels": out.box_labels, "boxes": out.boxes, "doubt_confidences": out.doubt_confidences}


def _rows(chunk_result: dict[str, Any]) -> list[tuple[int, str, ImageOutputs]]:
    return [(row["task"], row["url"], _from_json(row)) for row in chunk_result["rows"]]


def _from_json(row: dict[str, Any]) -> ImageOutputs:
    return ImageOutputs(embedding=np.asarray(row["embedding"], dtype=np.float32), regions=row["regions"],
                        probs=None if row["probs"] is None else np.asarray(row["probs"]),
                        predicted_loss=row["predicted_loss"], box_confidences=row["box_confidences"],
                        box_labels=row["box_labels"], boxes=[tuple(b) for b in row["boxes"]],
                        doubt_confidences=row.get("doubt_confidences"))
