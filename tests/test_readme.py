"""The README's Python examples run as written and give what their comments say."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
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
    rgb = names["rgb"]
    assert rgb.shape == (224, 224, 3) and rgb.dtype == np.float32
    assert rgb.min() >= 0 and rgb.max() <= 1


def _reuse(names: dict) -> None:
    assert [m.shape for m in names["maps"]] == [(1, 1, 2, 2)] * 3
    assert names["cam"].suffix_strategy_used == "traced"  # traced once, for every image


def _architectures(names: dict) -> None:
    assert _is_map(names["vit_map"], (1, 1, 14, 14))  # 224 / 16 patches
    assert _is_map(names["swin_map"], (1, 1, 7, 7))
    assert _is_map(names["seg_map"], (1, 1, 16, 16))  # FCN's dilated layer4: 128 / 8


def _timm_and_hugging_face(names: dict) -> None:
    assert _is_map(names["convnext_map"], (2, 1, 2, 2))  # 64 px / 32
    assert _is_map(names["vit_map"], (2, 1, 8, 8))  # 64 px / 8 px patches
    assert _is_map(names["swin_map"], (2, 1, 2, 2))
    assert _is_map(names["hf_map"], (2, 1, 8, 8))
    assert _is_map(names["hf_swin_map"], (2, 1, 8, 8))  # 64 px / 4 px patches / 2 (one merge)


def _shipped_networks(names: dict) -> None:
    assert not names["model"].training and names["layer"] is names["model"].layer3
    assert _is_map(names["attr"], (4, 1, 8, 8))
    assert names["batch"].mask.shape == (4, 64, 64)


def _noise_tunnel(names: dict) -> None:
    assert _is_map(names["smooth"], (2, 1, 2, 2))


#: What each example's comments promise, in the README's order.
CHECKS = [
    _usage,
    _reuse,
    _architectures,
    _timm_and_hugging_face,
    _shipped_networks,
    _noise_tunnel,
]


def test_every_readme_example_is_checked() -> None:
    assert len(EXAMPLES) == len(CHECKS)


# Random weights: the ViTs' near-zero heads give no evidence, so their fits collapse.
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


def test_the_readme_starts_with_the_usage_and_speaks_of_the_project_alone() -> None:
    text = README.read_text()
    assert re.findall(r"^## (.+)$", text, flags=re.MULTILINE)[0] == "Usage"
    # The project's own history (issue numbers, releases) is for the docs, not the README.
    assert not re.search(r"\bissue \d+|first release", text, flags=re.IGNORECASE)
