"""The README's Python examples run as written and give what their comments say."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

README = Path(__file__).resolve().parents[1] / "README.md"
EXAMPLES = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.DOTALL)


def _is_map(value: torch.Tensor, shape: tuple[int, ...]) -> bool:
    return value.shape == shape and bool(torch.isfinite(value).all() and (value >= 0).all())


def _usage(names: dict) -> None:
    assert _is_map(names["attr"], (2, 1, 7, 7))
    assert _is_map(names["up"], (2, 1, 224, 224))
    fit = names["cam"].last_fit
    assert fit.bits.shape == (2, 512) and fit.p_noise.shape == (2,)
    assert bool(((fit.p_noise >= 0) & (fit.p_noise <= 1)).all())


def _architectures(names: dict) -> None:
    assert _is_map(names["vit_map"], (1, 1, 14, 14))  # 224 / 16 patches
    assert _is_map(names["swin_map"], (1, 1, 7, 7))
    assert _is_map(names["seg_map"], (1, 1, 16, 16))  # FCN's dilated layer4: 128 / 8


#: What each example's comments promise, in the README's order.
CHECKS = [_usage, _architectures]


def test_every_readme_example_is_checked() -> None:
    assert len(EXAMPLES) == len(CHECKS)


# Random weights: the ViT's zero head gives no evidence, so its fit collapses.
@pytest.mark.filterwarnings("ignore::captum_infocam.CollapsedFitWarning")
@pytest.mark.parametrize(
    ("source", "check"),
    [
        pytest.param(source, check, id=f"example-{i}")
        # Not strict: a README example without a check fails the test above.
        for i, (source, check) in enumerate(zip(EXAMPLES, CHECKS, strict=False))
    ],
)
def test_readme_example_runs_and_gives_what_it_says(source: str, check) -> None:
    names = {"__name__": "readme_example"}
    exec(compile(source, str(README), "exec"), names)
    check(names)
