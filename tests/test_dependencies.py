"""The environment is the lock: one OpenCV, the headless build uv.lock names (issue 22).

ultralytics asks for opencv-python, label-studio-sdk for opencv-python-headless; installed together
they share one cv2/ folder and the last written wins, so an image ran OpenCV 5.0 where the tests ran
4.12. pyproject.toml's override removes opencv-python from the resolution.
"""

from __future__ import annotations

import tomllib
from importlib import metadata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
OPENCV = {"opencv-python", "opencv-python-headless", "opencv-contrib-python", "opencv-contrib-python-headless"}


def locked() -> dict[str, str]:
    lock = tomllib.loads((ROOT / "uv.lock").read_text())
    return {p["name"]: p["version"] for p in lock["package"]}


def test_the_lock_resolves_to_one_opencv_the_headless_build():
    assert {name for name in locked() if name in OPENCV} == {"opencv-python-headless"}


def test_the_cv2_imported_is_the_locked_headless_build():
    import cv2

    version = locked()["opencv-python-headless"]
    dist = metadata.distribution("opencv-python-headless")
    assert dist.version == version
    assert cv2.__version__ == ".".join(version.split(".")[:3])
    owned = {Path(dist.locate_file(f)).resolve() for f in dist.files or []}
    assert Path(cv2.__file__).resolve() in owned
    for other in OPENCV - {"opencv-python-headless"}:
        with pytest.raises(metadata.PackageNotFoundError):
            metadata.distribution(other)  # nothing else wrote into cv2/
