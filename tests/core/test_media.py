import base64
import http.server
import struct
import threading
import zlib

import pytest

from backends.core.errors import MediaError
from backends.core.labelstudio import LabelStudioClient
from backends.core.media import MediaLoader, address_refusal
from tests.conftest import png_bytes


class _Handler(http.server.BaseHTTPRequestHandler):
    routes: dict = {}

    def do_GET(self):
        route = self.routes.get(self.path, (404, {}, b"nope"))
        if callable(route):  # a misbehaving server: the route writes the response itself
            return route(self)
        status, headers, body = route
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def web():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}", _Handler.routes
    server.shutdown()


def trickling(chunks: int):
    """A route that answers 10 bytes every 0.1 s: each read is quick, the whole download is not."""
    import time

    def route(handler):
        handler.send_response(200)
        handler.end_headers()
        for _ in range(chunks):
            handler.wfile.write(b"x" * 10)
            handler.wfile.flush()
            time.sleep(0.1)

    return route


def loader(tmp_path, **kw):
    return MediaLoader(LabelStudioClient("http://127.0.0.1:9", None), cache_dir=tmp_path / "cache", **kw)


@pytest.mark.parametrize("url,fragment", [
    ("http://169.254.169.254/latest/meta-data/", "link-local"),
    ("http://127.0.0.1:8080/x.png", "loopback"),
    ("http://localhost/x.png", "loopback"),
    ("http://[::1]/x.png", "loopback"),
    ("http://[::ffff:127.0.0.1]/x.png", "loopback"),
    ("http://2130706433/x.png", "loopback"),
    ("http://0x7f000001/x.png", "loopback"),
    ("http://10.1.2.3/x.png", "private"),
    ("http://192.168.0.1/x.png", "private"),
    ("http://0.0.0.0/x.png", "unspecified"),
    ("http://0/x.png", "unspecified"),
    ("http://[::]/x.png", "unspecified"),
    ("http://0177.0.0.1/x.png", "loopback"),  # octal
    ("http://017700000001/x.png", "loopback"),  # octal, one number
    ("http://127.1/x.png", "loopback"),  # short form
    ("http://[fe80::1]/x.png", "link-local"),
    ("http://[fc00::1]/x.png", "private"),  # IPv6 unique local
    ("http://[0:0:0:0:0:ffff:a9fe:a9fe]/x.png", "link-local"),  # 169.254.169.254 mapped into IPv6
    ("http://[64:ff9b::7f00:1]/x.png", "reserved"),  # NAT64 of 127.0.0.1
    ("http://100.64.0.1/x.png", "non-public"),  # carrier-grade NAT
    ("http://224.0.0.1/x.png", "multicast"),
])
def test_private_addresses_are_refused(tmp_path, url, fragment):
    with pytest.raises(MediaError) as err:
        loader(tmp_path).load_bytes(url)
    assert fragment in err.value.message and "ALLOWED_MEDIA_HOSTS" in err.value.message


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://example.com/a.png", "gopher://x/"])
def test_other_schemes_are_refused(tmp_path, url):
    with pytest.raises(MediaError, match="scheme"):
        loader(tmp_path).load_bytes(url)


@pytest.mark.parametrize("path", ["/data/local-files/?d=../../etc/passwd", "/data/local-files/?d=/etc/passwd",
                                  "/data/local-files/?d=a/..%2F..%2Fsecret", "/data/local-files/"])
def test_local_files_traversal_refused(tmp_path, path):
    with pytest.raises(MediaError):
        loader(tmp_path).load_bytes(path)
    root = tmp_path / "root"
    root.mkdir()
    with pytest.raises(MediaError):
        loader(tmp_path, local_files_root=root).load_bytes(path)


def test_local_files_read_from_the_document_root_without_label_studio(tmp_path):
    root = tmp_path / "files"
    (root / "dataset").mkdir(parents=True)
    (root / "dataset" / "cat 1.png").write_bytes(png_bytes(10, 8))
    (tmp_path / "secret.png").write_bytes(png_bytes(3, 3))
    (root / "escape.png").symlink_to(tmp_path / "secret.png")
    media = loader(tmp_path, local_files_root=root)  # no API key: Label Studio is never asked
    assert media.load_image("/data/local-files/?d=dataset/cat%201.png").image.size == (10, 8)
    with pytest.raises(MediaError, match="outside LOCAL_FILES_DOCUMENT_ROOT") as err:
        media.load_bytes("/data/local-files/?d=escape.png")
    assert err.value.status == 403
    with pytest.raises(MediaError, match="not a file") as err:
        media.load_bytes("/data/local-files/?d=dataset/missing.png")
    assert err.value.status == 404


def test_allow_listed_host_is_fetched_and_cached(tmp_path, web):
    base, routes = web
    routes["/a.png"] = (200, {"Content-Type": "image/png"}, png_bytes(30, 20))
    media = loader(tmp_path, allowed_hosts=["127.0.0.1"])
    img = media.load_image(base + "/a.png")
    assert (img.width, img.height) == (30, 20) and len(img.sha256) == 64
    routes["/a.png"] = (500, {}, b"")
    assert media.load_image(base + "/a.png").width == 30, "second load must come from the disk cache"


def test_redirect_to_private_address_is_refused(tmp_path, web):
    base, routes = web
    routes["/r"] = (302, {"Location": "http://169.254.169.254/latest/meta-data/"}, b"")
    with pytest.raises(MediaError, match="link-local"):
        loader(tmp_path, allowed_hosts=["127.0.0.1"]).load_bytes(base + "/r")


def test_http_errors_and_non_images(tmp_path, web):
    base, routes = web
    routes["/text"] = (200, {}, b"hello, not an image")
    media = loader(tmp_path, allowed_hosts=["127.0.0.1"])
    with pytest.raises(MediaError, match="HTTP 404"):
        media.load_bytes(base + "/missing.png")
    with pytest.raises(MediaError, match="not a readable image"):
        media.load_image(base + "/text")


@pytest.mark.parametrize("status,transient", [(404, False), (500, False), (503, True), (429, True)])
def test_only_answers_that_mean_try_later_are_transient(tmp_path, web, status, transient):
    # Label Studio answers 500 for an upload whose file is gone: a retry does not bring it back
    base, routes = web
    routes["/x.png"] = (status, {}, b"")
    with pytest.raises(MediaError) as err:
        loader(tmp_path, allowed_hosts=["127.0.0.1"]).load_bytes(base + "/x.png")
    assert err.value.transient is transient


def test_size_cap(tmp_path, web):
    base, routes = web
    routes["/big"] = (200, {}, b"x" * 5000)
    with pytest.raises(MediaError, match="MEDIA_MAX_BYTES"):
        loader(tmp_path, allowed_hosts=["127.0.0.1"], max_bytes=1000).load_bytes(base + "/big")


def bomb_png(width: int, height: int) -> bytes:
    """A PNG whose header announces width x height pixels, with a tiny (invalid) body."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 10)) + chunk(b"IEND", b"")


def test_gigapixel_header_refused_before_decoding(tmp_path):
    uri = "data:image/png;base64," + base64.b64encode(bomb_png(32768, 32768)).decode()
    with pytest.raises(MediaError, match="decompression-bomb"):
        loader(tmp_path).load_image(uri)


def test_data_uri(tmp_path):
    uri = "data:image/png;base64," + base64.b64encode(png_bytes(5, 7)).decode()
    assert loader(tmp_path).load_image(uri).height == 7
    with pytest.raises(MediaError, match="base64"):
        loader(tmp_path).load_bytes("data:image/png;base64,@@@")


def test_address_refusal_allows_public_literal():
    assert address_refusal("8.8.8.8", []) is None
    assert address_refusal("169.254.169.254", ["169.254.169.254"]) is None


def test_non_image_bytes_after_ultralytics_patched_pil(tmp_path):
    """ultralytics replaces PIL.Image.open with one that loads a HEIF plugin on unidentified bytes;
    in a detector process garbage must still be a clean MediaError, not an ImportError (a 500)."""
    import ultralytics.utils.patches  # noqa: F401 - applies the patch, as any detector process does

    with pytest.raises(MediaError, match="not a readable image"):
        loader(tmp_path).decode(b"hello, not an image", "x.png")


def test_a_download_broken_or_trickling_mid_body_is_the_tasks_failed_dependency(tmp_path, web):
    import time

    base, routes = web

    def truncated(handler):
        handler.send_response(200)
        handler.send_header("Content-Length", "100000")
        handler.end_headers()
        handler.wfile.write(b"x" * 1000)  # then the connection closes

    routes["/truncated"], routes["/trickle"] = truncated, trickling(40)
    media = loader(tmp_path, allowed_hosts=["127.0.0.1"], timeout_s=0.5)
    with pytest.raises(MediaError, match="failed after") as err:
        media.load_bytes(base + "/truncated")
    assert err.value.status == 424
    started = time.monotonic()
    with pytest.raises(MediaError, match="MEDIA_TIMEOUT_S") as err:
        media.load_bytes(base + "/trickle")  # every read is within 0.5 s; the whole would take 4 s
    assert err.value.status == 424 and time.monotonic() - started < 3


def test_a_personal_access_token_that_cannot_be_refreshed_is_a_424_naming_the_key(tmp_path, monkeypatch):
    class Expired(Exception):
        status_code = 401

    client = LabelStudioClient("http://127.0.0.1:9", "a-personal-access-token")
    monkeypatch.setattr(client, "auth_headers", lambda: (_ for _ in ()).throw(Expired("token is expired")))
    with pytest.raises(MediaError, match="LABEL_STUDIO_API_KEY") as err:
        MediaLoader(client, cache_dir=tmp_path / "cache").load_bytes("/data/upload/1/a.png")
    assert err.value.status == 424 and "HTTP 401" in err.value.message


def test_sixteen_bit_greyscale_is_scaled_not_clipped_to_white(tmp_path):
    import io

    import numpy as np
    from PIL import Image

    ramp = np.tile(np.linspace(0, 65535, 64).astype(np.uint16), (8, 1))
    buffer = io.BytesIO()
    Image.fromarray(ramp).save(buffer, format="PNG")
    uri = "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()
    pixels = np.asarray(loader(tmp_path).load_image(uri).image)
    assert pixels[0, 0, 0] == 0 and pixels[0, -1, 0] == 255 and 100 < pixels.mean() < 155


def test_cache_eviction_survives_files_another_process_removed(tmp_path, monkeypatch):
    from pathlib import Path

    from backends.core.media import _DiskCache

    cache = _DiskCache(tmp_path / "cache", budget=3000)
    real_glob = Path.glob
    monkeypatch.setattr(Path, "glob", lambda self, pattern: [*real_glob(self, pattern), self / "gone.bin"])
    for i in range(5):
        cache.put(f"http://x/{i}", b"x" * 1000)  # evicts; "gone.bin" is listed but no longer there
    assert cache.get("http://x/4") is not None and cache._size <= 3000


TOKEN = "0123456789abcdef0123456789abcdef01234567"  # a legacy token's shape


def png_recording_auth(seen: dict, width: int, height: int):
    """A route serving a PNG that records the Authorization header it was asked with."""
    def route(handler):
        seen["auth"] = handler.headers.get("Authorization")
        body = png_bytes(width, height)
        handler.send_response(200)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)
    return route


def test_media_urls_under_label_studios_public_address_are_fetched_from_label_studio_url(tmp_path, web):
    base, routes = web
    seen = {}
    routes["/data/upload/1/a.png"] = png_recording_auth(seen, 12, 9)
    client = LabelStudioClient(base, TOKEN)
    media = MediaLoader(client, cache_dir=tmp_path / "cache", label_studio_host="http://localhost:8080")
    assert media.load_image("http://localhost:8080/data/upload/1/a.png").width == 12
    assert seen["auth"] == f"Token {TOKEN}"
    with pytest.raises(MediaError, match="loopback"):  # without the alias: a foreign loopback host
        MediaLoader(client, cache_dir=tmp_path / "other").load_image("http://localhost:8080/data/upload/1/a.png")


def test_cloud_storage_uris_go_through_label_studios_resolver_and_its_redirect_without_credentials(tmp_path, web):
    from backends.core.media import storage_url

    base, routes = web
    seen = {}
    signed = "/bucket/photo.png?X-Amz-Signature=abc"
    resolver = storage_url("s3://bucket/photo.png", 42)
    assert resolver == "/tasks/42/presign/?fileuri=" + base64.urlsafe_b64encode(b"s3://bucket/photo.png").decode()
    assert storage_url("https://example.com/a.png", 42) == "https://example.com/a.png"
    assert storage_url("s3://bucket/photo.png", None) == "s3://bucket/photo.png"  # no task: refused later

    storage = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)  # the bucket: another host
    threading.Thread(target=storage.serve_forever, daemon=True).start()

    def presign(handler):
        handler.send_response(303)
        handler.send_header("Location", f"http://127.0.0.1:{storage.server_port}{signed}")
        handler.send_header("Content-Length", "0")
        handler.end_headers()

    routes[resolver], routes[signed] = presign, png_recording_auth(seen, 7, 5)
    client = LabelStudioClient(base, TOKEN)
    try:
        media = MediaLoader(client, cache_dir=tmp_path / "cache", allowed_hosts=["127.0.0.1"])  # a loopback bucket
        assert media.load_image(resolver).width == 7
        assert seen["auth"] is None, "the API token never goes to the storage host"
        with pytest.raises(MediaError, match="loopback"):  # the signed URL's host is checked like any other
            MediaLoader(client, cache_dir=tmp_path / "strict").load_image(resolver)
    finally:
        storage.shutdown()


# -- videos: streamed to a file -------------------------------------------------------------------
def test_a_video_is_streamed_to_a_file_once_and_keeps_its_suffix(tmp_path, web):
    import tracemalloc

    from backends.core.media import FileLimits

    base, routes = web
    body = bytes(range(256)) * 40_000  # 10 MB
    routes["/v/clip.webm"] = (200, {"Content-Type": "video/webm"}, body)
    routes["/v/noext"] = (200, {}, body[:1000])
    media = loader(tmp_path, allowed_hosts=["127.0.0.1"], files=FileLimits(max_bytes=20_000_000))
    tracemalloc.start()
    path = media.load_file(base + "/v/clip.webm")
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert path.suffix == ".webm" and path.read_bytes() == body
    assert peak < 2_000_000, f"{peak:,} bytes held to download 10 MB"  # chunks, never the whole file
    routes["/v/clip.webm"] = (500, {}, b"")
    assert media.load_file(base + "/v/clip.webm") == path, "second load must come from the file cache"
    assert media.load_file(base + "/v/noext").suffix == ".mp4"  # ultralytics reads videos by suffix
    assert not list(path.parent.glob("*.tmp"))


def test_video_caps_name_their_setting_and_leave_no_partial_file(tmp_path, web):
    from backends.core.media import FileLimits

    base, routes = web
    routes["/big.mp4"] = (200, {}, b"x" * 5000)
    routes["/slow.mp4"] = trickling(30)
    media = loader(tmp_path, allowed_hosts=["127.0.0.1"], files=FileLimits(max_bytes=4000, download_s=0.5))
    with pytest.raises(MediaError, match="VIDEO_MAX_BYTES=4,000"):
        media.load_file(base + "/big.mp4")
    with pytest.raises(MediaError, match="VIDEO_DOWNLOAD_S") as err:
        media.load_file(base + "/slow.mp4")
    assert err.value.status == 424
    with pytest.raises(MediaError, match="link-local"):
        media.load_file("http://169.254.169.254/v.mp4")  # the image rules apply to videos too
    assert not [p for p in (tmp_path / "cache" / "files").iterdir()]


def test_a_local_files_video_is_read_in_place(tmp_path):
    from backends.core.media import FileLimits

    root = tmp_path / "files"
    root.mkdir()
    (root / "clip.mp4").write_bytes(b"v" * 100)
    media = loader(tmp_path, local_files_root=root, files=FileLimits(max_bytes=50))
    with pytest.raises(MediaError, match="VIDEO_MAX_BYTES"):
        media.load_file("/data/local-files/?d=clip.mp4")
    media = loader(tmp_path, local_files_root=root)
    assert media.load_file("/data/local-files/?d=clip.mp4") == (root / "clip.mp4").resolve()
    with pytest.raises(MediaError, match="climbs"):
        media.load_file("/data/local-files/?d=../secret.mp4")


def test_a_local_files_video_without_a_video_suffix_is_linked_under_one_and_stale_partials_go(tmp_path):
    import os
    import time

    root = tmp_path / "files"
    root.mkdir()
    (root / "clip.ogv").write_bytes(b"v" * 100)
    stale = tmp_path / "cache" / "files" / "old.mp4.1.2.tmp"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"x")
    os.utime(stale, (time.time() - 7 * 3600,) * 2)
    media = loader(tmp_path, local_files_root=root)
    linked = media.load_file("/data/local-files/?d=clip.ogv")
    assert linked.suffix == ".mp4" and linked.resolve() == (root / "clip.ogv").resolve()
    assert media.load_file("/data/local-files/?d=clip.ogv") == linked and not stale.exists()
