"""Which weights specs are downloaded, and where they land (backends/core/downloads.py); the
download itself, from a read-only working directory, is in test_writes_stay_in_data_dirs.py."""

from __future__ import annotations

import pytest

from backends.core.downloads import download_target, local_weights, needs_download, shown
from backends.core.errors import LabelConfigError


def test_release_names_and_urls_are_downloaded_files_and_yamls_are_not(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert needs_download("yolo11n.pt") and needs_download("HTTPS://example.com/w/best.pt")
    assert not needs_download("yolo11n.yaml")  # an architecture: random weights, built offline
    assert needs_download("mobile_sam.pt") and needs_download("sam2.1_t.pt") and needs_download("sam_b.pt")
    assert not needs_download("sam_vit_b_01ec64.pth")  # segment-anything's file is no ultralytics asset
    assert not needs_download(str(tmp_path / "mine.pt")) and not needs_download("models/yolo11n.pt")
    (tmp_path / "yolo11n.pt").write_bytes(b"x")
    assert not needs_download("yolo11n.pt")  # a file of that name here wins, as in ultralytics


def test_downloads_land_in_the_model_store_one_folder_per_url(tmp_path):
    store = tmp_path / "downloads"
    assert download_target("yolo11n.pt", store) == store / "yolo11n.pt"
    a = download_target("https://a.example/x/best.pt?sig=1", store)
    b = download_target("https://b.example/y/best.pt", store)
    assert a.name == b.name == "best.pt" and a.parent != b.parent and a.parent.parent == store
    with pytest.raises(LabelConfigError, match="does not name a .pt"):
        download_target("https://a.example/model.onnx", store)


def test_a_file_already_downloaded_is_not_fetched_again(tmp_path):
    target = download_target("https://a.example/best.pt", tmp_path)
    target.parent.mkdir(parents=True)
    target.write_bytes(b"weights")
    assert local_weights("https://a.example/best.pt", tmp_path) == str(target)
    assert local_weights("yolo11n.yaml", tmp_path) == "yolo11n.yaml"


def test_a_failed_download_names_the_url_without_its_secrets(tmp_path):
    with pytest.raises(LabelConfigError) as refused:
        local_weights("http://user:pw@127.0.0.1:9/best.pt?X-Amz-Signature=SECRET", tmp_path)
    assert "could not be downloaded" in str(refused.value) and "127.0.0.1:9/best.pt" in str(refused.value)
    assert "SECRET" not in str(refused.value) and "pw@" not in str(refused.value)
    assert shown("yolo11n.pt") == "yolo11n.pt"
