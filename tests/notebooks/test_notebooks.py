"""The notebooks run top to bottom in their fast mode (LABELLOOP_FAST=1), outputs cleared in git."""

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
QUICKSTART = ROOT / "notebooks" / "01_quickstart.ipynb"


def run_notebook(path: Path, monkeypatch: pytest.MonkeyPatch) -> nbformat.NotebookNode:
    notebook = nbformat.read(path, as_version=4)
    assert all(not cell.get("outputs") for cell in notebook.cells if cell.cell_type == "code"), \
        f"{path.name} is committed with outputs: run tools/make_notebooks.py"
    monkeypatch.setenv("LABELLOOP_FAST", "1")
    monkeypatch.delenv("MPLBACKEND", raising=False)  # the kernel's inline backend: plots become outputs
    NotebookClient(notebook, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}}).execute()
    errors = [o for cell in notebook.cells for o in cell.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors
    return notebook


def outputs(notebook: nbformat.NotebookNode) -> str:
    return "".join(o.get("text", "") for cell in notebook.cells for o in cell.get("outputs", []))


def test_every_notebook_is_generated_by_the_tool():
    assert {p.name for p in NOTEBOOKS} == {"01_quickstart.ipynb", "02_active_learning.ipynb", "03_transfer_learning.ipynb"}


@pytest.mark.parametrize("path", [p for p in NOTEBOOKS if p != QUICKSTART], ids=lambda p: p.name)
def test_notebook_runs_in_fast_mode_and_draws(path, monkeypatch):
    notebook = run_notebook(path, monkeypatch)
    images = [o for cell in notebook.cells for o in cell.get("outputs", []) if "image/png" in o.get("data", {})]
    assert images, f"{path.name} draws its plots"


@pytest.mark.labelstudio
def test_quickstart_runs_the_loop_against_a_label_studio(label_studio, monkeypatch):
    """The harness's Label Studio plays the user's existing one (the notebook's LABEL_STUDIO_URL path)."""
    monkeypatch.setenv("LABEL_STUDIO_URL", label_studio.url)
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", label_studio.token)
    text = outputs(run_notebook(QUICKSTART, monkeypatch))
    assert "submitted 8 annotations" in text and "Label Studio serves next:" in text
    assert "'brushlabels'" in text
