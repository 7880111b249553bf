"""docker/torch_variant.py, the CPU image's requirements filter: it cannot be built here (PyTorch's
CPU index is unreachable), so what it keeps and drops is checked on the real export of uv.lock."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("torch_variant", ROOT / "docker" / "torch_variant.py")
torch_variant = importlib.util.module_from_spec(_spec)  # type: ignore[arg-type]
sys.modules["torch_variant"] = torch_variant  # dataclasses look their module up there
_spec.loader.exec_module(torch_variant)  # type: ignore[union-attr]


def uv() -> str:
    found = shutil.which("uv") or shutil.which("uv", path=str(Path.home() / ".local" / "bin"))
    assert found, "uv is what make test installs the project with"
    return found


@pytest.fixture(scope="module")
def export() -> str:
    """What the Dockerfile's deps stage exports: the lock, no dev group."""
    return subprocess.run([uv(), "export", "--frozen", "--no-dev", "--no-hashes", "--no-emit-project",
                           "--format", "requirements-txt"], cwd=ROOT, capture_output=True, text=True, check=True,
                          timeout=120).stdout


def names(lines: list[str]) -> set[str]:
    return {line.split("==")[0] for line in lines}


def test_cpu_moves_torch_and_torchvision_at_their_locked_versions(export):
    split = torch_variant.split(export, "cpu")
    locked = {r.name: r.line for r in torch_variant.parse(export)}
    assert split.torch == [locked["torch"], locked["torchvision"]]
    assert split.torch[0].startswith("torch==2.13.0 ") and split.torch[1].startswith("torchvision==0.28.0 ")
    assert not {"torch", "torchvision"} & names(split.rest)


def test_cpu_drops_the_cuda_runtime_and_nothing_else(export):
    split = torch_variant.split(export, "cpu")
    dropped = set(split.dropped)
    assert "triton" in dropped and "nvidia-cublas" in dropped and "nvidia-cudnn-cu13" in dropped
    assert all(n == "triton" or n.startswith(("nvidia-", "cuda-")) for n in dropped)
    # nvidia-ml-py is CUDA-named but ultralytics needs it (GPU stats), pure Python: kept
    assert "nvidia-ml-py" in names(split.rest) and "nvidia-ml-py" not in dropped
    everything = names(r.line for r in torch_variant.parse(export))
    assert names(split.rest) | set(split.torch and ["torch", "torchvision"]) | dropped == everything
    for kept in ("ultralytics", "segment-anything", "label-studio-sdk", "opencv-python-headless", "sympy"):
        assert kept in names(split.rest), kept  # torch's own pure-Python dependencies stay


def test_a_cuda_named_package_something_else_needs_is_kept():
    text = ("torch==1.0 ; sys_platform == 'linux'\n    # via app\ntorchvision==1.0\n    # via app\n"
            "nvidia-cublas==1\n    # via\n    #   torch\n    #   nvidia-cudnn\nnvidia-cudnn==1\n    # via torch\n"
            "cuda-tools==1\n    # via\n    #   torch\n    #   someone-else\nsomeone-else==2\n    # via app\n")
    split = torch_variant.split(text, "cpu")
    assert split.dropped == ["nvidia-cublas", "nvidia-cudnn"]
    assert split.rest == ["cuda-tools==1", "someone-else==2"]


def test_cuda_keeps_the_lock_as_it_is(export):
    split = torch_variant.split(export, "cuda")
    assert split.torch == [] and split.dropped == []
    assert split.rest == [r.line for r in torch_variant.parse(export)]


def test_a_wrong_variant_or_input_fails_the_build_with_a_message(tmp_path):
    (tmp_path / "req.txt").write_text("numpy==2.0\n")
    script = str(ROOT / "docker" / "torch_variant.py")
    out = [str(tmp_path / "t.txt"), str(tmp_path / "r.txt")]
    wrong = subprocess.run([sys.executable, script, "gpu", str(tmp_path / "req.txt"), *out], capture_output=True, text=True)
    assert wrong.returncode == 1 and "must be cpu or cuda" in wrong.stderr
    no_torch = subprocess.run([sys.executable, script, "cpu", str(tmp_path / "req.txt"), *out], capture_output=True, text=True)
    assert no_torch.returncode == 1 and "pin no torch, torchvision" in no_torch.stderr
