"""The tutorials are stored executed, so that their figures show on GitHub and in the HTML
reference; nbmake re-executes them in the same run (setup.cfg)."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "tutorials").glob("*.ipynb"))
#: What a stored notebook may weigh: its PNGs at :data:`MIN_DPI` (``make notebooks``).
MAX_BYTES = 700_000
#: The resolution of every stored figure: labels stay legible on GitHub and in the docs.
MIN_DPI = 100
#: Calls that write files; a tutorial writes none into the working directory.
WRITES = re.compile(r"savefig\(|imsave\(|\.write_(text|bytes)\(|open\(|torch\.save\(")


def _cells(path: Path, kind: str) -> list[dict]:
    return [c for c in json.loads(path.read_text())["cells"] if c["cell_type"] == kind]


def _text(cell: dict) -> str:
    return "".join(cell["source"])


def test_the_four_tutorials_are_there() -> None:
    assert [p.name[:2] for p in NOTEBOOKS] == ["01", "02", "03", "04"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_each_tutorial_is_stored_executed_with_its_figures(path: Path) -> None:
    code = _cells(path, "code")
    counts = [cell["execution_count"] for cell in code]
    assert counts == list(range(1, len(code) + 1)), "run once, top to bottom, in one kernel"
    outputs = [output for cell in code for output in cell["outputs"]]
    assert not [o for o in outputs if o["output_type"] == "error"]
    assert any("image/png" in o.get("data", {}) for o in outputs), "no figure was stored"
    for output in outputs:
        text = "".join(output.get("data", {}).get("text/plain", ""))
        if text.startswith("<Figure"):
            assert "image/png" in output["data"], f"a figure stored as text: {text}"
    assert path.stat().st_size < MAX_BYTES


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_each_warning_a_reader_meets_is_explained(path: Path) -> None:
    printed = "".join(
        "".join(output["text"])
        for cell in _cells(path, "code")
        for output in cell["outputs"]
        if output.get("name") == "stderr"
    )
    prose = "\n".join(_text(cell) for cell in _cells(path, "markdown"))
    for warning in set(re.findall(r"(\w+Warning):", printed)):
        assert warning in prose, f"{warning} is printed but not explained"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_no_tutorial_writes_files(path: Path) -> None:
    for cell in _cells(path, "code"):
        assert not WRITES.search(_text(cell)), _text(cell)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_every_stored_figure_has_at_least_100_dpi(path: Path) -> None:
    import base64
    import io

    from PIL import Image

    figures = [
        output["data"]["image/png"]
        for cell in _cells(path, "code")
        for output in cell["outputs"]
        if "image/png" in output.get("data", {})
    ]
    for png in figures:
        image = Image.open(io.BytesIO(base64.b64decode(png)))
        horizontal, vertical = image.info["dpi"]  # matplotlib writes the figure's dpi
        assert min(horizontal, vertical) >= MIN_DPI - 0.5, (path.name, image.info["dpi"])


def test_the_quickstart_figure_shows_grad_cam_beside_infocam() -> None:
    (cell,) = [
        c
        for c in _cells(ROOT / "tutorials" / "01_quickstart.ipynb", "code")
        if "readme-figure" in c["metadata"].get("tags", [])
    ]
    assert '"Grad-CAM (Captum)": grad_cam' in _text(cell) and "LayerGradCam" in _text(cell)


def test_the_readme_figure_is_the_quickstart_tutorials_stored_figure() -> None:
    script = ROOT / "tutorials" / "readme_figure.py"
    spec = importlib.util.spec_from_file_location("readme_figure", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert (ROOT / "docs/images/quickstart.png").read_bytes() == module.readme_figure(), (
        "run `make notebooks` (or python tutorials/readme_figure.py)"
    )
