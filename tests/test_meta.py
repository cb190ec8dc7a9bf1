"""The meta-evaluation of the metrics: its maps, its ground truth, its scores, its command."""

from __future__ import annotations

import pytest
import torch

from captum_infocam.benchmark.__main__ import main
from captum_infocam.benchmark.items import ShapesItems
from captum_infocam.benchmark.meta import (
    CLASS_PAIRS,
    CLASSES,
    CONFIDENCE_KEYS,
    MAPS,
    PERTURBATIONS,
    STRUCTURED,
    NoisyLogits,
    adversarial_maps,
    class_order_errors,
    confidence_table,
    meta_evaluate,
    order_kept,
    perturbed_weights,
    resilience,
    wins_table,
)
from captum_infocam.benchmark.methods import METHODS
from captum_infocam.benchmark.zoo import load_model
from captum_infocam.metrics import confidence_metrics, deletion_auc, energy_pointing_game


def test_the_adversarial_maps_are_the_documented_ones() -> None:
    batch = ShapesItems("pair", 1).load(range(2))
    best, random = torch.rand(2, 1, 8, 8), torch.rand(2, 8, 8)
    maps = adversarial_maps(batch, best, random)
    assert list(maps) == list(MAPS)
    mask = batch.mask[:, None].float()
    assert torch.equal(maps["oracle"], mask) and torch.equal(maps["inverse"], 1 - mask)
    assert torch.equal(maps["best"], best) and torch.equal(maps["random"], random[:, None])
    assert torch.equal(maps["constant"], torch.ones_like(mask))
    assert maps["near-ones"].sum((1, 2, 3)).tolist() == [mask[0].numel() - 1] * 2
    assert (maps["near-ones"][..., 0, 0] == 0).all()
    # The gaming map: the oracle's pixel order at almost uniform height.
    gaming = maps["object-on-ones"]
    assert (gaming[..., 0, 0] == 0).all()
    off_object = (mask == 0).clone()
    off_object[..., 0, 0] = False
    assert (gaming[mask == 1] == 1).all() and torch.allclose(gaming[off_object], torch.tensor(0.9))
    # Pixel noise: image-sized, seeded per item (again the same), one item unlike the other.
    noise = maps["pixel-noise"]
    assert noise.shape == mask.shape and 0 <= noise.min() and noise.max() < 1
    assert torch.equal(adversarial_maps(batch, best, random)["pixel-noise"], noise)
    assert not torch.equal(noise[0], noise[1])


def test_the_ground_truth_puts_every_ordered_map_in_one_class() -> None:
    members = [name for _, names in CLASSES for name in names]
    assert len(members) == len(set(members)) and set(members) < set(MAPS)
    assert set(STRUCTURED) <= set(members)
    assert [pair for pair in CLASS_PAIRS] == [("faithful", "blind"), ("blind", "misleading")]
    # The constant and the near-all-ones map (one pixel apart) share a class.
    classes = {name: c for c, names in CLASSES for name in names}
    assert classes["constant"] == classes["near-ones"]


def _rows(**values: list[float]) -> torch.Tensor:
    """Values ``(len(MAPS), I)`` from per-map lists, 0 for maps not given."""
    items = len(next(iter(values.values())))
    return torch.stack(
        [torch.tensor(values.get(name.replace("-", "_"), [0.0] * items)) for name in MAPS]
    )


def test_class_order_errors_count_every_cross_class_pair_and_half_the_ties() -> None:
    # One item. Faithful maps 5 and 3; blind maps 4, 1, 1, 1; the inverse 1.
    values = _rows(
        oracle=[5.0],
        best=[3.0],
        random=[4.0],
        pixel_noise=[1.0],
        constant=[1.0],
        near_ones=[1.0],
        inverse=[1.0],
        object_on_ones=[9.0],
    )
    errors = class_order_errors(values, higher_is_better=True)
    assert list(errors) == list(CLASS_PAIRS)
    # faithful > blind: 8 pairs, one wrong (best 3 < random 4).
    assert errors[("faithful", "blind")] == pytest.approx(1 / 8)
    # blind > misleading: 4 pairs, random right, three ties.
    assert errors[("blind", "misleading")] == pytest.approx(1.5 / 4)
    lower = class_order_errors(values, higher_is_better=False)  # strict orders flip
    assert lower[("faithful", "blind")] == pytest.approx(7 / 8)
    assert lower[("blind", "misleading")] == pytest.approx(2.5 / 4)


def test_order_kept_is_one_for_the_same_order_and_zero_for_the_reversed() -> None:
    clean = torch.tensor([[3.0], [2.0], [1.0]])  # three maps, one item: three strict pairs
    assert order_kept(clean, torch.stack([clean, 10 * clean])) == 1.0
    assert order_kept(clean, torch.stack([-clean, -clean])) == 0.0
    # One repeat ties everything (half each), one swaps the first two maps only.
    tied, swapped = torch.zeros(3, 1), torch.tensor([[2.0], [3.0], [1.0]])
    assert order_kept(clean, torch.stack([tied, swapped])) == pytest.approx((1.5 + 2) / 6)


def test_perturbed_weights_multiply_a_copy_and_leave_the_model_unchanged() -> None:
    model = torch.nn.Linear(400, 50)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    noisy = perturbed_weights(model, 0.1, torch.Generator().manual_seed(0))
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key])
    factor = noisy.weight / model.weight
    assert factor.mean().item() == pytest.approx(1.0, abs=0.005)
    assert factor.std().item() == pytest.approx(0.1, rel=0.02)
    again = perturbed_weights(model, 0.1, torch.Generator().manual_seed(0))
    assert torch.equal(again.weight, noisy.weight)
    assert torch.equal(perturbed_weights(model, 0.0, torch.Generator()).weight, model.weight)


def test_resilience_is_the_spread_under_noise_over_the_spread_between_maps() -> None:
    clean = torch.tensor([[0.0, 1.0], [2.0, 1.0]])  # two maps, two items: std 1 and 0
    noisy = torch.stack([clean, clean + torch.tensor([[0.2, 0.0], [0.0, 0.4]])])
    # Spread over the repeats: 0.1, 0, 0, 0.2, mean 0.075; between maps: (1 + 0) / 2.
    assert resilience(clean, noisy) == pytest.approx(0.075 / 0.5)
    assert resilience(clean, torch.stack([clean, clean])) == 0.0


def test_centred_resilience_leaves_out_noise_that_moves_every_map_alike() -> None:
    clean = torch.tensor([[0.0, 1.0], [2.0, 1.0]])
    shifts = torch.tensor([[0.3, -0.2], [0.3, -0.2]])  # one shift per item, every map
    noisy = torch.stack([clean, clean + shifts])
    assert resilience(clean, noisy) == pytest.approx(((0.15 + 0.1) / 2) / 0.5)
    assert resilience(clean, noisy, centred=True) == pytest.approx(0.0, abs=1e-6)
    # Noise on one map only is still counted: the centred signal and noise both halve.
    one_map = torch.stack([clean, clean + torch.tensor([[0.2, 0.0], [0.0, 0.0]])])
    assert resilience(clean, one_map, centred=True) == pytest.approx(0.025 / 0.5)


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
    state = {k: v.clone() for k, v in model.state_dict().items()}
    off = {"input_noise": 0.0, "score_noise": 0.0, "weight_noise": 0.0, "randomisation": 0.0}
    result = meta_evaluate(model, items, best, random, batch_size=1, repeats=2, **off)
    batch = items.load(range(2))
    maps = adversarial_maps(batch, best(batch), random(batch))
    for row, name in enumerate(MAPS):
        direct = confidence_metrics(model, batch.image, maps[name], target=batch.target)
        for key in CONFIDENCE_KEYS:
            torch.testing.assert_close(result["clean"][key][row], direct[key], atol=1e-5, rtol=0)
        deletion = deletion_auc(model, batch.image, maps[name], target=batch.target, n_steps=16)
        torch.testing.assert_close(result["clean"]["deletion"][row], deletion, atol=1e-5, rtol=0)
        energy = energy_pointing_game(maps[name], batch.mask)
        torch.testing.assert_close(result["clean"]["energy_pointing_game"][row], energy)
    for kind in PERTURBATIONS:
        for key in CONFIDENCE_KEYS:
            assert result[kind][key].shape == (2, len(MAPS), 2)
            torch.testing.assert_close(result[kind][key], result["clean"][key].expand(2, -1, -1))
    # With each perturbation on, the repeats differ from the clean values; the model is
    # left as it was.
    noisy = meta_evaluate(model, items, best, random, batch_size=2, repeats=1)
    for kind in PERTURBATIONS:
        assert not torch.equal(
            noisy[kind]["improved_average_drop"][0], noisy["clean"]["improved_average_drop"]
        ), kind
    for key, value in model.state_dict().items():
        assert torch.equal(value, state[key]), key


def _synthetic_result(seed: int) -> dict[str, dict[str, torch.Tensor]]:
    generator = torch.Generator().manual_seed(seed)
    clean = {key: torch.rand(len(MAPS), 6, generator=generator) for key in CONFIDENCE_KEYS}
    noisy = {
        kind: {
            k: v + 0.05 * torch.randn(3, *v.shape, generator=generator) for k, v in clean.items()
        }
        for kind in PERTURBATIONS
    }
    return {"clean": clean} | noisy


def _cells(table: str, split: str, label: str) -> list[str]:
    row = next(line for line in table.splitlines() if line.startswith(f"| {split} | {label} |"))
    return [cell.strip() for cell in row.strip("|").split("|")][2:]


def test_degenerate_maps_change_neither_the_noise_nor_the_signal() -> None:
    result = _synthetic_result(0)
    rows = [MAPS.index(name) for name in STRUCTURED]
    table = confidence_table({"single": result})
    expected = resilience(
        result["clean"]["average_drop"][rows], result["input"]["average_drop"][:, rows]
    )
    assert _cells(table, "single", "AD")[3] == f"{expected:.3f}"
    # Wild values on the degenerate maps, clean and perturbed: the ratios stay.
    degenerate = [MAPS.index(name) for name in MAPS if name not in STRUCTURED]
    for values in [
        result["clean"]["average_drop"],
        *(result[k]["average_drop"][:] for k in PERTURBATIONS),
    ]:
        values[..., degenerate, :] = 1e6 * torch.randn(values[..., degenerate, :].shape)
    wild = confidence_table({"single": result})
    assert _cells(wild, "single", "AD")[3:7] == _cells(table, "single", "AD")[3:7]


def test_wins_mark_the_maps_outside_the_faithful_class_that_beat_both_faithful_maps() -> None:
    # Two items; deletion (lower is better) and the energy pointing game (higher).
    deletion = _rows(oracle=[0.3, 0.3], best=[0.2, 0.2], pixel_noise=[0.1, 0.2], inverse=[0.9, 0.9])
    deletion[MAPS.index("random")] = 0.2  # ties the better faithful map: no win
    energy = _rows(oracle=[1.0, 1.0], best=[0.5, 0.7])
    lines = wins_table({"deletion": deletion, "energy_pointing_game": energy}).splitlines()
    assert lines[0] == "| map | Del | EPG |"
    cells = {line.split("|")[1].strip(): line.split("|")[2:4] for line in lines[2:]}
    assert cells["pixel-noise"][0].strip() == "0.150*"
    assert cells["random"][0].strip() == "0.200" and cells["best"][0].strip() == "0.200"
    assert cells["constant"][0].strip() == "0.000*"  # the 0 default: lowest deletion
    assert not any("*" in cells[name][1] for name in cells)  # no map beats the oracle on EPG
    assert all("*" not in cells[name][0] for name in ("oracle", "best"))


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
    map_rows = [
        line for line in out.splitlines() if line.startswith(tuple(f"| {m} |" for m in MAPS))
    ]
    assert len(map_rows) == 2 * len(MAPS)  # a wins table per split


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
