"""Scratch directories owned by one process, and the cleanup of those whose process died.

A kill -9 skips every ``finally``: a publish's staging directory or a training run's dataset and
ultralytics run folder stay on disk. Naming each directory after its owner (host and pid namespace)
and pid lets the next process of the same owner recognise and delete what a dead one left, without
touching live work: neither other hosts' work on shared storage, nor that of containers that share
the host's name (host networking) but not its process list.
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
from pathlib import Path


def owner_tag() -> str:
    """This process's host and pid namespace: the scope in which its pid means something."""
    try:
        namespace = os.stat("/proc/self/ns/pid").st_ino
    except OSError:  # not Linux: one namespace per host
        namespace = 0
    return f"{socket.gethostname()}_{namespace}"


def owned_tempdir(parent: Path, prefix: str) -> Path:
    """A new directory ``<prefix><owner tag>-<pid>-<random>`` in ``parent``."""
    parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f"{prefix}{owner_tag()}-{os.getpid()}-", dir=parent))


def remove_orphans(parent: Path, prefix: str) -> list[Path]:
    """Delete this owner's ``owned_tempdir`` directories whose process no longer exists; returns them.
    A reused pid only keeps a dead directory a while longer, the safe direction."""
    tag = owner_tag()
    removed = []
    for path in parent.glob(f"{prefix}*-*-*"):
        # hostnames may contain "-": split from the right (mkdtemp's random part has none)
        parts = path.name[len(prefix):].rsplit("-", 2)
        if len(parts) == 3 and parts[0] == tag and parts[1].isdigit() and not _alive(int(parts[1])):
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
