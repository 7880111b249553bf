"""Image embeddings by image content hash: in memory (LRU within a byte budget), optionally on disk,
and computed at most once at a time per image.

A click whose embedding is being computed (by a prefetch or another click) waits for that
computation instead of starting a second one. The disk tier lets gunicorn workers and RQ workers
share embeddings: a prefetch job run elsewhere still saves the labeler's wait.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from .engine import Embedding

log = logging.getLogger(__name__)


IDENTITY_FILE = "weights.id"


class EmbeddingCache:
    """``weights`` names the encoder weights the embeddings come from: a disk tier written under
    other weights (a fine-tuned checkpoint in place of the official one) is emptied, since its
    embeddings would be decoded by a mask decoder they do not belong to. ``device`` is where
    embeddings read from disk go: the decoder's device."""

    def __init__(self, memory_bytes: int, disk_dir: Path | None = None, disk_bytes: int = 0,
                 weights: str = "", device: str = "cpu") -> None:
        self.memory_bytes = memory_bytes
        self.disk_dir = Path(disk_dir) if disk_dir and disk_bytes > 0 else None
        self.disk_bytes = disk_bytes
        self.device = device
        if self.disk_dir:
            self.disk_dir.mkdir(parents=True, exist_ok=True)
            self._claim_disk(weights)
        self._items: OrderedDict[str, Embedding] = OrderedDict()
        self._used = 0
        self._inflight: dict[str, Future[Embedding]] = {}
        self._lock = threading.Lock()
        self._encoder_lock = threading.Lock()  # the encoder uses every core: one at a time
        self.hits = self.misses = self.disk_hits = self.evictions = 0

    # -- lookups --------------------------------------------------------------------------------
    def peek(self, key: str) -> Embedding | None:
        with self._lock:
            found = self._items.get(key)
            if found is not None:
                self._items.move_to_end(key)
            return found

    def __contains__(self, key: str) -> bool:
        with self._lock:
            return key in self._items

    @property
    def used_bytes(self) -> int:
        return self._used

    def __len__(self) -> int:
        return len(self._items)

    def get_or_compute(self, key: str, compute: Callable[[], Embedding]) -> tuple[Embedding, str]:
        """The embedding for ``key`` and where it came from: memory, disk, waited, computed."""
        with self._lock:
            found = self._items.get(key)
            if found is not None:
                self._items.move_to_end(key)
                self.hits += 1
                return found, "memory"
            future = self._inflight.get(key)
            owner = future is None
            if future is None:  # the same test as owner, spelled so the type checker narrows future
                future = self._inflight[key] = Future()
        if not owner:
            return future.result(), "waited"
        try:
            embedding, source = self._load_disk(key), "disk"
            if embedding is None:
                with self._encoder_lock:
                    started = time.perf_counter()
                    embedding, source = compute(), "computed"
                log.info("embedding %s computed in %.1f s", key[:12], time.perf_counter() - started)
                self.misses += 1
                self._save_disk(key, embedding)
            else:
                self.disk_hits += 1
            self._put(key, embedding)
            future.set_result(embedding)
            return embedding, source
        except BaseException as exc:
            future.set_exception(exc)
            raise
        finally:
            with self._lock:
                self._inflight.pop(key, None)

    # -- memory ---------------------------------------------------------------------------------
    def _put(self, key: str, embedding: Embedding) -> None:
        size = embedding.nbytes
        with self._lock:
            if size > self.memory_bytes:
                return
            if key in self._items:
                self._used -= self._items.pop(key).nbytes
            self._items[key] = embedding
            self._used += size
            while self._used > self.memory_bytes:
                _, evicted = self._items.popitem(last=False)
                self._used -= evicted.nbytes
                self.evictions += 1

    # -- disk -----------------------------------------------------------------------------------
    def _path(self, key: str) -> Path:
        assert self.disk_dir is not None
        return self.disk_dir / f"{key}.pt"

    def _load_disk(self, key: str) -> Embedding | None:
        if not self.disk_dir:
            return None
        path = self._path(key)
        if not path.exists():
            return None
        import torch

        try:
            data = torch.load(path, map_location=self.device, weights_only=True)
            os.utime(path)
            return Embedding(data["features"], tuple(data["original_size"]), tuple(data["input_size"]))
        except Exception as exc:  # a torn or foreign file: recompute
            log.warning("ignoring unreadable cached embedding %s: %s", path.name, exc)
            return None

    def _save_disk(self, key: str, embedding: Embedding) -> None:
        if not self.disk_dir:
            return
        import torch

        path = self._path(key)
        tmp = path.with_suffix(f".{os.getpid()}.{threading.get_ident()}.tmp")
        try:
            torch.save({"features": to_cpu(embedding.features), "original_size": list(embedding.original_size),
                        "input_size": list(embedding.input_size)}, tmp)
            os.replace(tmp, path)
            self._trim_disk()
        except OSError as exc:  # a full disk costs a recomputation later, nothing else
            log.warning("could not cache embedding on disk: %s", exc)
            tmp.unlink(missing_ok=True)

    def _claim_disk(self, weights: str) -> None:
        marker = self.disk_dir / IDENTITY_FILE  # type: ignore[operator]
        if marker.is_file() and marker.read_text() == weights:
            return
        stale = list(self.disk_dir.glob("*.pt"))  # type: ignore[union-attr]
        if stale:
            log.info("emptying the embedding cache %s: %d embeddings of other weights", self.disk_dir, len(stale))
        for f in stale:
            f.unlink(missing_ok=True)
        marker.write_text(weights)

    def _trim_disk(self) -> None:
        assert self.disk_dir is not None
        files = sorted(self.disk_dir.glob("*.pt"), key=lambda f: f.stat().st_mtime)
        total = sum(f.stat().st_size for f in files)
        for f in files:
            if total <= self.disk_bytes:
                break
            total -= f.stat().st_size
            f.unlink(missing_ok=True)


def to_cpu(features: Any) -> Any:
    """A tensor, or a dict / list of them (SAM 2's levels), on the CPU: what a file can hold."""
    if isinstance(features, dict):
        return {k: to_cpu(v) for k, v in features.items()}
    if isinstance(features, (list, tuple)):
        return [to_cpu(v) for v in features]
    return features.cpu()
