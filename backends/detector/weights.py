"""Loading YOLO weights: lazily, once per file, safe offline; and where a version keeps them.

A published version of a project is a folder (``registry.py``) whose weights are one file,
``weights_of(version_dir)``: the detector serves and trains from it, the active backend scores
with it, so its name is written here only.

``spec`` is what users write in ``DETECTOR_BASE_WEIGHTS`` or a control's ``model_path``:
- an ultralytics release name (``yolo11n.pt``) or a URL of a ``.pt``: downloaded once, where a network
  exists, into ``MODEL_DIR/downloads`` (downloads.py);
- a local ``.pt`` file (a published version, or weights trained elsewhere);
- a model ``.yaml`` (``yolo11n.yaml``): the architecture with random weights, no download. An
  80-class yaml gets the COCO class names, so it stands in for the pretrained model offline.
"""

from __future__ import annotations

import fcntl
import logging
import os
import re
import shutil
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from backends.core.caches import keep_caches_under
from backends.core.downloads import local_weights, needs_download
from backends.core.errors import LabelConfigError

from .safe_weights import check_weights_file, enforce

log = logging.getLogger(__name__)

_RELEASE_NAME = re.compile(r"^yolo[\w.-]*\.(pt|yaml|yml)$", re.IGNORECASE)
_CACHE_SIZE = 4  # models held in memory per process; each YOLO n/s model is 5-40 MB
WEIGHTS_FILE = "weights.pt"  # a version's weights, inside its folder


def weights_of(version_dir: Path) -> Path:
    """The weights file of the version in ``version_dir`` (it may not exist yet: a staged version
    is written through this path too)."""
    return Path(version_dir) / WEIGHTS_FILE


def configure_ultralytics(data_dir: Path, safe_globals: Iterable[str] = ()) -> None:
    """Keep ultralytics quiet and self-contained: no pip installs, settings and fonts under DATA_DIR;
    and weights-only loads, with the operator's ``safe_globals`` allowed."""
    config_dir = Path(keep_caches_under(data_dir)["YOLO_CONFIG_DIR"])
    os.environ.setdefault("YOLO_AUTOINSTALL", "false")
    os.environ.setdefault("YOLO_VERBOSE", "false")
    enforce(safe_globals)  # every torch.load of this process is weights-only from here on
    fonts = config_dir / "Ultralytics"
    fonts.mkdir(parents=True, exist_ok=True)
    try:  # plotting asks the network for Arial otherwise
        import matplotlib

        dejavu = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
        for name in ("Arial.ttf", "Arial.Unicode.ttf"):
            if not (fonts / name).exists():
                shutil.copy(dejavu, fonts / name)
    except Exception as exc:  # fonts only matter for plots
        log.debug("font setup skipped: %s", exc)


def check_allowed(spec: str, allowed_dirs: Iterable[Path]) -> str:
    """Refuse weights paths outside the model store and DETECTOR_WEIGHTS_DIRS (a label config is
    user-editable; loading a pickle from an arbitrary path would run arbitrary code)."""
    if _RELEASE_NAME.match(spec) and "/" not in spec and not Path(spec).exists():
        return spec  # an ultralytics release or built-in architecture name
    path = Path(spec).expanduser().resolve()
    for root in allowed_dirs:
        if path.is_relative_to(Path(root).expanduser().resolve()):
            if not path.is_file():
                raise LabelConfigError(f"model_path {spec!r} does not exist")
            return str(path)
    raise LabelConfigError(
        f"model_path {spec!r} is outside the model store and DETECTOR_WEIGHTS_DIRS; refused. "
        "Put the file there or register it with POST /versions"
    )


class LoadedModel:
    """A YOLO model and the lock that serialises its use (ultralytics predictors are not thread-safe)."""

    def __init__(self, model: Any, spec: str) -> None:
        self.model = model
        self.spec = spec
        self.lock = threading.Lock()
        self.onnx: Any = None

    @property
    def names(self) -> dict[int, str]:
        return dict(self.model.names)

    @property
    def task(self) -> str:
        return self.model.task


_cache: OrderedDict[tuple[str, float, str], LoadedModel] = OrderedDict()
_cache_lock = threading.Lock()
_load_locks: dict[tuple[str, float, str], threading.Lock] = {}


def load_model(spec: str, shown_as: str | None = None, role: str = "predict") -> LoadedModel:
    """The model for ``spec``, loaded once per process (LRU of a few); concurrent callers wait.
    ``shown_as`` names the file in a refusal (an upload's own name, not its staged path).
    ``role="track"`` is a second instance of the same weights for video tracking: ``track`` keeps
    trackers and a video reader on its predictor and holds the lock for a whole video, which must
    neither leak into nor queue the image predictions of the first instance."""
    spec = resolve(spec)
    key = (spec, _mtime(spec), role)
    with _cache_lock:
        if key in _cache:
            _cache.move_to_end(key)
            return _cache[key]
        load_lock = _load_locks.setdefault(key, threading.Lock())
    with load_lock:
        with _cache_lock:
            if key in _cache:
                return _cache[key]
        loaded = LoadedModel(_build(spec, shown_as), spec)
        with _cache_lock:
            _cache[key] = loaded
            while len(_cache) > _CACHE_SIZE:
                _cache.popitem(last=False)
            _load_locks.pop(key, None)
        return loaded


def onnx_for(weights: str, imgsz: int) -> str | None:
    """The ONNX export of a local ``.pt`` at ``imgsz``, made once and kept beside it; None if the
    weights are not a ``.pt`` (yamls: those run on torch)."""
    source = Path(resolve(weights))
    if source.suffix != ".pt" or not source.is_file():
        return None
    target = source.with_name(f"{source.stem}.imgsz{imgsz}.onnx")
    if target.exists():
        return str(target)
    lock_fd = os.open(f"{target}.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(lock_fd, fcntl.LOCK_EX)  # one export even with several gunicorn workers
        if not target.exists():
            _export_onnx(source, target, imgsz)
    finally:
        os.close(lock_fd)
    return str(target)


def _export_onnx(source: Path, target: Path, imgsz: int) -> None:
    from ultralytics import YOLO

    started = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix=".onnx-", dir=source.parent))
    try:
        copied = weights_of(work)  # ultralytics exports beside what it loaded: into work/, not the version
        shutil.copy(source, copied)
        # dynamic: the same rectangle letterbox as torch (a static square input costs ~2x more pixels)
        exported = YOLO(str(copied)).export(format="onnx", imgsz=imgsz, dynamic=True, simplify=False,
                                            verbose=False)
        os.replace(exported, target)  # atomic: readers see no half-written file
    except Exception as exc:
        raise LabelConfigError(f"ONNX export of {source.name} failed: {type(exc).__name__}: {exc}") from None
    finally:
        shutil.rmtree(work, ignore_errors=True)
    log.info("exported %s to ONNX (imgsz %d) in %.1f s", source, imgsz, time.perf_counter() - started)


def resolve(spec: str) -> str:
    """The local file ``spec`` stands for: a URL or a release name becomes its download in the model
    store (made on first use), anything else is itself."""
    if not needs_download(spec):
        return spec
    from backends.core.settings import CoreSettings

    return local_weights(spec, CoreSettings().model_dir / "downloads")


def _mtime(spec: str) -> float:
    try:
        return os.stat(spec).st_mtime
    except OSError:
        return 0.0


def operator_safe_globals() -> list[str]:
    from .settings import DetectorSettings

    return DetectorSettings().safe_globals


def _build(spec: str, shown_as: str | None = None) -> Any:
    from ultralytics import YOLO

    log.info("loading YOLO weights %s", spec)
    extra = operator_safe_globals()  # from the environment: the active backend loads YOLO weights too
    if Path(spec).suffix == ".pt" and Path(spec).is_file():
        check_weights_file(Path(spec), extra, shown_as=shown_as)  # enforces; the 422 names what a refused file needs
    else:
        enforce(extra)
    try:
        model = YOLO(spec)
    except FileNotFoundError as exc:
        raise LabelConfigError(f"weights {spec!r} not found: {exc}") from None
    except Exception as exc:  # download failures, corrupt files
        raise LabelConfigError(f"weights {spec!r} could not be loaded: {type(exc).__name__}: {exc}") from None
    if spec.endswith((".yaml", ".yml")):
        _name_like_pretrained(model)
    return model


def _name_like_pretrained(model: Any) -> None:
    """Give a random-init model the class names of its pretrained twin (COCO, or ImageNet for -cls)."""
    from ultralytics.utils import ROOT, YAML

    names = dict(model.model.names) if hasattr(model.model, "names") else {}
    if not names or not all(str(v).isdigit() for v in names.values()):
        return
    dataset = {80: "coco.yaml", 1000: "ImageNet.yaml"}.get(len(names))
    if dataset:
        known = YAML.load(ROOT / "cfg" / "datasets" / dataset)["names"]
        model.model.names = {int(k): v for k, v in known.items()}


def version_controls(version: Any, first_box: str | None) -> dict[str, dict[str, Any]]:
    """What ``version`` serves, per control name: ``{"weights": path in the version, "names", ...}``.

    A version trained by this code lists its controls in ``metadata["controls"]``; one published
    before (one box control) or imported (``POST /versions``) holds ``weights.pt`` for the control
    it was trained on, else for the first ``RectangleLabels`` control (``first_box``)."""
    controls = version.metadata.get("controls")
    if isinstance(controls, dict):
        return {name: entry for name, entry in controls.items() if isinstance(entry, dict) and entry.get("weights")}
    name = version.metadata.get("from_name") or first_box
    if not name:
        return {}
    return {name: {"weights": WEIGHTS_FILE, "task": "detect", "names": version.metadata.get("names"),
                   "metrics": version.metadata.get("metrics")}}
