"""The meta-evaluation of the confidence metrics: its maps, its two scores, its command."""

from __future__ import annotations

import pytest
import torch

from captum_infocam.benchmark.__main__ import main
from captum_infocam.benchmark.items import ShapesItems
from captum_infocam.benchmark.meta import (
    CONFIDENCE_KEYS,
    ORDER,
    PAIRS,
    NoisyLogits,
    adversarial_maps,
    meta_evaluate,
    reactivity,
    resilience,
)
from captum_infocam.benchmark.methods import METHODS
from captum_infocam.benchmark.zoo import load_model
from captum_infocam.metrics import confidence_metrics


def test_the_adversarial_maps_are_the_documented_ones() -> None:
    batch = ShapesItems("pair", 1).load(range(2))
    best, random = torch.rand(2, 1, 8, 8), torch.rand(2, 8, 8)
    maps = adversarial_maps(batch, best, random)
    assert list(maps) == list(ORDER)
    mask = batch.mask[:, None].float()
    assert torch.equal(maps["oracle"], mask) and torch.equal(maps["inverse"], 1 - mask)
    assert torch.equal(maps["best"], best) and torch.equal(maps["random"], random[:, None])
    assert torch.equal(maps["constant"], torch.ones_like(mask))
    assert maps["near-ones"].sum((1, 2, 3)).tolist() == [mask[0].numel() - 1] * 2
    assert (maps["near-ones"][..., 0, 0] == 0).all()


def test_reactivity_counts_misordered_pairs_and_half_the_ties() -> None:
    # Three items; the metric's values for the six maps, most faithful first.
    values = torch.tensor(
        [
            [5.0, 5.0, 5.0],  # oracle
            [4.0, 6.0, 5.0],  # best: below, above, tied with the oracle
            [3.0, 3.0, 3.0],  # random
            [2.0, 2.0, 2.0],  # constant
            [1.0, 1.0, 1.0],  # inverse
            [0.0, 0.0, 9.0],  # near-ones: above the inverse on the third item
        ]
    )
    higher = reactivity(values, higher_is_better=True)
    assert list(higher) == list(PAIRS)
    assert higher[("oracle", "best")] == pytest.approx((1 + 0.5) / 3)
    assert higher[("best", "random")] == 0.0
    assert higher[("inverse", "near-ones")] == pytest.approx(1 / 3)
    lower = reactivity(values, higher_is_better=False)  # every strict order flips
    assert lower[("oracle", "best")] == pytest.approx((1 + 0.5) / 3)
    assert lower[("best", "random")] == 1.0
    assert lower[("inverse", "near-ones")] == pytest.approx(2 / 3)


def test_resilience_is_the_spread_under_noise_over_the_spread_between_maps() -> None:
    clean = torch.tensor([[0.0, 1.0], [2.0, 1.0]])  # two maps, two items: std 1 and 0
    noisy = torch.stack([clean, clean + torch.tensor([[0.2, 0.0], [0.0, 0.4]])])
    # Spread over the repeats: 0.1, 0, 0, 0.2, mean 0.075; between maps: (1 + 0) / 2.
    assert resilience(clean, noisy) == pytest.approx(0.075 / 0.5)
    assert resilience(clean, torch.stack([clean, clean])) == 0.0


def test_noisy_logits_add_fresh_noise_of_the_given_scale() -> None:
    model = torch.nn.Linear(3, 2)
    x = torch.zeros(20000, 3)
    noisy = NoisyLogits(model, 0.5, seed=0)
    first, second = noisy(x) - model(x), noisy(x) - model(x)
    assert not torch.equal(first, second)
    assert first.std().item() == pytest.approx(0.5, rel=0.02)
    torch.testing.assert_close(NoisyLogits(model, 0.5, seed=0)(x) - model(x), first)


def test_meta_evaluation_scores_each_map_as_the_metrics_do_and_noise_off_has_no_spread() -> None:
    model = load_model("resnet")
    layer = model.layer3
    items = ShapesItems("single", 2)
    best, random = METHODS["Grad-CAM"](model, layer), METHODS["Random"](model, layer)
    result = meta_evaluate(
        model, items, best, random, batch_size=1, repeats=2, input_noise=0.0, score_noise=0.0
    )
    batch = items.load(range(2))
    maps = adversarial_maps(batch, best(batch), random(batch))
    for row, name in enumerate(ORDER):
        direct = confidence_metrics(model, batch.image, maps[name], target=batch.target)
        for key in CONFIDENCE_KEYS:
            torch.testing.assert_close(result["clean"][key][row], direct[key], atol=1e-5, rtol=0)
    for kind in ("input", "score"):
        for key in CONFIDENCE_KEYS:
            assert result[kind][key].shape == (2, len(ORDER), 2)
            torch.testing.assert_close(result[kind][key], result["clean"][key].expand(2, -1, -1))
    # With noise on, the repeats differ from the clean values.
    noisy = meta_evaluate(model, items, best, random, batch_size=2, repeats=1)
    assert not torch.equal(noisy["score"]["average_drop"][0], noisy["clean"]["average_drop"])
    assert not torch.equal(noisy["input"]["average_drop"][0], noisy["clean"]["average_drop"])


def test_meta_command_prints_a_row_per_split_and_metric(capsys) -> None:
    threads = torch.get_num_threads()
    try:
        main(["meta", "--archs", "resnet", "--images", "1", "--pairs", "1", "--repeats", "2"])
    finally:
        torch.set_num_threads(threads)  # the command sets its own
    out = capsys.readouterr().out
    assert "### resnet" in out
    rows = [line for line in out.splitlines() if line.startswith(("| single |", "| pair |"))]
    assert len(rows) == 2 * (len(CONFIDENCE_KEYS) + 3)  # metric rows, then 3 ratio rows
    assert "| pair | iAD / AD |" in out


def test_one_repeat_has_no_spread_and_is_refused(capsys) -> None:
    clean = torch.tensor([[0.0, 1.0], [2.0, 1.0]])
    with pytest.raises(ValueError, match="at least 2 noisy repeats, got 1"):
        resilience(clean, clean[None])
    for arguments, message in (
        (["--repeats", "1"], "argument --repeats: must be >= 2, got 1"),
        (["--input-noise", "-0.1"], "argument --input-noise: must be >= 0 and finite, got -0.1"),
        (["--archs", "resnet,alexnet"], "argument --archs: unknown network(s) ['alexnet']"),
    ):
        with pytest.raises(SystemExit):
            main(["meta", *arguments])
        assert message in capsys.readouterr().err
