"""What an install asks of pip: the extras leave the user's torch alone; make pins it."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_no_extra_pins_torch_and_make_installs_with_the_constraints() -> None:
    # Every requirement of pyproject.toml is a quoted string; none may pin torch.
    pinned = re.findall(r'"torch(?:vision)?\s*==[^"]*"', (ROOT / "pyproject.toml").read_text())
    assert not pinned, f"an extra would replace the user's torch: {pinned}"
    constraints = (ROOT / "constraints.txt").read_text().splitlines()
    assert "torch==2.14.1" in constraints and "torchvision==0.29.1" in constraints
    installs = [line for line in (ROOT / "Makefile").read_text().splitlines() if " -e '." in line]
    assert len(installs) == 3 and all("-c constraints.txt" in line for line in installs)


def _extras() -> dict[str, set[str]]:
    """Each extra of pyproject.toml with the distributions it installs, its own extras'
    included (``captum-infocam[a,b]``)."""
    import tomllib

    listed = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    direct = listed["optional-dependencies"]

    def closure(extra: str) -> set[str]:
        names: set[str] = set()
        for requirement in direct[extra]:
            name = re.match(r"[A-Za-z0-9_.-]+", requirement).group(0).lower()
            nested = re.search(r"\[(.+)\]", requirement)
            if name == "captum-infocam" and nested:
                for inner in nested.group(1).split(","):
                    names |= closure(inner.strip())
            else:
                names.add(name)
        return names

    runtime = {re.match(r"[A-Za-z0-9_.-]+", r).group(0).lower() for r in listed["dependencies"]}
    return {extra: closure(extra) | runtime for extra in direct}


#: Modules whose distribution has another name.
DISTRIBUTIONS = {"pytorch_grad_cam": "grad-cam"}


def test_the_tutorials_extra_installs_what_every_tutorial_imports() -> None:
    import json

    tutorials = _extras()["tutorials"]
    for notebook in sorted((ROOT / "tutorials").glob("*.ipynb")):
        cells = json.loads(notebook.read_text())["cells"]
        code = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
        modules = set(re.findall(r"^\s*(?:from|import) ([A-Za-z_]\w*)", code, flags=re.MULTILINE))
        for module in modules - {"captum_infocam", "pathlib", "warnings", "json", "math"}:
            distribution = DISTRIBUTIONS.get(module, module)
            if distribution in tutorials:
                continue
            raise AssertionError(f"{notebook.name} imports {module}, not in the tutorials extra")
