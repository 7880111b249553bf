"""The segmenter through a real Label Studio: interactive-annotating API and TASKS_CREATED prefetch."""

import numpy as np
import pytest
import requests
from label_studio_sdk.converter.brush import decode_rle

from tests.conftest import png_bytes
from tests.harness import wait_until

pytestmark = pytest.mark.labelstudio

CONFIG = ('<View><Image name="image" value="$image"/>'
          '<BrushLabels name="brush" toName="image"><Label value="Cat"/></BrushLabels>'
          '<KeyPointLabels name="kp" toName="image" smart="true"><Label value="Cat"/></KeyPointLabels></View>')


def test_click_through_label_studio_and_prefetch_on_import(label_studio, start_backend, tmp_path):
    env = {"DATA_DIR": tmp_path / "seg", "LABEL_STUDIO_URL": label_studio.url, "LABEL_STUDIO_API_KEY": label_studio.token,
           "SAM_ALLOW_RANDOM": 1, "TRAIN_DEBOUNCE_S": 0.2}
    _, url = start_backend("backends.segmenter", env)
    project = label_studio.create_project(CONFIG, title="segmenter")
    ml = label_studio.connect_backend(project, url, "segmenter", interactive=True, train_on_submit=False)
    # Importing tasks sends TASKS_CREATED: the backend embeds the image before anyone clicks.
    (task,) = label_studio.upload_images(project, {"a.png": png_bytes(120, 80, (30, 160, 90))})
    (job,) = wait_until(lambda: [j for j in requests.get(f"{url}/jobs?project={project}", timeout=5).json()["jobs"]
                                 if j["state"] == "done"], 240, "the prefetch job", interval=1)
    assert job["kind"] == "prefetch" and job["result"]["embedded"] == 1

    context = {"result": [{"type": "keypointlabels", "from_name": "kp", "to_name": "image", "is_positive": True,
                           "original_width": 120, "original_height": 80,
                           "value": {"x": 40, "y": 50, "keypointlabels": ["Cat"]}}]}
    reply = label_studio.api("POST", f"/api/ml/{ml}/interactive-annotating", json={"task": task, "context": context})
    assert "errors" not in reply, reply
    (region,) = reply["data"]["result"]
    assert region["type"] == "brushlabels" and region["value"]["brushlabels"] == ["Cat"]
    mask = decode_rle(region["value"]["rle"]).reshape(80, 120, 4)
    assert mask.shape == (80, 120, 4) and np.isin(mask, (0, 255)).all()
    metrics = requests.get(f"{url}/metrics", timeout=5).text
    assert 'labelloop_sam_embeddings_total{source="computed"} 1.0' in metrics
    assert 'labelloop_sam_embeddings_total{source="memory"} 1.0' in metrics, "the click used the prefetched embedding"
