"""The HTML reference builds without a warning (``make docs``), with the API and the
tutorials' stored figures."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_html_reference_builds_without_warnings(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-b", "html"]
    built = subprocess.run(
        [*command, "-c", "docs", ".", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert built.returncode == 0, built.stderr
    # What make docs prints: progress, not the parsers' dumps of their whole configuration.
    assert "ParserConfig(" not in built.stdout
    assert max(len(line) for line in built.stdout.splitlines()) < 300
    api = (tmp_path / "docs" / "api.html").read_text()
    for name in (
        "InfoCAM.attribute",
        "InfoCAM.attribute_each",
        "DSIBSettings",
        "output_scores",
        "show_overlay",
        "energy_pointing_game",
    ):
        assert name in api, f"{name} is missing from the API reference"
    for tutorial in (ROOT / "tutorials").glob("*.ipynb"):
        page = (tmp_path / "tutorials" / f"{tutorial.stem}.html").read_text()
        assert "<img" in page, f"{tutorial.name}: its stored figures are not rendered"
    assert (tmp_path / "index.html").exists() and (tmp_path / "README.html").exists()
    # The formulas render offline: MathJax is served from the build, not from a CDN.
    assert '<script defer="defer" src="../_static/mathjax/tex-chtml.js">' in api
    assert "cdn.jsdelivr" not in api and (tmp_path / "_static/mathjax/tex-chtml.js").exists()
