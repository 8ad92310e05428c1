"""Strip outputs, execution counts and saved widget state from notebooks, as they are committed.

JupyterLab autosaves what a session produced into the notebook files (outputs, widget state: up to 1 MB a
notebook). ``make clean-notebooks`` (``python -m mtlib.notebook.clean notebooks/*.ipynb``) puts them back as
committed; ``git diff`` is then only what you changed in the cells.
"""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat


def clean(path: str | Path) -> bool:
    """Clean one notebook in place; whether anything changed."""
    nb = nbformat.read(str(path), as_version=4)
    before = nbformat.writes(nb)
    nb.metadata.pop("widgets", None)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
        cell.metadata.pop("execution", None)
    after = nbformat.writes(nb)
    if after != before:
        Path(path).write_text(after, encoding="utf-8")
    return after != before


def main(argv: list[str]) -> int:
    for path in argv:
        print(f"{path}: {'cleaned' if clean(path) else 'already clean'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
