"""The quick-start notebook runs from top to bottom and is stored without outputs."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
QUICKSTART = NOTEBOOKS / "01-quickstart.ipynb"


def test_quickstart_is_stored_without_outputs():
    notebook = nbformat.read(QUICKSTART, as_version=4)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert code
    assert all(not cell.outputs and cell.execution_count is None for cell in code)


@pytest.mark.slow
def test_quickstart_executes():
    from nbclient import NotebookClient

    notebook = nbformat.read(QUICKSTART, as_version=4)
    client = NotebookClient(
        notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": NOTEBOOKS}}
    )
    client.execute()  # raises CellExecutionError on the first failing cell

    outputs = [output for cell in notebook.cells for output in cell.get("outputs", [])]
    assert not [o for o in outputs if o.output_type == "error"]
    assert any("image/png" in o.get("data", {}) for o in outputs)  # the selection figure
    text = " ".join(
        str(o.get("data", {}).get("text/plain", "")) + o.get("text", "") for o in outputs
    )
    assert "Scenario S5" in text and "BOIN, target 30%" in text
    markdown = [o["data"]["text/markdown"] for o in outputs if "text/markdown" in o.get("data", {})]
    assert any("λe = 0.2365" in m for m in markdown)
    assert any("Dose transition pathways: BOIN, target 30%" in m for m in markdown)
    assert "report.html" in text and "report_files/selection.png" in text  # the three formats
    assert any("Appendix A. Reproducibility" in m for m in markdown)
    assert "Next cohort: level" in text
    assert "verified: True" in text and "ledger intact: True entries: 3" in text
