"""backends/core/caches.py: library caches default under DATA_DIR, an operator's own values win."""

from __future__ import annotations

import os
from pathlib import Path

from backends.core.caches import CACHE_VARIABLES, keep_caches_under


def test_unset_cache_variables_point_under_data_dir_and_set_ones_are_kept(tmp_path, monkeypatch):
    for name in CACHE_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TORCH_HOME", "/opt/torch-cache")
    monkeypatch.chdir(tmp_path)
    values = keep_caches_under(Path("data"))  # a relative DATA_DIR, as the default .data is
    assert values["TORCH_HOME"] == "/opt/torch-cache"
    assert values["YOLO_CONFIG_DIR"] == str(tmp_path / "data" / "ultralytics")  # absolute: immune to a chdir
    assert all(os.environ[name] == value for name, value in values.items())
    assert set(values) == set(CACHE_VARIABLES) >= {"YOLO_CONFIG_DIR", "MPLCONFIGDIR", "TORCH_HOME", "XDG_CACHE_HOME"}
