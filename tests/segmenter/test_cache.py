import threading
import time

import torch

from backends.segmenter.cache import EmbeddingCache
from backends.segmenter.engine import Embedding

MIB = 1024 * 1024


def fake(mib=1):
    return Embedding(torch.zeros(mib * MIB // 4), (10, 10), (1024, 1024))


def test_eviction_respects_the_memory_budget():
    cache = EmbeddingCache(memory_bytes=3 * MIB)
    for key in "abcd":
        cache.get_or_compute(key, fake)
    assert cache.used_bytes <= 3 * MIB and len(cache) == 3 and "a" not in cache and cache.evictions == 1
    cache.get_or_compute("b", fake)  # b becomes most recent
    cache.get_or_compute("e", fake)
    assert "b" in cache and "c" not in cache


def test_concurrent_requests_compute_once():
    cache = EmbeddingCache(memory_bytes=10 * MIB)
    calls, sources = [], []

    def slow():
        calls.append(1)
        time.sleep(0.3)
        return fake()

    threads = [threading.Thread(target=lambda: sources.append(cache.get_or_compute("k", slow)[1])) for _ in range(4)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert len(calls) == 1 and sorted(sources) == ["computed", "waited", "waited", "waited"]


def test_disk_tier_survives_a_new_process_cache(tmp_path):
    first = EmbeddingCache(memory_bytes=10 * MIB, disk_dir=tmp_path, disk_bytes=10 * MIB)
    first.get_or_compute("k", fake)
    second = EmbeddingCache(memory_bytes=10 * MIB, disk_dir=tmp_path, disk_bytes=10 * MIB)
    embedding, source = second.get_or_compute("k", lambda: (_ for _ in ()).throw(AssertionError("recomputed")))
    assert source == "disk" and embedding.original_size == (10, 10)


def test_other_weights_empty_the_disk_tier_and_the_same_weights_keep_it(tmp_path):
    official = EmbeddingCache(memory_bytes=10 * MIB, disk_dir=tmp_path, disk_bytes=10 * MIB, weights="sam_vit_b.pth:1")
    official.get_or_compute("k", fake)
    again = EmbeddingCache(memory_bytes=10 * MIB, disk_dir=tmp_path, disk_bytes=10 * MIB, weights="sam_vit_b.pth:1")
    assert again.get_or_compute("k", lambda: (_ for _ in ()).throw(AssertionError("recomputed")))[1] == "disk"
    tuned = EmbeddingCache(memory_bytes=10 * MIB, disk_dir=tmp_path, disk_bytes=10 * MIB, weights="tuned.pth:2")
    assert tuned.get_or_compute("k", fake)[1] == "computed"  # not the official encoder's embedding


def test_embeddings_read_from_disk_land_on_the_decoders_device(tmp_path, monkeypatch):
    EmbeddingCache(memory_bytes=10 * MIB, disk_dir=tmp_path, disk_bytes=10 * MIB).get_or_compute("k", fake)
    seen = []
    real_load = torch.load
    monkeypatch.setattr(torch, "load", lambda *a, **kw: seen.append(kw["map_location"]) or real_load(*a, **{
        **kw, "map_location": "cpu"}))  # no GPU here: check what is asked for
    cache = EmbeddingCache(memory_bytes=10 * MIB, disk_dir=tmp_path, disk_bytes=10 * MIB, device="cuda")
    assert cache.get_or_compute("k", fake)[1] == "disk" and seen == ["cuda"]


def test_sam2s_levels_go_to_disk_and_come_back_whole(tmp_path):
    levels = {"image_embed": torch.ones(1, 256, 4, 4),
              "high_res_feats": [torch.full((1, 32, 16, 16), 2.0), torch.full((1, 64, 8, 8), 3.0)]}
    made = Embedding(levels, (10, 10), (10, 10))
    EmbeddingCache(memory_bytes=10 * MIB, disk_dir=tmp_path, disk_bytes=10 * MIB).get_or_compute("k", lambda: made)
    read, source = EmbeddingCache(memory_bytes=10 * MIB, disk_dir=tmp_path, disk_bytes=10 * MIB).get_or_compute(
        "k", lambda: (_ for _ in ()).throw(AssertionError("recomputed")))
    assert source == "disk" and read.nbytes == made.nbytes
    assert [float(t.mean()) for t in read.features["high_res_feats"]] == [2.0, 3.0]


def test_a_corrupt_cache_file_is_recomputed_and_rewritten(tmp_path):
    EmbeddingCache(memory_bytes=10 * MIB, disk_dir=tmp_path, disk_bytes=10 * MIB).get_or_compute("k", fake)
    (tmp_path / "k.pt").write_bytes(b"torn")
    cache = EmbeddingCache(memory_bytes=10 * MIB, disk_dir=tmp_path, disk_bytes=10 * MIB)
    assert cache.get_or_compute("k", fake)[1] == "computed"
    assert EmbeddingCache(memory_bytes=10 * MIB, disk_dir=tmp_path, disk_bytes=10 * MIB).get_or_compute("k", fake)[1] == "disk"
