"""Writes notebooks/*.ipynb from the cells below (run after editing a notebook's cells).

Keeping the source here makes notebook diffs reviewable. ``--execute`` then runs each notebook top
to bottom in its full mode and commits its outputs (plots, the quickstart's steps), so a person
browsing the repository sees them; ``tests/notebooks`` checks that the committed cells are the ones
below and executes them afresh, in fast mode.

    .venv/bin/python tools/make_notebooks.py [--execute [NAME ...]]
"""

import argparse
import os
import re
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

ROOT = Path(__file__).resolve().parents[1]
PASSWORD = re.compile(r"(login \S+ / )\S+")  # the quickstart's "login <user> / <password>" line

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
    new_markdown_cell("""## Predicted loss: how well it ranks, and what its top picks teach

`bench/active_learning.py --validation 10000` (2 seeds, 200-1,200 labels, 10k training images held
out of the pool): accuracy per cycle of the paper's top-n learning loss (`learning_loss:prefilter=0`),
of the same selection fed the *real* loss (`oracle_loss`), of today's `learning_loss` (the 10n highest
predicted losses clustered, one per cluster) and margin; and Spearman's rho between each image's real
loss and its predictors, for the models of each run."""),
    new_code_cell("""LOSS = ROOT / "bench" / "results" / "learning_loss_validation.json"
loss_runs = json.loads(LOSS.read_text())
print(f"{'strategy':>26}  accuracy per cycle (%)")
for name, entry in loss_runs["strategies"].items():
    print(f"{name:>26}  {' '.join(f'{100 * v:5.1f}' for v in entry['mean'])}")
print("\\nSpearman's rho, real loss vs predictor, the random run's models, per cycle:")
for predictor, rhos in loss_runs["loss_correlation"]["random"].items():
    print(f"{predictor:>26}  {' '.join(f'{v:5.2f}' for v in rhos)}")"""),
    new_markdown_cell("""## Detection: does the queue save labels for teams that draw boxes?

`bench/active_detection.py`: canvases of Fashion-MNIST items on real photos (1-6 items, overlapping,
40-130 px; Bag kept rare at 5 % of the objects); the detector fine-tuned by its own training code each
cycle, from a base trained on the other five classes; 50 random labels, then 50 per cycle picked by the
active backend's own detection ranking (`DetectorTaskModel` outputs, `build_pool`, `stable_scores`: the
order Label Studio serves). Curves of mAP50-95, mAP50 and the rare class's AP, mean ± std over seeds,
and how well each score predicts an image's real loss (Spearman's rho against 1 - F1 on validation
canvases). The full run takes about 10 hours on 2 CPU cores: the notebook plots its committed results,
and says so when there are none yet."""),
    new_code_cell("""from bench import active_detection as ad

DETECTION = ROOT / "bench" / "results" / "active_detection.json"
detection = None
if FAST:  # the whole pipeline on a toy budget (what the tests run)
    import tempfile
    detection = ad.run(ad.Protocol.quick(), ["random", "margin_max"], None,
                       work=Path(tempfile.mkdtemp(prefix="nb-active-detection-")) / "run")
elif os.environ.get("LABELLOOP_RERUN") == "1":
    detection = ad.run(ad.Protocol(), list(ad.STRATEGIES), DETECTION)
elif DETECTION.exists():
    detection = json.loads(DETECTION.read_text())
else:
    print(f"{DETECTION.relative_to(ROOT)} is not measured yet: .venv/bin/python bench/active_detection.py")
if detection is not None:
    print(f"measured on {detection['measured_on']}; rare class {detection['rare_class']} "
          f"({detection['rare_share_of_pool_objects']:.1%} of the pool's objects)")
    ad.plot(detection)
    plt.show()"""),
    new_code_cell("""if detection is not None:
    print(f"{'strategy':>14} {'final mAP50-95':>14} {'labels to random':>16} {'rare AP gain @mid':>17}")
    for name, entry in detection["strategies"].items():
        print(f"{name:>14} {entry['mean']['map50_95'][-1]:>14.4f} "
              f"{str(entry['labels_to_reach_random_final_map50_95']):>16} "
              f"{entry['rare_ap50_95_gain_mid_budget_points']:>+17.2f}")
    print("\\nSpearman's rho, predicted vs real loss (1 - F1) per cycle, the random run's models:")
    for predictor, rhos in detection["loss_correlation"].get("random", {}).items():
        print(f"{predictor:>12}: {rhos}")"""),
]

QUICKSTART = [
    new_markdown_cell("""# Quickstart: the labeling loop end to end

This notebook runs the whole loop against a real Label Studio:

1. start Label Studio (or use yours: set `LABEL_STUDIO_URL` and `LABEL_STUDIO_API_KEY` before starting
   Jupyter; the backends must be reachable from it, see the README),
2. start the three backends and connect them to a new project,
3. import images and label a few tasks through the API (a simulated labeler submits true boxes),
4. watch the detector fine-tune and publish a new version, and its pre-labels change,
5. watch the active backend reorder the labeling queue (`/next`) after that publish,
6. ask the segmenter for a mask from one click.

The images are Fashion-MNIST items pasted onto canvases with exact boxes, so the labeler is exact.
With no network the detector starts from random weights (`yolo11n.yaml`); with one, set
`DETECTOR_BASE_WEIGHTS=yolo11n.pt`. `LABELLOOP_FAST=1` (the tests) trains tiny models."""),
    new_code_cell("""import io, json, os, secrets, sys, tempfile, time
from pathlib import Path

import requests

ROOT = Path.cwd() if (Path.cwd() / "backends").is_dir() else Path.cwd().parent
sys.path.insert(0, str(ROOT))
from backends.stack.__main__ import LabelStudioRest
from backends.stack.processes import backend_process, free_port, label_studio_process
from bench import fmnist

FAST = os.environ.get("LABELLOOP_FAST") == "1"
work = Path(tempfile.mkdtemp(prefix="labelloop-quickstart-"))
started = []  # processes this notebook started; the last cell stops them

if os.environ.get("LABEL_STUDIO_URL") and os.environ.get("LABEL_STUDIO_API_KEY"):
    LS_URL, LS_KEY = os.environ["LABEL_STUDIO_URL"].rstrip("/"), os.environ["LABEL_STUDIO_API_KEY"]
    print(f"using your Label Studio at {LS_URL}")
else:
    LS_KEY, password, port = secrets.token_hex(20), secrets.token_urlsafe(12), free_port()
    ls_proc = label_studio_process(work / "label-studio", port, "admin@labelloop.local", password, LS_KEY)
    ls_proc.log_path = work / "label-studio.log"
    ls_proc.start(timeout=300)  # first start runs migrations: about a minute
    started.append(ls_proc)
    LS_URL = f"http://127.0.0.1:{port}"
    print(f"Label Studio at {LS_URL}, login admin@labelloop.local / {password}")
ls = LabelStudioRest(LS_URL, LS_KEY)"""),
    new_markdown_cell("## Start the backends\n\nThey share one model store (`MODEL_DIR`): the active backend scores "
                      "with the detector's published versions."),
    new_code_cell("""env = {"LABEL_STUDIO_URL": LS_URL, "LABEL_STUDIO_API_KEY": LS_KEY, "MODEL_DIR": str(work / "models"),
       "TRAIN_DEBOUNCE_S": "2", "YOLO_OFFLINE": "1",
       "DETECTOR_BASE_WEIGHTS": os.environ.get("DETECTOR_BASE_WEIGHTS", "yolo11n.yaml"),
       "DETECTOR_EPOCHS": "3" if FAST else "30", "DETECTOR_IMGSZ": "160" if FAST else "320", "DETECTOR_BATCH": "4",
       "DETECTOR_PUBLISH": "always", "DETECTOR_SCORE_THRESHOLD": "0.0" if FAST else "0.25", "DETECTOR_MAX_DET": "10",
       "ACTIVE_WATCH_S": "2", "SAM_ALLOW_RANDOM": os.environ.get("SAM_ALLOW_RANDOM", "1"), "WARMUP": "0"}
urls = {}
for name in ("detector", "segmenter", "active"):
    port = free_port()
    proc = backend_process(f"backends.{name}", port, {**env, "DATA_DIR": str(work / name)}, work / f"{name}.log")
    proc.start(timeout=120)
    started.append(proc)
    urls[name] = f"http://127.0.0.1:{port}"
print(json.dumps(urls, indent=1))"""),
    new_markdown_cell("## A project with the three backends connected"),
    new_code_cell("""CLASSES = [0, 1, 2, 3, 4]
NAMES = [fmnist.NAMES[c] for c in CLASSES]
labels_xml = "".join(f'<Label value="{n}"/>' for n in NAMES)
config = ('<View><Image name="image" value="$image"/>'
          f'<RectangleLabels name="label" toName="image">{labels_xml}</RectangleLabels>'
          f'<KeyPointLabels name="click" toName="image" smart="true">{labels_xml}</KeyPointLabels>'
          f'<BrushLabels name="mask" toName="image">{labels_xml}</BrushLabels></View>')
project = ls.api("POST", "/api/projects", json={"title": "Label Loop quickstart", "label_config": config})["id"]
ml = {}
for name, url in urls.items():
    ml[name] = ls.api("POST", "/api/ml", json={"project": project, "url": url, "title": name,
                                              "is_interactive": name == "segmenter", "auto_update": True})["id"]
ls.api("PATCH", f"/api/projects/{project}", json={"start_training_on_annotation_update": True})
print(f"project {project}: {LS_URL}/projects/{project}")"""),
    new_markdown_cell("## Import images"),
    new_code_cell("""x, y = fmnist.load("train")
canvases = fmnist.canvases(x, y, CLASSES, 20 if FAST else 60, size=160 if FAST else 320, seed=7)
files = []
for i, (image, _) in enumerate(canvases):
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    files.append((f"canvas{i:03d}.png", (f"canvas{i:03d}.png", buffer.getvalue(), "image/png")))
ls.api("POST", f"/api/projects/{project}/import?commit_to_project=true", files=files)
listed = ls.api("GET", f"/api/tasks?project={project}&page_size=1000")
tasks = sorted(t["id"] for t in listed["tasks"])
by_name = {t["id"]: t["data"]["image"].rsplit("-", 1)[-1] for t in listed["tasks"]}
truth = {t: canvases[int(by_name[t][len("canvas"):-len(".png")])][1] for t in tasks}
print(f"{len(tasks)} tasks")"""),
    new_markdown_cell("## Label a few tasks (the simulated labeler submits the true boxes)\n\n"
                      "Each submit is a webhook; the detector coalesces them into one training job."),
    new_code_cell("""def boxes_to_result(boxes, size):
    return [{"from_name": "label", "to_name": "image", "type": "rectanglelabels", "original_width": size,
             "original_height": size, "value": {"x": 100 * bx / size, "y": 100 * by / size, "width": 100 * bw / size,
                                                "height": 100 * bh / size, "rotation": 0, "rectanglelabels": [NAMES[c]]}}
            for c, bx, by, bw, bh in boxes]

size = canvases[0][0].size[0]
labeled = tasks[:8] if FAST else tasks[:30]
for task_id in labeled:
    ls.api("POST", f"/api/tasks/{task_id}/annotations/", json={"result": boxes_to_result(truth[task_id], size)})
print(f"submitted {len(labeled)} annotations")"""),
    new_code_cell("""def wait(check, timeout, what):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if (value := check()):
            return value
        time.sleep(1)
    raise TimeoutError(f"no {what} after {timeout} s")

def versions():
    # until a trained version serves, "current" names the base weights and "details" is empty
    found = requests.get(f"{urls['detector']}/versions?project={project}", timeout=5).json()
    return found if any(v["name"] == found["current"] for v in found.get("details", [])) else None

published = wait(versions, 900, "published detector version")
current = next(v for v in published["details"] if v["name"] == published["current"])
print(f"detector version {current['name']}: trained on {current['n_annotations']} annotations")
print({k: round(v, 3) for k, v in current["metrics"].items() if isinstance(v, float)})
print("timings (s):", current["timings"])"""),
    new_markdown_cell("## Pre-labels from the new version"),
    new_code_cell("""unlabeled = [t for t in tasks if t not in labeled]
ls.api("POST", f"/api/dm/actions?id=retrieve_tasks_predictions&project={project}",
       json={"selectedItems": {"all": False, "included": unlabeled[:3]}, "project": project})
for task_id in unlabeled[:3]:
    for p in ls.api("GET", f"/api/predictions?task={task_id}"):
        if p["model_version"] == published["current"]:
            print(task_id, p["model_version"], [(r["value"]["rectanglelabels"][0], r["score"]) for r in p["result"]][:4])"""),
    new_markdown_cell("## The queue reorders\n\nThe active backend saw the detector publish, scored every unlabeled "
                      "task with it and wrote one prediction per task whose score Label Studio's "
                      "\"Uncertainty sampling\" serves lowest first."),
    new_code_cell("""def scored():
    jobs = requests.get(f"{urls['active']}/jobs?project={project}", timeout=5).json()["jobs"]
    done = [j for j in jobs if j["kind"] == "score" and j["state"] == "done"
            and published["current"] in j["result"].get("queue_version", "")]
    return done[0]["result"] if done else None

ranking = wait(scored, 600, "scoring with the new detector version")
settings = ls.api("GET", f"/api/projects/{project}")
print(f"queue version {ranking['queue_version']}, sampling {settings['sampling']!r}, {ranking['scored']} tasks scored")
print("most informative first:", ranking["first"][:5])
served = ls.api("GET", f"/api/projects/{project}/next")["id"]
print("Label Studio serves next:", served)
assert served == ranking["first"][0]"""),
    new_markdown_cell("## One click, one mask (the segmenter)\n\nWhat the editor's smart keypoint tool sends. The "
                      "image was embedded when it was imported, so the click only runs SAM's decoder."),
    new_code_cell("""task_id = unlabeled[0]
c, bx, by, bw, bh = truth[task_id][0]
click = {"type": "keypointlabels", "from_name": "click", "to_name": "image", "is_positive": True,
         "original_width": size, "original_height": size,
         "value": {"x": 100 * (bx + bw / 2) / size, "y": 100 * (by + bh / 2) / size, "keypointlabels": [NAMES[c]]}}
t0 = time.time()
reply = ls.api("POST", f"/api/ml/{ml['segmenter']}/interactive-annotating",
               json={"task": task_id, "context": {"result": [click]}})
regions = reply["data"]["result"]
print(f"{[r['type'] for r in regions]} in {time.time() - t0:.1f} s")
assert "brushlabels" in [r["type"] for r in regions]"""),
    new_code_cell("""for proc in reversed(started):
    proc.stop()
print("stopped", len(started), "processes; logs in", work)"""),
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


NOTEBOOKS = {"01_quickstart": QUICKSTART, "02_active_learning": ACTIVE_LEARNING, "03_transfer_learning": TRANSFER_LEARNING}


def build(name: str) -> nbformat.NotebookNode:
    """The notebook ``name`` from its cells, outputs empty."""
    cells = NOTEBOOKS[name]
    for i, cell in enumerate(cells):
        cell.id = f"{name[:2]}-{i:02d}"  # stable ids: regenerating leaves unchanged notebooks unchanged
    metadata = {"kernelspec": {"name": "python3", "display_name": "Python 3"}}
    return new_notebook(cells=cells, metadata=metadata)


def execute(notebook: nbformat.NotebookNode, timeout: int = 3600) -> nbformat.NotebookNode:
    from nbclient import NotebookClient

    os.environ.pop("MPLBACKEND", None)  # the kernel's inline backend: plots become outputs
    NotebookClient(notebook, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}}).execute()
    for cell in notebook.cells:  # the run's throwaway Label Studio password is no thing to commit
        for output in cell.get("outputs", []):
            if "text" in output:
                output["text"] = PASSWORD.sub(r"\1<printed when you run it>", output["text"])
    return notebook


def main() -> None:
    parser = argparse.ArgumentParser(description="Write (and optionally run) notebooks/*.ipynb")
    parser.add_argument("--execute", nargs="*", metavar="NAME",
                        help="run these notebooks (all if none named) and keep their outputs")
    args = parser.parse_args()
    out = ROOT / "notebooks"
    out.mkdir(exist_ok=True)
    for name in NOTEBOOKS:
        path = out / f"{name}.ipynb"
        notebook = build(name)
        if args.execute is not None and (not args.execute or name in args.execute):
            print(f"executing {name} ...", flush=True)
            notebook = execute(notebook)
        elif path.exists():  # keep the outputs of the last run when the cells did not change
            notebook = _keep_outputs(nbformat.read(path, as_version=4), notebook)
        nbformat.write(notebook, path)


def _keep_outputs(committed: nbformat.NotebookNode, fresh: nbformat.NotebookNode) -> nbformat.NotebookNode:
    sources = [(c.cell_type, c.source) for c in committed.cells]
    return committed if sources == [(c.cell_type, c.source) for c in fresh.cells] else fresh


if __name__ == "__main__":
    main()
