"""Refuses, in the process it is loaded into, every write outside the folders of WRITE_GUARD_ALLOWED.

Put this folder on a child process's PYTHONPATH and Python imports it at start-up (``site``), before
any of the child's own code. A chmod'ed read-only folder would do the same for a normal user, but
tests often run as root, who writes anywhere; an audit hook (PEP 578) sees every file Python opens
for writing, creates, renames or deletes, root or not, and makes it fail the way a read-only
filesystem would (PermissionError), with a ``WRITE-GUARD`` line and the stack on stderr so the log
shows who tried. Writes from C code (a C library writing by itself) bypass it; the tests also check
that the guarded folders are still empty afterwards.
"""

import os
import sys
import traceback

_ALLOWED = tuple(os.path.realpath(p) for p in os.environ.get("WRITE_GUARD_ALLOWED", "").split(os.pathsep) if p)
_DEVICES = ("/dev", "/proc/self", f"/proc/{os.getpid()}")
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
# event -> (argument that is a path written to, argument that is the dir_fd it is relative to)
_PATH_EVENTS = {"os.mkdir": ((0, 2),), "os.rename": ((0, 2), (1, 3)), "os.remove": ((0, 1),),
                "os.rmdir": ((0, 1),), "os.symlink": ((1, 2),), "os.link": ((1, 3),), "os.truncate": ((0, None),),
                "os.chmod": ((0, 2),), "os.chown": ((0, 3),), "os.utime": ((0, 3),),
                "shutil.copyfile": ((1, None),), "shutil.rmtree": ((0, 1),)}


def _inside(path: str, dir_fd: object) -> bool:
    # dir_fd is -1 or None when the call had none
    base = os.readlink(f"/proc/self/fd/{dir_fd}") if isinstance(dir_fd, int) and dir_fd >= 0 else os.getcwd()
    full = os.path.realpath(os.path.join(base, path))
    return any(full == root or full.startswith(root + os.sep) for root in _ALLOWED + _DEVICES)


def _writes(mode: object, flags: object) -> bool:
    if isinstance(flags, int) and flags & _WRITE_FLAGS:
        return True
    return isinstance(mode, str) and any(c in mode for c in "wax+")


def _paths(event: str, args: tuple) -> list:
    """(path, dir_fd) pairs that ``event`` writes to."""
    if event == "open":
        return [(args[0], None)] if _writes(args[1], args[2] if len(args) > 2 else None) else []
    if event == "sqlite3.connect":
        return [(args[0], None)] if args and args[0] not in (":memory:", b":memory:", "") else []
    return [(args[p], args[d] if d is not None and d < len(args) else None)
            for p, d in _PATH_EVENTS.get(event, ()) if p < len(args)]


def _guard(event: str, args: tuple) -> None:
    if event != "open" and event not in _PATH_EVENTS and event != "sqlite3.connect":
        return
    for path, dir_fd in _paths(event, args):
        if isinstance(path, int) or path is None:
            continue  # an open descriptor: its file was checked when it was opened
        path = os.fsdecode(path)
        if not _inside(path, dir_fd):
            sys.stderr.write(f"WRITE-GUARD refused {event} {path!r} (cwd {os.getcwd()})\n"
                             + "".join(traceback.format_stack(limit=12)))
            raise PermissionError(13, "write outside DATA_DIR/MODEL_DIR refused (tests/write_guard)", path)


if _ALLOWED:
    sys.addaudithook(_guard)
