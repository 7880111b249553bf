"""Versioned model store: one directory per (backend, project), atomic publishing.

Layout::

    MODEL_DIR/<backend>/project-<id>/
        versions/<backend>-v<N>/   weights + metadata.json, immutable once renamed into place
        current                    text file naming the serving version, replaced with os.replace

A version is staged in a temporary directory, renamed into ``versions/`` (atomic on one file
system), and only then made current by atomically replacing the ``current`` file. A reader that
read the old pointer still finds its complete directory, because versions are never deleted while
current, so a ``/predict`` running during a publish serves the old or the new version, never a mix.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ModelStoreError, NotFound
from .scratch import owned_tempdir, remove_orphans

_STORE_ERRNOS = {errno.ENOSPC, errno.EFBIG, errno.EROFS, errno.EACCES, errno.EPERM, errno.EDQUOT}
_VERSION_RE = re.compile(r"^(?P<backend>[a-z0-9_]+)-v(?P<n>\d+)$")


@dataclass(frozen=True)
class Version:
    name: str
    path: Path
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def number(self) -> int:
        match = _VERSION_RE.match(self.name)
        return int(match["n"]) if match else 0

    def to_json(self, current: str | None = None) -> dict[str, Any]:
        return {"name": self.name, "current": self.name == current, **self.metadata}


STAGING_PREFIX = ".staging-"


class StagedVersion:
    """A version being written. ``publish()`` makes it visible; leaving without it discards it."""

    def __init__(self, registry: ModelRegistry) -> None:
        self.registry = registry
        registry.versions_dir.mkdir(parents=True, exist_ok=True)
        remove_orphans(registry.versions_dir, STAGING_PREFIX)  # what a kill -9 mid-publish left behind
        self.path = owned_tempdir(registry.versions_dir, STAGING_PREFIX)

    def __enter__(self) -> StagedVersion:
        return self

    def __exit__(self, exc_type: type | None, exc: BaseException | None, _tb: object) -> None:
        if self.path.exists():
            shutil.rmtree(self.path, ignore_errors=True)
        if isinstance(exc, OSError) and exc.errno in _STORE_ERRNOS:
            # Whatever wrote into the stage (ultralytics, torch.save, a copy): say what the user must fix.
            raise ModelStoreError(
                f"the model store {self.registry.dir} cannot take a new version ({exc.strerror}); nothing was "
                f"published, {self.registry.current_name() or 'the base model'} keeps serving. Free space or fix "
                "MODEL_DIR's permissions, then submit again or POST /jobs"
            ) from exc

    def publish(self, metadata: dict[str, Any], *, make_current: bool = True) -> Version:
        return self.registry._publish_staged(self, metadata, make_current=make_current)


class ModelRegistry:
    def __init__(self, root: Path, backend: str, project: int) -> None:
        self.backend = backend
        self.project = project
        self.dir = Path(root) / backend / f"project-{project}"
        self.versions_dir = self.dir / "versions"
        self.pointer = self.dir / "current"

    # -- reading ----------------------------------------------------------------------------------
    def current_name(self) -> str | None:
        try:
            name = self.pointer.read_text().strip()
        except FileNotFoundError:
            return None
        return name or None

    def current(self) -> Version | None:
        name = self.current_name()
        return self.get(name) if name else None

    def get(self, name: str) -> Version:
        # a name is one folder of this project's versions: "v1/../../project-2/..." would serve
        # another project's model (and become its model_version)
        one_folder = "/" not in name and "\\" not in name
        if not one_folder or (not _VERSION_RE.match(name) and not name.startswith(f"{self.backend}-")):
            raise NotFound(f"no version {name[:80]!r} for {self.backend} in project {self.project}")
        path = self.versions_dir / name
        meta_file = path / "metadata.json"
        if not meta_file.is_file():
            raise NotFound(f"no version {name!r} for {self.backend} in project {self.project}")
        return Version(name, path, json.loads(meta_file.read_text()))

    def list(self) -> list[Version]:
        if not self.versions_dir.is_dir():
            return []
        versions = []
        for path in self.versions_dir.iterdir():
            if path.name.startswith(".") or not (path / "metadata.json").is_file():
                continue
            versions.append(Version(path.name, path, json.loads((path / "metadata.json").read_text())))
        return sorted(versions, key=lambda v: v.number)

    # -- writing ----------------------------------------------------------------------------------
    def stage(self) -> StagedVersion:
        return StagedVersion(self)

    def _next_number(self) -> int:
        numbers = [v.number for v in self.list()]
        return max(numbers, default=0) + 1

    def _publish_staged(self, staged: StagedVersion, metadata: dict[str, Any], *, make_current: bool) -> Version:
        parent = self.current_name()
        for _ in range(100):  # another publisher may take our number: try the next one
            name = f"{self.backend}-v{self._next_number()}"
            meta = {
                "name": name,
                "backend": self.backend,
                "project": self.project,
                "parent": parent,
                "created_at": time.time(),
                **metadata,
            }
            _write_json_durably(staged.path / "metadata.json", meta)
            try:
                os.rename(staged.path, self.versions_dir / name)
            except OSError:
                if (self.versions_dir / name).exists():
                    continue
                raise
            _fsync_dir(self.versions_dir)
            if make_current:
                self.set_current(name)
            return Version(name, self.versions_dir / name, meta)
        raise RuntimeError(f"could not allocate a version name in {self.versions_dir}")

    def set_current(self, name: str) -> Version:
        """Point serving at an existing version (publish, or rollback through the API)."""
        version = self.get(name)
        tmp = self.dir / f".current-{uuid.uuid4().hex}"
        tmp.write_text(name)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, self.pointer)
        _fsync_dir(self.dir)
        return version


def _write_json_durably(path: Path, data: dict[str, Any]) -> None:
    with open(path, "w") as fh:
        json.dump(data, fh, indent=2, sort_keys=True, default=str)
        fh.flush()
        os.fsync(fh.fileno())


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
