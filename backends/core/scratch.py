"""Scratch directories owned by one process, and the cleanup of those whose process died.

A kill -9 skips every ``finally``: a publish's staging directory or a training run's dataset and
ultralytics run folder stay on disk. Naming each directory after its host and pid lets the next
process on that host recognise and delete what a dead one left, without touching live work (or
other hosts' work on shared storage).
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
from pathlib import Path


def owned_tempdir(parent: Path, prefix: str) -> Path:
    """A new directory ``<prefix><host>-<pid>-<random>`` in ``parent``."""
    parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f"{prefix}{socket.gethostname()}-{os.getpid()}-", dir=parent))


def remove_orphans(parent: Path, prefix: str) -> list[Path]:
    """Delete this host's ``owned_tempdir`` directories whose process no longer exists; returns them."""
    host = socket.gethostname()
    removed = []
    for path in parent.glob(f"{prefix}{host}-*-*"):
        pid_text = path.name[len(f"{prefix}{host}-"):].split("-", 1)[0]
        if pid_text.isdigit() and not _alive(int(pid_text)):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True
