"""Sphinx configuration: the API reference from the docstrings, the README, the docs pages
and the tutorials with their stored outputs (never re-executed here).

The source folder is the repository's root, so that the README's links to ``docs/`` and
``tutorials/`` resolve as they do on GitHub: ``python -m sphinx -c docs . docs/_build/html``
(``make docs``).
"""

import logging
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # document this checkout, not an installed copy

import captum_infocam  # noqa: E402


class _WithoutParserConfigs(logging.Filter):
    """Drops MyST's and MyST-NB's dumps of their whole configuration (about 1,500
    characters each, at every build)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "ParserConfig(" not in record.getMessage()


for _logger in ("sphinx.myst_parser.sphinx_ext.main", "sphinx.myst_nb.sphinx_ext"):
    logging.getLogger(_logger).addFilter(_WithoutParserConfigs())

project = "captum_infocam"
release = version = captum_infocam.__version__
extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx-mathjax-offline",  # MathJax served from _static: the formulas render offline
    "sphinx.ext.viewcode",
    "myst_nb",
]
root_doc = "docs/index"
include_patterns = ["README.md", "docs/*.md", "docs/*.rst", "tutorials/*.ipynb"]
# Pruned while Sphinx walks the root: the venv (a symlink here), the package, the tests...
exclude_patterns = [
    ".*",
    "*.egg-info",
    "build",
    "captum_infocam",
    "docs/_build",
    "results",
    "tests",
    "timing",
]
suppress_warnings = ["myst.header"]  # docs/benchmark.md's tables sit under H4 headings
myst_heading_anchors = 3
nb_execution_mode = "off"  # the notebooks are stored executed (make notebooks)
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"members": True, "show-inheritance": True}
napoleon_google_docstring = True
napoleon_numpy_docstring = False
html_extra_path = ["root"]  # index.html at the top, pointing at docs/index.html
html_theme = "alabaster"
html_title = "captum_infocam"
