"""Split the locked requirements for an image's TORCH_VARIANT (docker/Dockerfile, deps stage).

``uv export`` of uv.lock pins PyPI's torch and torchvision, whose Linux wheels bundle CUDA: about
3.5 GB of ``nvidia-*``, ``cuda-*`` and ``triton`` wheels in every backend image.

- ``cuda`` keeps the lock as it is (run with the NVIDIA container toolkit).
- ``cpu`` moves torch and torchvision, at their locked versions, to a file of their own (installed
  from PyTorch's CPU index), and drops the CUDA runtime: a package whose name is a CUDA one *and*
  that only torch, torchvision or other dropped packages need (the ``# via`` lines of the export). A
  CUDA-named package something else needs stays: ``nvidia-ml-py`` is how ultralytics reads GPU
  stats, and it is pure Python.

Usage: ``python3 torch_variant.py VARIANT REQUIREMENTS TORCH_OUT REST_OUT``; what it moved and
dropped goes to stderr, for the build log. Standard library only: it runs before any venv exists.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

TORCH = ("torch", "torchvision")
_CUDA_NAME = re.compile(r"^(triton|cuda-[a-z0-9-]+|nvidia-[a-z0-9-]+)$")
_REQUIREMENT = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==")


@dataclass
class Requirement:
    """One pinned line of the export and the packages that need it (its ``# via`` comments)."""

    name: str
    line: str
    via: set[str] = field(default_factory=set)


@dataclass
class Split:
    torch: list[str]
    rest: list[str]
    dropped: list[str]


def parse(text: str) -> list[Requirement]:
    """The pinned requirements of a ``uv export --format requirements-txt`` text, in order."""
    found: list[Requirement] = []
    for raw in text.splitlines():
        if match := _REQUIREMENT.match(raw):
            found.append(Requirement(match.group(1).lower().replace("_", "-"), raw.rstrip()))
        elif found and (comment := raw.strip()).startswith("#"):
            via = comment.lstrip("#").strip().removeprefix("via").strip()
            found[-1].via.update(v.strip().lower() for v in via.split() if v.strip() and not v.startswith("-"))
    return found


def cuda_only(requirements: list[Requirement]) -> set[str]:
    """Names of the CUDA runtime packages nothing but torch, torchvision and each other need."""
    dropped: set[str] = set()
    changed = True
    while changed:  # a fixed point: nvidia-cublas is needed by cuda-toolkit, itself only by torch
        changed = False
        for req in requirements:
            needers = req.via - {req.name}
            if req.name not in dropped and _CUDA_NAME.match(req.name) and needers <= {*TORCH, *dropped}:
                dropped.add(req.name)
                changed = True
    return dropped


def split(text: str, variant: str) -> Split:
    requirements = parse(text)
    if variant == "cuda":
        return Split([], [r.line for r in requirements], [])
    if variant != "cpu":
        raise ValueError(f"TORCH_VARIANT must be cpu or cuda, got {variant!r}")
    missing = [name for name in TORCH if name not in {r.name for r in requirements}]
    if missing:
        raise ValueError(f"the requirements pin no {', '.join(missing)}: not an export of this project's lock")
    dropped = cuda_only(requirements)
    return Split([r.line for r in requirements if r.name in TORCH],
                 [r.line for r in requirements if r.name not in TORCH and r.name not in dropped],
                 sorted(dropped))


def main(argv: list[str]) -> int:
    if len(argv) != 4:
        print(__doc__, file=sys.stderr)
        return 2
    variant, source, torch_out, rest_out = argv
    try:
        result = split(Path(source).read_text(), variant)
    except ValueError as exc:
        print(f"torch_variant: {exc}", file=sys.stderr)
        return 1
    Path(torch_out).write_text("".join(f"{line}\n" for line in result.torch))
    Path(rest_out).write_text("".join(f"{line}\n" for line in result.rest))
    print(f"torch_variant {variant}: {len(result.torch)} from the CPU index, {len(result.rest)} from PyPI, "
          f"{len(result.dropped)} CUDA-only dropped: {' '.join(result.dropped) or '-'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
