"""Stores the quick-start tutorial's figure as the README's image (``make notebooks`` runs this).

The image is the stored PNG output of the cell tagged ``readme-figure`` in
``01_quickstart.ipynb``, so the README shows what the tutorial showed when it last ran.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "tutorials" / "01_quickstart.ipynb"
IMAGE = ROOT / "docs" / "images" / "quickstart.png"


def readme_figure(notebook: Path = NOTEBOOK) -> bytes:
    """The PNG bytes of the ``readme-figure`` cell's output."""
    cells = json.loads(notebook.read_text())["cells"]
    (cell,) = [c for c in cells if "readme-figure" in c["metadata"].get("tags", [])]
    (png,) = [o["data"]["image/png"] for o in cell["outputs"] if "image/png" in o.get("data", {})]
    return base64.b64decode(png)


if __name__ == "__main__":
    IMAGE.write_bytes(readme_figure())
    print(f"wrote {IMAGE.relative_to(ROOT)}")
