"""The demo project ``make up`` creates: real photos bundled in installed packages, with the
detector (and the other backends once present) connected and training on submit."""

from __future__ import annotations

import io
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

log = logging.getLogger(__name__)

DEMO_TITLE = "Label Loop demo"
LABELS = ("Person", "Cat", "Dog", "Horse", "Bus", "Motorcycle", "Cup")
_LABEL_TAGS = "".join(f'\n    <Label value="{label}"/>' for label in LABELS)
# Boxes for the detector; smart keypoints (clicks) and a brush for the segmenter's masks.
DEMO_CONFIG = f"""<View>
  <Image name="image" value="$image"/>
  <RectangleLabels name="label" toName="image">{_LABEL_TAGS}
  </RectangleLabels>
  <KeyPointLabels name="click" toName="image" smart="true">{_LABEL_TAGS}
  </KeyPointLabels>
  <BrushLabels name="mask" toName="image">{_LABEL_TAGS}
  </BrushLabels>
</View>"""


def demo_images() -> dict[str, bytes]:
    """Photos shipped inside scikit-image and ultralytics: nothing is downloaded."""
    import ultralytics
    from skimage import data

    arrays: dict[str, Callable[[], Any]] = {
        "astronaut.png": data.astronaut, "chelsea.png": data.chelsea, "coffee.png": data.coffee,
        "rocket.png": data.rocket, "motorcycle.png": lambda: data.stereo_motorcycle()[0],
    }
    images: dict[str, bytes] = {}
    for name, load in arrays.items():
        buf = io.BytesIO()
        Image.fromarray(np.asarray(load())).convert("RGB").save(buf, format="PNG")
        images[name] = buf.getvalue()
    assets = Path(ultralytics.__file__).parent / "assets"
    for path in sorted(assets.glob("*.jpg")):
        images[path.name] = path.read_bytes()
    return images


def ensure_demo_project(ls: Any, backends: dict[str, str]) -> int:
    """Create (or find) the demo project, import the photos once, connect each backend once.

    ``ls`` is a ``tests.harness``-style REST helper with ``api()``; ``backends`` maps title -> URL.
    """
    projects = ls.api("GET", "/api/projects?page_size=1000")
    projects = projects.get("results", projects) if isinstance(projects, dict) else projects
    project = next((p["id"] for p in projects if p["title"] == DEMO_TITLE), None)
    if project is None:
        project = ls.api("POST", "/api/projects", json={"title": DEMO_TITLE, "label_config": DEMO_CONFIG})["id"]
        files = [(name, (name, io.BytesIO(data), "image/png")) for name, data in demo_images().items()]
        ls.api("POST", f"/api/projects/{project}/import?commit_to_project=true", files=files)
        log.info("created project %r (id %s) with %d photos", DEMO_TITLE, project, len(files))
    connected = ls.api("GET", f"/api/ml?project={project}") or []
    known = {m["url"].rstrip("/") for m in connected}
    for title, url in backends.items():
        if url.rstrip("/") not in known:
            ls.api("POST", "/api/ml", json={"project": project, "url": url, "title": title,
                                            "is_interactive": title == "segmenter", "auto_update": True})
            log.info("connected %s at %s", title, url)
    ls.api("PATCH", f"/api/projects/{project}", json={"start_training_on_annotation_update": True})
    return project
