"""Weights that come from the network land in the model store, never in the working directory.

Given a release name (``yolo11n.pt``) or a URL, ultralytics downloads the file into the process's
working directory. In the images that is ``/app``, which the backends' user cannot write (and should
not: a code folder is no place for state). So the backends resolve such specs themselves, before
ultralytics sees them: the file goes to ``MODEL_DIR/downloads/`` once, and every later load (of any
process sharing the store) finds it there. ultralytics' own download code still does the transfer
(GitHub release assets, retries, a ``.part`` file renamed only once its size is checked), so what
users get with a network is what ultralytics gives them, only stored where state belongs.

Everything downloaded is a ``.pt`` that then goes through the weights-only check like any other.
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
from pathlib import Path
from urllib.parse import unquote, urlparse

from backends.core.errors import LabelConfigError

log = logging.getLogger(__name__)

# ultralytics' release assets: YOLO weights for the detector, MobileSAM / SAM 2.1 for the segmenter
_RELEASE_WEIGHTS = re.compile(r"^(yolo|sam|mobile_sam)[\w.-]*\.pt$", re.IGNORECASE)
_URL = re.compile(r"^https?://", re.IGNORECASE)
_URL_IN_TEXT = re.compile(r"https?:/+[^\s'\"]+", re.IGNORECASE)


def needs_download(spec: str) -> bool:
    """True for a URL, or a release name that is not a file here (a file of that name wins, as in
    ultralytics)."""
    if _URL.match(spec):
        return True
    return bool(_RELEASE_WEIGHTS.match(spec)) and "/" not in spec and not Path(spec).exists()


def download_target(spec: str, downloads: Path) -> Path:
    """Where ``spec`` is kept: ``downloads/<name>`` for a release name, ``downloads/<hash>/<name>``
    for a URL (two URLs may end in the same file name)."""
    if not _URL.match(spec):
        return downloads / spec
    name = Path(unquote(urlparse(spec).path)).name
    if not name.endswith(".pt"):
        raise LabelConfigError(f"weights URL {shown(spec)!r} does not name a .pt file")
    return downloads / hashlib.sha256(spec.encode()).hexdigest()[:16] / name


def local_weights(spec: str, downloads: Path) -> str:
    """``spec`` itself, or for a URL / release name the path of its download under ``downloads``
    (fetched on first use; a failed download is a LabelConfigError naming the spec)."""
    if not needs_download(spec):
        return spec
    target = download_target(spec, downloads)
    if not target.is_file():
        _download(spec, target)
    return str(target)


def _download(spec: str, target: Path) -> None:
    from ultralytics.utils.downloads import attempt_download_asset, safe_download

    started = time.perf_counter()
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        if _URL.match(spec):
            safe_download(spec, file=target, unzip=False, retry=2, progress=False)
        else:
            attempt_download_asset(target)  # the release asset of that name, saved at ``target``
    except Exception as exc:  # offline, 404, a truncated transfer
        raise LabelConfigError(f"weights {shown(spec)!r} could not be downloaded: {type(exc).__name__}: "
                               f"{scrubbed(str(exc))}") from None
    if not target.is_file():
        raise LabelConfigError(f"weights {shown(spec)!r} could not be downloaded (ultralytics saved nothing)")
    log.info("downloaded weights %s to %s in %.1f s", shown(spec), target, time.perf_counter() - started)


def scrubbed(text: str) -> str:
    """``text`` with every URL in it ``shown`` (ultralytics' messages quote the URL, sometimes with
    one slash after the scheme, as pathlib leaves it)."""
    return _URL_IN_TEXT.sub(lambda m: shown(re.sub(r"^(https?):/+", r"\1://", m.group(0), flags=re.I)), text)


def shown(spec: str) -> str:
    """``spec`` fit for a log line or an error: a URL loses its query and credentials (a presigned
    URL's signature is a token)."""
    if not _URL.match(spec):
        return spec
    parts = urlparse(spec)
    return parts._replace(netloc=parts.netloc.rpartition("@")[2], query="", fragment="").geturl()
