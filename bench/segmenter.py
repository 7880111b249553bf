"""Segmenter benchmark -> bench/results/segmenter.json, per engine x runtime, one run, one photo.

For each of SAM vit_b, MobileSAM (PyTorch and ONNX Runtime) and SAM 2.1 tiny, through a real
server process (gunicorn, 1 worker, HTTP), p50/p95 of interactive /predict:
- new_image: the image was never seen, the encoder runs inside the click (goal for the default CPU
  engine: <= 0.8 s p50);
- warm: another click on the same image, as a ratio to the bare ``engine.decode`` on a ready
  embedding in this process (goal <= 1.1x);
- regions_100: a warm click whose task carries 100 brush regions the labeler already drew (Label
  Studio sends the whole task, drafts included: label-studio #7029), as a ratio to a warm click
  with none (goal <= 1.1x);
- prefetched (MobileSAM ONNX, the CPU default): the embedding made by a TASKS_CREATED job first.
Also the encoder alone, one embedding's memory, and for ONNX the IoU of its masks with its own
PyTorch run on the same prompts. Random weights (SAM_ALLOW_RANDOM): compute does not depend on
the weights' values, so the latency is the real one.

    .venv/bin/python bench/segmenter.py [--cold 5] [--warm 30] [--pairs mobile_sam:onnx,sam:torch]
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from backends.segmenter.build import get_engine  # noqa: E402
from backends.segmenter.engine import Prompt  # noqa: E402
from backends.stack.processes import backend_process, free_port  # noqa: E402
from bench.image_server import serve  # noqa: E402
from bench.machine import device_name  # noqa: E402
from bench.timing import timed  # noqa: E402

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


PAIRS = ("sam:torch", "mobile_sam:torch", "mobile_sam:onnx", "sam2:torch")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cold", type=int, default=5)
    parser.add_argument("--warm", type=int, default=30)
    parser.add_argument("--pairs", default=",".join(PAIRS))
    parser.add_argument("--bare", help=argparse.SUPPRESS)  # internal: one pair's in-process part, in a child
    parser.add_argument("--work", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.bare:
        engine_name, runtime = args.bare.split(":")
        print(json.dumps(in_process(engine_name, runtime, Path(args.work), args.warm)))
        return
    work = Path(tempfile.mkdtemp(prefix="bench-segmenter-"))
    global BASE_URL
    BASE_URL = serve_photos()
    results: dict[str, Any] = {"image": "451x300", "machine": device_name("cpu"), "pairs": {}}
    for n, pair in enumerate(args.pairs.split(",")):
        results["pairs"][pair] = one_pair(pair, work, args, seed=1000 * (n + 1))
        print(json.dumps({pair: results["pairs"][pair]}, indent=2), flush=True)
    blob = np.zeros((300, 451), dtype=bool)
    blob[80:220, 120:330] = True  # a compact object, as trained SAM returns
    results["brush_rle_ms"] = {"compact_blob_mask": rle_ms(blob), "compact_blob_mask_sdk": rle_ms(blob, sdk=True)}
    results["note"] = ("new_image: encoder + decoder inside the click; warm: ratio to the bare decoder measured in "
                       "a fresh process of its own (as the server's); regions_100: ratio to a warm click without "
                       "regions, same server, interleaved; server: gunicorn, 1 worker; random weights")
    out = ROOT / "bench" / "results" / "segmenter.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(f"wrote {out}")


def in_process(engine_name: str, runtime: str, work: Path, warm: int) -> dict[str, Any]:
    """The encoder alone, the bare decoder and one embedding's memory, in a process that has built
    only this engine (earlier engines' thread pools and settings would colour the figures)."""
    from PIL import Image

    image = np.asarray(Image.open(io.BytesIO(photo_bytes(0))).convert("RGB"))
    engine = get_engine(engine_name, None, runtime, None, True, "cpu", work / "onnx")
    started = time.perf_counter()
    embedding = engine.embed(image)
    encoder_s = time.perf_counter() - started
    prompt = Prompt([(image.shape[1] * 0.4, image.shape[0] * 0.5)], [1], None)
    decoder = timed(lambda: engine.decode(embedding, prompt), warm)
    mask, _ = engine.decode(embedding, prompt)
    row: dict[str, Any] = {"engine": engine.name, "encoder_s": round(encoder_s, 3), "bare_decoder": stats(decoder),
                           "embedding_mib": round(embedding.nbytes / 2**20, 2),
                           # what the server adds per click grows with the mask's runs: random weights'
                           # masks are speckled, trained SAM's compact (brush_rle_ms.compact_blob_mask)
                           "mask_runs": int(np.count_nonzero(np.diff(mask.ravel()))), "mask_rle_ms": rle_ms(mask)}
    if runtime == "onnx":
        torch_engine = get_engine(engine_name, None, "torch", None, True, "cpu")
        row["mask_iou_vs_torch"] = agreement(engine, torch_engine, image)
        row["int8_trial"] = int8_trial(engine, torch_engine, image, work)
    return row


def int8_trial(engine: Any, torch_engine: Any, image: np.ndarray, work: Path) -> dict[str, Any]:
    """The encoder quantised to int8 (dynamic, MatMul/Gemm weights): its time and its masks' IoU
    with PyTorch's. Kept in the product only if that IoU stays within MASK_IOU_TOLERANCE."""
    import onnxruntime as ort
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from backends.segmenter.onnx_engine import MASK_IOU_TOLERANCE

    prepared, quantised = work / "encoder.pre.onnx", work / "encoder.int8.onnx"
    quant_pre_process(str(engine.folder / "encoder.onnx"), str(prepared), skip_symbolic_shape=True)
    quantize_dynamic(str(prepared), str(quantised), weight_type=QuantType.QUInt8, op_types_to_quantize=["MatMul", "Gemm"])
    fp32 = min(timed(lambda: engine.embed(image), 3))
    engine.encoder = ort.InferenceSession(str(quantised), providers=["CPUExecutionProvider"])
    int8 = min(timed(lambda: engine.embed(image), 3))
    iou = agreement(engine, torch_engine, image)
    return {"fp32_encoder_s": round(fp32, 3), "int8_encoder_s": round(int8, 3), "int8_mask_iou_vs_torch": iou,
            "tolerance": MASK_IOU_TOLERANCE, "kept": iou >= MASK_IOU_TOLERANCE}


def one_pair(pair: str, work: Path, args: Any, seed: int) -> dict[str, Any]:
    """The pair's in-process figures (in a child), then the same engine in a server."""
    engine_name, runtime = pair.split(":")
    child = subprocess.run([sys.executable, __file__, "--bare", pair, "--work", str(work), "--warm", str(args.warm)],
                           capture_output=True, text=True, check=True)
    row: dict[str, Any] = json.loads(child.stdout.strip().splitlines()[-1])
    env = {"DATA_DIR": str(work / row["engine"]), "SAM_ALLOW_RANDOM": "1", "SAM_DISK_CACHE_MB": "0",
           "SAM_ENGINE": engine_name, "SAM_RUNTIME": runtime, "SAM_ONNX_DIR": str(work / "onnx"),
           "LOG_LEVEL": "WARNING", "TRAIN_DEBOUNCE_S": "0", "ALLOWED_MEDIA_HOSTS": "127.0.0.1", "WORKERS": "1"}
    proc = backend_process("backends.segmenter", port := free_port(), env, work / f"{row['engine']}.log").start(timeout=300)
    try:
        row.update(through_server(f"http://127.0.0.1:{port}", args, seed, prefetch=pair == "mobile_sam:onnx"))
    finally:
        proc.stop()
    row["warm"]["ratio_p50_to_decoder"] = row["warm"]["p50_ms"] / row["bare_decoder"]["p50_ms"]
    row["regions_100"]["ratio_p50_to_warm"] = row["regions_100"]["p50_ms"] / row["warm"]["p50_ms"]
    return row


def through_server(url: str, args: Any, seed: int, prefetch: bool) -> dict[str, Any]:
    session = requests.Session()

    def click(body: dict[str, Any]) -> float:
        t0 = time.perf_counter()
        session.post(f"{url}/predict", json=body, timeout=600).raise_for_status()
        return time.perf_counter() - t0

    click(click_body(photo(seed - 1)))  # the server's first request pays its imports, not a measurement
    new_image = [click(click_body(photo(seed + i))) for i in range(args.cold)]
    warm_image = photo(seed)
    crowded = with_regions(click_body(warm_image), 100)
    click(click_body(warm_image))
    warm, regions, polygon = [], [], []
    before = decoder_seconds(session, url)
    for _ in range(args.warm):  # interleaved: drift on a noisy machine hits all alike
        warm.append(click(click_body(warm_image)))
        regions.append(click(crowded))
        polygon.append(click(click_body(warm_image, "polygon")))
    total, count = (a - b for a, b in zip(decoder_seconds(session, url), before))
    decoder = total / count  # every click above decodes the same prompt on the same embedding
    out = {"new_image": stats(new_image), "warm": stats(warm), "regions_100": stats(regions),
           "warm_polygon": stats(polygon), "regions_100_body_kib": round(len(json.dumps(crowded)) / 1024, 1),
           # the same clicks' decoder time inside the server (labelloop_sam_decode_seconds): what the
           # server adds per click, free of the noise between two processes; a polygon answer is a
           # few hundred numbers whatever the mask, a brush one grows with the mask's runs
           "server_decoder_mean_ms": 1000 * decoder,
           "warm_mean_over_server_decoder": statistics.mean(warm) / decoder,
           "warm_polygon_mean_over_server_decoder": statistics.mean(polygon) / decoder}
    if prefetch:
        out["prefetched"] = stats(prefetched_clicks(session, url, click, args, seed + 500))
    return out


def decoder_seconds(session: requests.Session, url: str) -> tuple[float, float]:
    """(sum, count) of the server's ``labelloop_sam_decode_seconds`` histogram."""
    from prometheus_client.parser import text_string_to_metric_families

    found = {"sum": 0.0, "count": 0.0}
    for family in text_string_to_metric_families(session.get(f"{url}/metrics").text):
        if family.name == "labelloop_sam_decode_seconds":
            for sample in family.samples:
                kind = sample.name.rsplit("_", 1)[-1]
                if kind in found:
                    found[kind] += sample.value
    return found["sum"], found["count"]


def prefetched_clicks(session: requests.Session, url: str, click: Any, args: Any, seed: int) -> list[float]:
    times = []
    for i in range(args.cold):
        image_uri = photo(seed + i)
        webhook = {"action": "TASKS_CREATED", "project": {"id": 1, "label_config": CONFIG},
                   "tasks": [{"id": 50 + i, "data": {"image": image_uri}}]}
        session.post(f"{url}/setup", json={"project": "1.1", "schema": CONFIG}).raise_for_status()
        job = session.post(f"{url}/webhook", json=webhook).json()["job"]
        while session.get(f"{url}/jobs/{job}").json()["state"] != "done":
            time.sleep(0.2)
        times.append(click(click_body(image_uri)))
    return times


def with_regions(body: dict[str, Any], n: int) -> dict[str, Any]:
    """``body`` whose task carries ``n`` brush regions in its draft, as Label Studio sends a task
    the labeler has already masked ``n`` objects on (each a compact blob, RLE as the editor makes)."""
    from backends.core.rle import mask2rle

    height, width = 300, 451
    regions = []
    for i in range(n):
        mask = np.zeros((height, width), dtype=np.uint8)
        y, x = 10 + (i // 10) * 28, 10 + (i % 10) * 43
        mask[y:y + 20, x:x + 35] = 255
        regions.append({"id": f"r{i}", "type": "brushlabels", "from_name": "out", "to_name": "image",
                        "original_width": width, "original_height": height,
                        "value": {"format": "rle", "rle": mask2rle(mask), "brushlabels": ["Cat"]}})
    task = {**body["tasks"][0], "drafts": [{"id": 1, "result": regions, "lead_time": 30.0}],
            "annotations": [], "predictions": []}
    return {**body, "tasks": [task]}


def agreement(onnx: Any, torch_engine: Any, image: np.ndarray) -> float:
    """The lowest IoU between the two runtimes' masks over a few prompts on ``image``."""
    h, w = image.shape[:2]
    a, b = onnx.embed(image), torch_engine.embed(image)
    worst = 1.0
    for prompt in (Prompt([(w * 0.4, h * 0.5)], [1], None), Prompt([(w * 0.4, h * 0.5), (w * 0.1, h * 0.1)], [1, 0], None),
                   Prompt([], [], (w * 0.2, h * 0.2, w * 0.7, h * 0.8))):
        x, y = onnx.decode(a, prompt)[0], torch_engine.decode(b, prompt)[0]
        union = np.logical_or(x, y).sum()
        worst = min(worst, float(np.logical_and(x, y).sum() / union) if union else 1.0)
    return round(worst, 4)


if __name__ == "__main__":
    main()
