"""Loading task images: from Label Studio (with auth), from the web (guarded), or from a data: URI.

Rules, in the order they are checked:
- ``/data/upload/...``, ``/data/local-files/?d=...`` and URLs on Label Studio's own host (that of
  ``LABEL_STUDIO_URL`` or ``LABEL_STUDIO_HOST``) are fetched from ``LABEL_STUDIO_URL`` with the API
  credentials (``local-files`` straight from ``LOCAL_FILES_DOCUMENT_ROOT`` when set). A
  ``local-files`` path with ``..`` or an absolute path is refused. The credentials are never sent to any other host.
- Other ``http(s)`` URLs are fetched without credentials, with a timeout and a byte cap, and
  refused when the host resolves to a loopback, private, link-local, multicast or reserved address
  (cloud metadata at 169.254.169.254, your intranet) unless listed in ``ALLOWED_MEDIA_HOSTS``.
  Redirects are followed by hand, each hop checked the same way.
- ``s3://``, ``gs://`` and ``azure-blob://`` URIs (cloud storage) are resolved by Label Studio
  (``storage_url``): it answers with a signed URL, fetched like any public one, or the bytes.
- ``file://`` and unknown schemes are refused.
Images whose header announces more than ``MEDIA_MAX_PIXELS`` are refused before decoding
(decompression bombs). Downloads are cached on disk by URL (LRU within ``MEDIA_CACHE_MB``).
Videos (``load_file``) go by the same rules but are streamed to a file, never held in memory, under
their own cap (``VIDEO_MAX_BYTES``), deadline (``VIDEO_DOWNLOAD_S``) and cache (``VIDEO_CACHE_MB``).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import ipaddress
import logging
import os
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import parse_qs, unquote, urljoin, urlsplit

import requests
import urllib3
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import MediaError
from .labelstudio import LabelStudioClient

log = logging.getLogger(__name__)

# We check the pixel count ourselves before decoding; PIL's own guard would raise a less clear error.
Image.MAX_IMAGE_PIXELS = None
MAX_REDIRECTS = 5
#: HTTP answers that mean "try again later". Not 500: Label Studio 1.23 answers 500 for an upload
#: whose file is gone, which no retry brings back.
OUTAGE_STATUSES = (429, 502, 503, 504)
#: a whole download may take this many times MEDIA_TIMEOUT_S (which bounds each read).
DOWNLOAD_TIMEOUT_FACTOR = 3


@dataclass(frozen=True)
class FileLimits:
    """What ``load_file`` (videos) may download: bytes, seconds for the whole download, cache MB."""

    max_bytes: int = 2 * 1024**3
    download_s: float = 300.0
    cache_mb: int = 4096


#: reads a fetched response (or raises): into memory for images, into a file for videos
Reader = Callable[[requests.Response, str], bytes]
#: file suffixes kept on downloaded videos: ultralytics routes a source to its video reader by them
VIDEO_SUFFIXES = {".asf", ".avi", ".gif", ".m4v", ".mkv", ".mov", ".mp4", ".mpeg", ".mpg", ".ts", ".wmv", ".webm"}


@dataclass(frozen=True)
class LoadedImage:
    image: Image.Image  # RGB, EXIF orientation applied (as browsers show it)
    sha256: str  # of the encoded bytes: a content key for caches
    url: str

    @property
    def width(self) -> int:
        return self.image.width

    @property
    def height(self) -> int:
        return self.image.height


def address_refusal(host: str, allowed: Iterable[str]) -> str | None:
    """Why ``host`` may not be fetched, or None if it may. Resolves names; checks every address."""
    host = host.lower().strip("[]")
    if host in allowed:
        return None
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError) as exc:
        return f"host {host!r} does not resolve ({exc})"
    for info in infos:
        # an AF_INET/AF_INET6 sockaddr starts with the address text (typeshed allows others' ints)
        addr = ipaddress.ip_address(str(info[4][0]).split("%")[0])
        if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped:
            addr = addr.ipv4_mapped
        kind = _non_public_kind(addr)
        if kind:
            return (
                f"host {host!r} resolves to {'an' if kind[0] in 'aeiou' else 'a'} {kind} address ({addr}); "
                "fetching it is refused to protect "
                "internal services. Add the host to ALLOWED_MEDIA_HOSTS if this is intended"
            )
    return None


def _non_public_kind(addr: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    for kind in ("loopback", "link_local", "unspecified", "multicast", "private", "reserved"):
        if getattr(addr, f"is_{kind}"):
            return kind.replace("_", "-")
    if not addr.is_global:
        return "non-public"
    return None


def decode_image(data: bytes, url: str = "", max_pixels: int = 100_000_000) -> Image.Image:
    """Encoded bytes -> RGB image as a browser shows it (EXIF orientation applied), refusing
    unreadable bytes and declared sizes over ``max_pixels`` (decompression bombs) with a MediaError."""
    try:
        img: Image.Image = Image.open(io.BytesIO(data))  # an ImageFile until converted below
    # ImportError: once ultralytics is imported, PIL.Image.open tries an optional HEIF plugin on
    # unidentified bytes; whatever that plugin's state, those bytes are not an image we can read.
    except (UnidentifiedImageError, OSError, ValueError, ImportError) as exc:
        raise MediaError(f"{short_url(url)} is not a readable image ({type(exc).__name__})") from None
    width, height = img.size
    if width * height > max_pixels:
        raise MediaError(
            f"{short_url(url)} declares {width}x{height} = {width * height:,} pixels, over MEDIA_MAX_PIXELS="
            f"{max_pixels:,}; refused before decoding (decompression-bomb guard)"
        )
    try:
        # in place, and no RGB->RGB convert: each copy of a 9000x9000 photo is 243 MB more at peak
        ImageOps.exif_transpose(img, in_place=True)
        img = _to_8_bit(img)
        return img if img.mode == "RGB" else img.convert("RGB")
    except (OSError, ValueError, SyntaxError) as exc:
        raise MediaError(f"{short_url(url)} could not be decoded: {exc}") from None


def _to_8_bit(img: Image.Image) -> Image.Image:
    """16-bit and float greyscale (medical, microscopy, depth PNG/TIFF) scaled into 0-255: PIL's own
    conversion to RGB clips every value over 255 to white."""
    if img.mode not in ("I", "I;16", "I;16B", "I;16L", "F"):
        return img
    import numpy as np

    values = np.asarray(img, dtype=np.float64)
    peak = float(values.max()) if values.size else 0.0
    if img.mode == "F":  # floats in [0, 1], else up to their own maximum
        top = max(peak, 1.0)
    else:  # 16-bit, or 32-bit "I" holding 8-bit values
        top = 255.0 if img.mode == "I" and peak <= 255 else 65535.0
    return Image.fromarray(np.clip(values / top * 255.0, 0, 255).astype(np.uint8), mode="L")


class MediaLoader:
    def __init__(
        self,
        ls: LabelStudioClient,
        *,
        allowed_hosts: Iterable[str] = (),
        max_bytes: int = 50 * 1024 * 1024,
        max_pixels: int = 100_000_000,
        timeout_s: float = 10.0,
        cache_dir: Path | None = None,
        cache_mb: int = 1024,
        files: FileLimits = FileLimits(),
        local_files_root: Path | None = None,
        label_studio_host: str | None = None,
    ) -> None:
        self.ls = ls
        self.local_files_root = local_files_root.resolve() if local_files_root else None
        self.allowed_hosts = {h.lower() for h in allowed_hosts}
        self.max_bytes = max_bytes
        self.max_pixels = max_pixels
        self.timeout_s = timeout_s
        self.cache = _DiskCache(cache_dir, cache_mb * 1024 * 1024) if cache_dir and cache_mb else None
        self.files = files
        self._file_dir = (cache_dir / "files") if cache_dir else Path(tempfile.gettempdir()) / "labelloop-files"
        self._file_cache = _DiskCache(self._file_dir, files.cache_mb * 1024 * 1024, pattern="*.*")
        self._session = requests.Session()
        # Label Studio writes media URLs with its public address in front (its LABEL_STUDIO_HOST,
        # e.g. http://localhost:8080) while we reach it by another (http://label-studio:8080 in
        # compose): both name Label Studio, and it is always fetched from ``ls.url``
        self._ls_netlocs = {urlsplit(u).netloc.lower() for u in (ls.url, label_studio_host) if u}

    # -- public ---------------------------------------------------------------------------------
    def load_image(self, url: str) -> LoadedImage:
        data = self.load_bytes(url)
        return LoadedImage(self.decode(data, url), hashlib.sha256(data).hexdigest(), url)

    def load_bytes(self, url: str) -> bytes:
        if not isinstance(url, str) or not url.strip():
            raise MediaError("the task has no image URL (empty value)")
        url = url.strip()
        if url.startswith("data:"):
            return self._data_uri(url)
        cached = self.cache.get(url) if self.cache else None
        if cached is not None:
            return cached
        data = self._fetch(url)
        if self.cache:
            self.cache.put(url, data)
        return data

    def decode(self, data: bytes, url: str = "") -> Image.Image:
        return decode_image(data, url, self.max_pixels)

    def load_file(self, url: str) -> Path:
        """A video on disk: a local-files path read in place, else downloaded once per URL into the
        file cache, a chunk at a time (never whole in memory), within ``VIDEO_MAX_BYTES`` and
        ``VIDEO_DOWNLOAD_S``. The file keeps the URL's video suffix (``.mp4`` when it has none)."""
        if not isinstance(url, str) or not url.strip():
            raise MediaError("the task has no video URL (empty value)")
        url = url.strip()
        local = self._local_files_path(url)
        if local is not None:
            return local
        suffix = Path(urlsplit(url).path).suffix.lower()
        target = self._file_cache.path(url, suffix if suffix in VIDEO_SUFFIXES else ".mp4")
        if self._file_cache.touch(target):
            return target
        partial = target.with_name(f"{target.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        try:
            with partial.open("wb") as out:
                if url.startswith("data:"):
                    out.write(self._data_uri(url, self.files.max_bytes))
                else:
                    self._fetch(url, lambda response, shown: self._read(response, shown, into=out))
            os.replace(partial, target)
        finally:
            partial.unlink(missing_ok=True)
        self._file_cache.added(target)
        return target

    def _local_files_path(self, url: str) -> Path | None:
        """The file a ``/data/local-files/?d=`` URL names, when LOCAL_FILES_DOCUMENT_ROOT is mounted here."""
        parts = urlsplit(url)
        on_label_studio = not parts.scheme or parts.netloc.lower() in self._ls_netlocs
        if self.local_files_root is None or not on_label_studio or not parts.path.startswith("/data/local-files"):
            return None
        relative = _check_local_files_path(parts.query)
        path = self._local_file(relative)
        if path.stat().st_size > self.files.max_bytes:
            raise MediaError(f"local-files path {relative!r} is over VIDEO_MAX_BYTES={self.files.max_bytes:,}")
        if path.suffix.lower() in VIDEO_SUFFIXES:
            return path
        # ultralytics picks its video reader by suffix (.ogv, .m2ts or none would be "not found"):
        # a link named like a video, in the file cache, points at the file where it lies
        link = self._file_cache.path(str(path), ".mp4")
        if not link.is_symlink():
            partial = link.with_name(f"{link.name}.{os.getpid()}.{threading.get_ident()}.tmp")
            partial.unlink(missing_ok=True)
            partial.symlink_to(path)
            os.replace(partial, link)
        return link

    # -- fetching -------------------------------------------------------------------------------
    def _fetch(self, url: str, reader: Reader | None = None) -> bytes:
        read = reader or self._read
        parts = urlsplit(url)
        if not parts.scheme and url.startswith("/"):
            return self._fetch_from_label_studio(url, read)
        if parts.scheme not in ("http", "https"):
            raise MediaError(
                f"image URL scheme {parts.scheme or '(none)'!r} is not supported ({short_url(url)}); use http(s), "
                "a Label Studio /data/ path or a data: URI"
            )
        if parts.netloc.lower() in self._ls_netlocs:
            return self._fetch_from_label_studio(parts.path + (f"?{parts.query}" if parts.query else ""), read)
        return self._fetch_public(url, read)

    def _fetch_from_label_studio(self, path: str, read: Reader) -> bytes:
        parts = urlsplit(path)
        if parts.path.startswith("/data/local-files"):
            relative = _check_local_files_path(parts.query)
            if self.local_files_root is not None:
                return self._read_local_file(relative)
        if not self.ls.configured:
            raise MediaError(
                f"{short_url(path)} is stored in Label Studio, which needs credentials: set LABEL_STUDIO_API_KEY"
            )
        response = self._get(urljoin(self.ls.url + "/", path.lstrip("/")), headers=self._ls_headers())
        if response.is_redirect:  # a cloud storage resolver's 303 to a signed URL
            target = urljoin(self.ls.url + "/", response.headers.get("location", ""))
            response.close()
            if urlsplit(target).netloc.lower() in self._ls_netlocs:
                raise MediaError(f"Label Studio redirected {short_url(path)} to itself ({short_url(target)})", status=424)
            return self._fetch_public(target, read)  # without our credentials, each hop's address checked
        return read(response, path)

    def _ls_headers(self) -> dict[str, str]:
        # a personal access token is exchanged for an access token first: an expired or revoked PAT,
        # or Label Studio being down at that moment, is the task's failed dependency, not our bug
        try:
            return self.ls.auth_headers()
        except Exception as exc:
            status = getattr(exc, "status_code", None)
            raise MediaError(f"could not authenticate with Label Studio at {self.ls.url} ({type(exc).__name__}"
                             f"{f' HTTP {status}' if status else ''}): check LABEL_STUDIO_API_KEY and that "
                             "Label Studio is up", status=424, transient=True) from None

    def _read_local_file(self, relative: str) -> bytes:
        """The file Label Studio would serve, read from the same directory (mounted on this machine):
        no HTTP round trip through Label Studio for every image of a local-files storage."""
        path = self._local_file(relative)
        if path.stat().st_size > self.max_bytes:
            raise MediaError(f"local-files path {relative!r} is over MEDIA_MAX_BYTES={self.max_bytes:,}")
        return path.read_bytes()

    def _local_file(self, relative: str) -> Path:
        assert self.local_files_root is not None
        path = (self.local_files_root / relative).resolve()
        if not path.is_relative_to(self.local_files_root):  # a symlink out of the root
            raise MediaError(f"local-files path {relative!r} resolves outside LOCAL_FILES_DOCUMENT_ROOT", status=403)
        if not path.is_file():
            raise MediaError(f"local-files path {relative!r} is not a file under LOCAL_FILES_DOCUMENT_ROOT", status=404)
        return path

    def _fetch_public(self, url: str, read: Reader) -> bytes:
        for _ in range(MAX_REDIRECTS + 1):
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https"):
                raise MediaError(f"redirect to a {parts.scheme!r} URL refused ({short_url(url)})")
            reason = address_refusal(parts.hostname or "", self.allowed_hosts)
            if reason:
                raise MediaError(f"image URL {short_url(url)} refused: {reason}", status=403)
            response = self._get(url, allow_redirects=False)
            if response.is_redirect:
                url = urljoin(url, response.headers.get("location", ""))
                response.close()
                continue
            return read(response, url)
        raise MediaError(f"too many redirects fetching {short_url(url)}")

    def _get(self, url: str, *, headers: dict[str, str] | None = None, allow_redirects: bool = False) -> requests.Response:
        try:
            return self._session.get(
                url, headers=headers, timeout=self.timeout_s, stream=True, allow_redirects=allow_redirects
            )
        except requests.RequestException as exc:
            raise MediaError(f"could not fetch {short_url(url)}: {type(exc).__name__}", status=424, transient=True) from None

    def _read(self, response: requests.Response, url: str, into: BinaryIO | None = None) -> bytes:
        """The body, within the byte cap and the download deadline: in memory, or (``into``, a
        video) written to that file a chunk at a time, and ``b""`` returned."""
        cap, cap_name = (self.files.max_bytes, "VIDEO_MAX_BYTES") if into else (self.max_bytes, "MEDIA_MAX_BYTES")
        # MEDIA_TIMEOUT_S bounds each socket read; a server trickling bytes would stretch the
        # whole download without limit, so the download as a whole gets a deadline too
        allowed_s, allowed_name = ((self.files.download_s, "VIDEO_DOWNLOAD_S") if into else
                                   (self.timeout_s * DOWNLOAD_TIMEOUT_FACTOR, f"{DOWNLOAD_TIMEOUT_FACTOR} x MEDIA_TIMEOUT_S"))
        with response:
            if response.status_code != 200:
                hint = " (check LABEL_STUDIO_API_KEY)" if response.status_code in (401, 403) else ""
                raise MediaError(f"fetching {short_url(url)} returned HTTP {response.status_code}{hint}", status=424,
                                 transient=response.status_code in OUTAGE_STATUSES)
            declared = response.headers.get("content-length")
            if declared and declared.isdigit() and int(declared) > cap:
                raise MediaError(f"{short_url(url)} is {int(declared):,} bytes, over {cap_name}={cap:,}")
            deadline = time.monotonic() + allowed_s
            chunks, size = [], 0
            try:
                for chunk in _arriving(response):
                    size += len(chunk)
                    if size > cap:
                        raise MediaError(f"{short_url(url)} exceeds {cap_name}={cap:,}")
                    if time.monotonic() > deadline:
                        raise MediaError(f"downloading {short_url(url)} took over {allowed_s:g} s ({allowed_name}); gave up",
                                         status=424, transient=True)
                    if into is None:
                        chunks.append(chunk)
                    else:
                        into.write(chunk)
            except (requests.RequestException, urllib3.exceptions.HTTPError) as exc:  # broke or stalled mid-body
                raise MediaError(f"downloading {short_url(url)} failed after {size:,} bytes: {type(exc).__name__}",
                                 status=424, transient=True) from None
            return b"".join(chunks)

    def _data_uri(self, url: str, cap: int | None = None) -> bytes:
        cap = cap or self.max_bytes
        header, _, payload = url.partition(",")
        if ";base64" not in header:
            raise MediaError("only base64 data: URIs are supported")
        if len(payload) * 3 // 4 > cap:
            raise MediaError(f"data: URI exceeds {'MEDIA_MAX_BYTES' if cap == self.max_bytes else 'VIDEO_MAX_BYTES'}={cap:,}")
        try:
            return base64.b64decode(payload, validate=True)
        except (binascii.Error, ValueError):
            raise MediaError("data: URI is not valid base64") from None


def _arriving(response: requests.Response, size: int = 64 * 1024) -> Iterator[bytes]:
    """The body as it arrives: ``iter_content`` waits until a whole chunk is filled, so a server
    trickling bytes would never reach the download deadline's check."""
    while chunk := response.raw.read1(size, decode_content=True):
        yield chunk


CLOUD_SCHEMES = ("s3", "gs", "azure-blob")


def storage_url(url: str, task_id: Any) -> str:
    """A cloud storage URI in task data (``s3://bucket/key``; Label Studio sends it unresolved to
    backends) -> Label Studio's resolver for it, ``/tasks/<id>/presign/?fileuri=<base64>``: Label
    Studio signs it with the storage's own credentials (a 303 to the signed URL) or proxies the bytes,
    so no cloud credentials live here. Other URLs are returned as they are."""
    if urlsplit(url).scheme not in CLOUD_SCHEMES or isinstance(task_id, bool) or not isinstance(task_id, int):
        return url
    return f"/tasks/{task_id}/presign/?fileuri={base64.urlsafe_b64encode(url.encode()).decode()}"


def _check_local_files_path(query: str) -> str:
    values = parse_qs(query).get("d", [])
    if not values:
        raise MediaError("local-files URL has no ?d= path")
    path = unquote(values[0])
    if path.startswith(("/", "\\")) or ".." in Path(path).parts or ".." in path.split("\\"):
        raise MediaError(f"local-files path {path!r} is absolute or climbs with '..'; refused", status=403)
    return path


def short_url(url: str, limit: int = 120) -> str:
    # Never echo query strings (signed URLs carry credentials), data: payloads, nor unbounded input.
    if url.startswith("data:"):
        return url.partition(",")[0] + ",..."
    parts = urlsplit(url)
    text = url if parts.path.startswith("/data/local-files") else url.split("?", 1)[0]
    return text if len(text) <= limit else text[:limit] + "..."


class _DiskCache:
    """Downloaded files by URL hash; least-recently-used files go first when over the byte budget.
    Images are kept as bytes (``get``/``put``, ``*.bin``); videos as files written by the caller
    (``path``/``touch``/``added``), each under its own suffix."""

    def __init__(self, root: Path, budget: int, pattern: str = "*.bin") -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.budget = budget
        self.pattern = pattern
        self._lock = threading.Lock()
        self._remove_stale_partials()
        self._size = sum(st.st_size for f in self._files() if (st := _stat(f)))

    def _remove_stale_partials(self, older_than_s: float = 6 * 3600) -> None:
        """Partial downloads a killed process left (``*.tmp``, never counted in the budget): gone
        after six hours, far longer than any download may take."""
        cutoff = time.time() - older_than_s
        for partial in self.root.glob("*.tmp"):
            if (st := _stat(partial)) is not None and st.st_mtime < cutoff:
                partial.unlink(missing_ok=True)

    def _files(self) -> Iterator[Path]:
        return (f for f in self.root.glob(self.pattern) if not f.name.endswith(".tmp"))

    def path(self, url: str, suffix: str = ".bin") -> Path:
        return self.root / (hashlib.sha256(url.encode()).hexdigest() + suffix)

    def touch(self, path: Path) -> bool:
        """Whether ``path`` is cached, marking it recently used."""
        try:
            os.utime(path)
            return True
        except FileNotFoundError:
            return False

    def get(self, url: str) -> bytes | None:
        path = self.path(url)
        try:
            data = path.read_bytes()
            os.utime(path)  # recency for LRU
            return data
        except FileNotFoundError:
            return None

    def put(self, url: str, data: bytes) -> None:
        if len(data) > self.budget:
            return
        path = self.path(url)
        tmp = path.with_suffix(f".{os.getpid()}.{threading.get_ident()}.tmp")
        try:
            tmp.write_bytes(data)
            os.replace(tmp, path)
        except OSError as exc:  # a full disk must not fail the prediction
            log.warning("media cache write failed: %s", exc)
            tmp.unlink(missing_ok=True)
            return
        self.added(path)

    def added(self, path: Path) -> None:
        """Count a file just written into the folder; evict down to 80 % once over budget (the
        newest file stays: the caller is about to read it)."""
        size = st.st_size if (st := _stat(path)) else 0
        with self._lock:
            self._size += size
            if self._size > self.budget:
                self._evict(keep=path)

    def _evict(self, keep: Path | None = None) -> None:
        # other processes (gunicorn and RQ workers) share this folder and evict too: a file may be
        # gone between listing and stat
        files = sorted((st.st_mtime, st.st_size, f) for f in self._files() if (st := _stat(f)))
        total = sum(size for _, size, _ in files)
        for _, size, f in files:
            if total <= self.budget * 0.8:
                break
            if f == keep:
                continue
            total -= size
            f.unlink(missing_ok=True)
        self._size = total


def _stat(path: Path) -> os.stat_result | None:
    try:
        return path.lstat()  # a link in the file cache counts as itself, not as the file it names
    except FileNotFoundError:
        return None
