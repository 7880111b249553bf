"""Weights files are pickles: opened with ``weights_only=False``, as ultralytics opens them, a
``.pt`` runs whatever its ``__reduce__`` asks for, before any check on what it contains.

So every ``.pt`` this backend opens is read by torch's weights-only unpickler instead, which builds
only tensors, containers and the classes on an allow-list, and refuses anything else *before*
calling it. The allow-list is what a YOLO checkpoint is made of: the ``nn.Module`` subclasses of
``torch.nn`` and ``ultralytics.nn``, ultralytics' argument namespace, the torchvision transforms a
classify checkpoint keeps for its preprocessing, plus any class an operator
names in ``DETECTOR_SAFE_GLOBALS`` (a custom architecture). Functions are never allowed: a class
is only instantiated and given its state, which for these classes runs no user-chosen code.

``enforce()`` turns this on for the whole process (``TORCH_FORCE_WEIGHTS_ONLY_LOAD``), so that
ultralytics' own loads (base weights, a trainer's checkpoints, an ONNX export) are weights-only
too; ``check_weights_file`` gives the 422 that names what a refused file needed.
"""

from __future__ import annotations

import importlib
import os
import pickle
import pkgutil
import threading
import types
import zipfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from backends.core.errors import LabelLoopError

_MODULE_PACKAGES = ("torch.nn.modules", "ultralytics.nn.modules")
_MODULE_FILES = ("ultralytics.nn.tasks",)
_NAMESPACES = ("ultralytics.utils.IterableSimpleNamespace",)
#: what ultralytics' classify checkpoints pickle as ``model.transforms`` (their val preprocessing):
#: torchvision transforms whose state is sizes, an interpolation mode and mean/std tensors
_CLASSIFY_TRANSFORMS = tuple(f"torchvision.transforms.{name}" for name in
                             ("Compose", "Resize", "CenterCrop", "ToTensor", "Normalize", "InterpolationMode"))
_lock = threading.Lock()
_allowed: dict[tuple[str, ...], list[type]] = {}
_enforced: set[tuple[str, ...]] = set()


class UnsafeWeightsError(LabelLoopError):
    """A weights file that is not a plain checkpoint of allowed classes: refused unopened."""

    def __init__(self, message: str) -> None:
        super().__init__(message, status=422)


def allowed_classes(extra: Iterable[str] = ()) -> list[type]:
    """The classes a weights-only load may build (computed once per ``extra``)."""
    key = tuple(sorted(extra))
    with _lock:
        if key not in _allowed:
            _allowed[key] = _module_classes() + [_resolve(name) for name in _NAMESPACES + _CLASSIFY_TRANSFORMS + key]
            _allowed[key].append(types.SimpleNamespace)
        return _allowed[key]


def enforce(extra: Iterable[str] = ()) -> None:
    """Make every ``torch.load`` of this process weights-only, with the allow-list registered.

    torch reads the variable at each call, and it overrides an explicit ``weights_only=False``
    (ultralytics' ``torch_load``). Idempotent; classes once allowed stay allowed for the process."""
    import torch

    key = tuple(sorted(extra))
    if key in _enforced and os.environ.get("TORCH_FORCE_WEIGHTS_ONLY_LOAD") == "1":
        return  # called on every /predict: the registration is done once
    # a list of the element type torch declares (list is invariant, so list[type] is refused)
    safe: list[Callable[..., Any] | tuple[Callable[..., Any], str]] = list(allowed_classes(key))
    torch.serialization.add_safe_globals(safe)
    os.environ["TORCH_FORCE_WEIGHTS_ONLY_LOAD"] = "1"
    _enforced.add(key)


def check_weights_file(path: Path, extra: Iterable[str] = (), *, shown_as: str | None = None) -> None:
    """Load ``path`` weights-only; raise UnsafeWeightsError naming what it needed if that fails."""
    import torch

    name = shown_as or Path(path).name
    if not zipfile.is_zipfile(path):
        raise UnsafeWeightsError(f"{name} could not be loaded: not a torch.save checkpoint (a zip archive); "
                                 "re-save it with torch.save from PyTorch >= 1.6")
    enforce(extra)  # not torch's safe_globals context: its exit removes the classes for every thread
    try:
        torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except pickle.UnpicklingError:
        needed = ", ".join(sorted(_disallowed_globals(path))) or "objects built at load time"
        raise UnsafeWeightsError(
            f"{name} refused: loading it would call {needed}, which a weights file may not "
            "(weights are loaded weights-only; a class of your own architecture can be allowed "
            "with DETECTOR_SAFE_GLOBALS)") from None
    except Exception as exc:  # truncated zips, missing records
        raise UnsafeWeightsError(f"{name} could not be loaded: {type(exc).__name__}: {exc}") from None


def _disallowed_globals(path: Path) -> list[str]:
    import torch

    try:
        return torch.serialization.get_unsafe_globals_in_checkpoint(path)
    except Exception:  # the names only decorate the message
        return []


def _module_classes() -> list[type]:
    """Every nn.Module subclass defined in torch.nn.modules and ultralytics.nn."""
    import torch

    modules = [importlib.import_module(name) for name in _MODULE_FILES]
    for package_name in _MODULE_PACKAGES:
        package = importlib.import_module(package_name)
        modules.append(package)
        modules += [importlib.import_module(f"{package_name}.{info.name}") for info in pkgutil.iter_modules(package.__path__)]
    found = {id(obj): obj for module in modules for obj in vars(module).values()
             if isinstance(obj, type) and issubclass(obj, torch.nn.Module)
             and obj.__module__.startswith(("torch.nn.", "ultralytics.nn."))}
    return list(found.values())


def _resolve(dotted: str) -> type:
    """``package.module.Class`` as the class; anything that is not a class is refused."""
    module_name, _, attr = dotted.rpartition(".")
    try:
        found = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError, ValueError) as exc:
        raise LabelLoopError(f"DETECTOR_SAFE_GLOBALS: {dotted!r} cannot be imported ({exc})") from None
    if not isinstance(found, type):
        raise LabelLoopError(f"DETECTOR_SAFE_GLOBALS: {dotted!r} is not a class; only classes may be allowed")
    return found
