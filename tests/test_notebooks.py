"""The committed notebooks, read as files: what nbval does not check.

* execution counts run 1..n (the notebook was executed top to bottom, not cell by cell);
* no stored output is stderr, a warning or an error, except in cells tagged raises-exception;
* no `{literalinclude}`: it renders only in the HTML book, not in JupyterLab or Binder,
  so helper code is shown by a cell's output instead (helpers.instruments.source).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))


def cells(path: Path) -> list[dict]:
    return json.loads(path.read_text())["cells"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_executed_top_to_bottom(path):
    counts = [c["execution_count"] for c in cells(path) if c["cell_type"] == "code"]
    assert counts == list(range(1, len(counts) + 1)), f"{path.name}: execution counts {counts}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_no_stderr_or_errors_stored(path):
    bad = []
    for index, cell in enumerate(cells(path)):
        tags = cell.get("metadata", {}).get("tags", [])
        for output in cell.get("outputs", []):
            if output["output_type"] == "stream" and output["name"] == "stderr":
                bad.append(f"cell {index}: stderr {''.join(output['text'])[:80]!r}")
            elif output["output_type"] == "error" and "raises-exception" not in tags:
                bad.append(f"cell {index}: {output['ename']}")
    assert not bad, f"{path.name}: {bad}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_no_literalinclude(path):
    found = [index for index, cell in enumerate(cells(path)) if "literalinclude" in "".join(cell["source"])]
    assert not found, f"{path.name}: {{literalinclude}} in cells {found}; show the code with show_source() instead"
