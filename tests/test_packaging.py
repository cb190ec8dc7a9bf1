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
