"""The notebooks: committed with the outputs of a real run (tools/make_notebooks.py --execute) for
people browsing the repository, cells exactly the tool's, and run afresh here top to bottom in
their fast mode (LABELLOOP_FAST=1)."""

import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))
import make_notebooks  # noqa: E402

NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
QUICKSTART = ROOT / "notebooks" / "01_quickstart.ipynb"


def run_notebook(path: Path, monkeypatch: pytest.MonkeyPatch) -> nbformat.NotebookNode:
    notebook = nbformat.read(path, as_version=4)
    for cell in notebook.cells:  # afresh: the committed outputs must not stand in for this run's
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
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
    for path in NOTEBOOKS:
        committed = nbformat.read(path, as_version=4)
        fresh = make_notebooks.build(path.stem)
        assert [(c.cell_type, c.source) for c in committed.cells] == [(c.cell_type, c.source) for c in fresh.cells], \
            f"{path.name} differs from tools/make_notebooks.py: run it"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_committed_with_the_outputs_of_a_run(path):
    """Someone browsing the repository sees the steps and the plots without running anything."""
    cells = [c for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code"]
    assert any(c.get("outputs") for c in cells), f"{path.name} has no outputs: run tools/make_notebooks.py --execute"
    errors = [o for c in cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors, f"{path.name} was committed from a failed run"
    if path != QUICKSTART:
        assert any("image/png" in o.get("data", {}) for c in cells for o in c.get("outputs", [])), f"{path.name}: no plot"


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
