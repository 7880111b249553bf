"""Segmenter benchmark -> bench/results/segmenter.json.

Click-to-mask latency of interactive /predict through a real server process (HTTP), p50/p95:
- cold: the image was never seen, the encoder runs inside the click;
- warm: a second click on the same image (embedding in memory);
- prefetched: the image's embedding was computed by a TASKS_CREATED prefetch job before the click.
Each as a ratio to the bare ``engine.decode`` call on a ready embedding, measured in the same run
(goal: warm and prefetched <= 1.3x). Also the memory of one cached embedding.

SAM vit_b with random weights (SAM_ALLOW_RANDOM): the compute does not depend on the weights'
values, so the latency is the real one.

    .venv/bin/python bench/segmenter.py [--cold 3] [--warm 30]
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from backends.segmenter.engine import Prompt, get_engine  # noqa: E402
from backends.stack.processes import backend_process, free_port  # noqa: E402
from bench.image_server import serve  # noqa: E402

OUTPUTS = {
    "brush": '<BrushLabels name="out" toName="image"><Label value="Cat"/></BrushLabels>',
    "polygon": '<PolygonLabels name="out" toName="image"><Label value="Cat"/></PolygonLabels>',
}
CONFIG = ('<View><Image name="image" value="$image"/>' + OUTPUTS["brush"] +
          '<KeyPointLabels name="kp" toName="image" smart="true"><Label value="Cat"/></KeyPointLabels></View>')


def config_for(output: str) -> str:
    return CONFIG.replace(OUTPUTS["brush"], OUTPUTS[output])


PHOTOS: dict[str, bytes] = {}


def photo_bytes(seed: int) -> bytes:
    from PIL import Image
    from skimage import data

    base = np.asarray(data.chelsea())
    rng = np.random.default_rng(seed)
    noisy = np.clip(base.astype(int) + rng.integers(-3, 4, base.shape), 0, 255).astype(np.uint8)  # distinct content hash
    buf = io.BytesIO()
    Image.fromarray(noisy).save(buf, format="PNG")
    return buf.getvalue()


def photo(seed: int) -> str:
    """A photo URL on a local HTTP server, as Label Studio serves /data/upload files."""
    PHOTOS[f"/p{seed}.png"] = photo_bytes(seed)
    return f"{BASE_URL}/p{seed}.png"


def serve_photos() -> str:
    return serve(PHOTOS.get, "image/png")[0]


BASE_URL = ""


def stats(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {"n": len(ordered), "p50_ms": 1000 * statistics.median(ordered),
            "p95_ms": 1000 * ordered[min(len(ordered) - 1, int(round(0.95 * (len(ordered) - 1))))]}


def click_body(image: str, output: str = "brush", x: float = 40, y: float = 50) -> dict[str, Any]:
    context = {"result": [{"type": "keypointlabels", "from_name": "kp", "to_name": "image", "is_positive": True,
                           "value": {"x": x, "y": y, "keypointlabels": ["Cat"]}}]}
    return {"tasks": [{"id": 1, "data": {"image": image}}], "label_config": config_for(output), "project": "1.1",
            "params": {"context": context}}


def rle_ms(mask: np.ndarray, n: int = 5, sdk: bool = False) -> float:
    """Median ms to RLE-encode ``mask`` with the backend's encoder (or the SDK's, for comparison)."""
    if sdk:
        from label_studio_sdk.converter.brush import mask2rle
    else:
        from backends.core.rle import mask2rle

    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        mask2rle(mask.astype(np.uint8) * 255)
        times.append(time.perf_counter() - t0)
    return 1000 * statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cold", type=int, default=3)
    parser.add_argument("--warm", type=int, default=30)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-segmenter-"))
    global BASE_URL
    BASE_URL = serve_photos()

    # Baseline: the bare decoder on a ready embedding, in this process.
    engine = get_engine("vit_b", None, True, "auto")
    from PIL import Image

    image = np.asarray(Image.open(io.BytesIO(photo_bytes(0))).convert("RGB"))
    started = time.perf_counter()
    embedding = engine.embed(image)
    encoder_s = time.perf_counter() - started
    prompt = Prompt([(image.shape[1] * 0.4, image.shape[0] * 0.5)], [1], None)
    engine.decode(embedding, prompt)
    decoder = []
    for _ in range(args.warm):
        t0 = time.perf_counter()
        engine.decode(embedding, prompt)
        decoder.append(time.perf_counter() - t0)

    port = free_port()
    env = {"DATA_DIR": str(work), "SAM_ALLOW_RANDOM": "1", "SAM_DISK_CACHE_MB": "0", "LOG_LEVEL": "WARNING",
           "TRAIN_DEBOUNCE_S": "0", "ALLOWED_MEDIA_HOSTS": "127.0.0.1", "WORKERS": "1"}  # gunicorn, as deployed
    proc = backend_process("backends.segmenter", port, env, work / "segmenter.log").start(timeout=120)
    url = f"http://127.0.0.1:{port}"
    session = requests.Session()

    def click(image_uri: str, output: str = "brush") -> float:
        t0 = time.perf_counter()
        session.post(f"{url}/predict", json=click_body(image_uri, output), timeout=600).raise_for_status()
        return time.perf_counter() - t0

    try:
        cold = [click(photo(100 + i)) for i in range(args.cold)]
        warm_image = photo(100)
        warm = [click(warm_image) for _ in range(args.warm)]
        warm_polygon = [click(warm_image, "polygon") for _ in range(args.warm)]
        prefetched, prefetched_polygon = [], []
        for i in range(args.cold):
            image_uri = photo(200 + i)
            webhook = {"action": "TASKS_CREATED", "project": {"id": 1, "label_config": CONFIG},
                       "tasks": [{"id": 50 + i, "data": {"image": image_uri}}]}
            session.post(f"{url}/setup", json={"project": "1.1", "schema": CONFIG}).raise_for_status()
            job = session.post(f"{url}/webhook", json=webhook).json()["job"]
            while session.get(f"{url}/jobs/{job}").json()["state"] != "done":
                time.sleep(0.2)
            prefetched.extend(click(image_uri) for _ in range(max(1, args.warm // args.cold)))
            prefetched_polygon.extend(click(image_uri, "polygon") for _ in range(max(1, args.warm // args.cold)))
    finally:
        proc.stop()

    base = stats(decoder)
    mask, _ = engine.decode(embedding, prompt)
    blob = np.zeros_like(mask)
    blob[80:220, 120:330] = True  # a compact object, as trained SAM returns
    results = {
        "engine": engine.name, "device": engine.device, "encoder_seconds": round(encoder_s, 2),
        "bare_decoder": base, "cold": stats(cold), "warm": stats(warm), "warm_polygon": stats(warm_polygon),
        "prefetched": stats(prefetched), "prefetched_polygon": stats(prefetched_polygon), "embedding_mib": embedding.nbytes / 2**20,
        "image": f"{image.shape[1]}x{image.shape[0]}",
        "brush_rle_ms": {"random_weight_mask": rle_ms(mask), "random_weight_mask_sdk": rle_ms(mask, sdk=True),
                         "mask_runs": int(np.count_nonzero(np.diff(mask.ravel()))),
                         "compact_blob_mask": rle_ms(blob), "compact_blob_mask_sdk": rle_ms(blob, sdk=True)},
        "note": "cold/warm/prefetched return BrushLabels, *_polygon PolygonLabels; server: gunicorn, 1 worker. "
                "Brush RLE: backends.core.rle.py, byte-identical to label-studio-sdk's pure-Python encoder "
                "(*_sdk), which is linear in the mask's runs: random-weight SAM returns speckled masks (see "
                "mask_runs), trained SAM compact ones (compact_blob_mask)",
    }
    for case in ("cold", "warm", "warm_polygon", "prefetched", "prefetched_polygon"):
        results[case]["ratio_p50_to_decoder"] = results[case]["p50_ms"] / base["p50_ms"]
    out = ROOT / "bench" / "results" / "segmenter.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
