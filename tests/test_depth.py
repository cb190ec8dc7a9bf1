"""The depth study: the shattering measure on hand-computed gradients, and the command."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from captum_infocam.benchmark.__main__ import main
from captum_infocam.benchmark.depth import (
    advantage_figure,
    depth_tables,
    neighbour_gradient_correlation,
)
from captum_infocam.benchmark.sanity import CASCADES
from captum_infocam.benchmark.zoo import ARCHITECTURES, LAYERS, ROLES, STAGES, layer_name
from tests.conftest import LinearHead


class Weighted(nn.Module):
    """``layer`` (identity), then the score ``sum(A * pattern)`` for every class: the
    gradient with respect to the layer is ``pattern`` itself."""

    def __init__(self, pattern: torch.Tensor) -> None:
        super().__init__()
        self.layer = nn.Identity()
        self.pattern = pattern

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        score = (self.layer(x) * self.pattern).flatten(1).sum(1, keepdim=True)
        return score.expand(-1, 2)


def test_gradient_correlation_on_hand_computed_gradients() -> None:
    x = torch.rand(1, 1, 2, 3)
    # A pooled linear head: the same gradient at every position, no shattering.
    head = LinearHead(torch.tensor([[1.0], [2.0]]))
    assert neighbour_gradient_correlation(head, head.layer, x, torch.tensor([1])).item() == 1.0
    checkerboard = torch.tensor([[1.0, -1.0, 1.0], [-1.0, 1.0, -1.0]])
    model = Weighted(checkerboard)
    value = neighbour_gradient_correlation(model, model.layer, x, torch.tensor([0]))
    assert value.item() == -1.0
    # Rows (1, 2, 3) and (0, 0, 1): horizontal pairs 1·2 + 2·3 + 0·0 + 0·1 = 8 against
    # energies (1+4)/2 + (4+9)/2 + 0 + (0+1)/2 = 9.5; vertical pairs 1·0 + 2·0 + 3·1 = 3
    # against (1+0)/2 + (4+0)/2 + (9+1)/2 = 7.5: ρ = 11 / 17.
    pattern = torch.tensor([[1.0, 2.0, 3.0], [0.0, 0.0, 1.0]])
    model = Weighted(pattern)
    value = neighbour_gradient_correlation(model, model.layer, x, torch.tensor([0]))
    assert value.item() == pytest.approx(11 / 17)


def test_gradient_correlation_of_white_noise_is_near_zero() -> None:
    noise = torch.randn(64, 64, generator=torch.Generator().manual_seed(0))
    model = Weighted(noise)
    x = torch.rand(1, 1, 64, 64)
    value = neighbour_gradient_correlation(model, model.layer, x, torch.tensor([0]))
    assert abs(value.item()) < 0.05


def test_gradient_correlation_is_nan_without_gradient() -> None:
    model = Weighted(torch.zeros(3, 3))
    x = torch.rand(2, 1, 3, 3)
    value = neighbour_gradient_correlation(model, model.layer, x, torch.tensor([0, 1]))
    assert value.isnan().all()


@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
def test_stages_are_in_order_and_hold_the_explained_layers(arch: str) -> None:
    model = ARCHITECTURES[arch]()
    names = [name for name, _ in model.named_children()]
    assert STAGES[arch] == [name for name in names if name in STAGES[arch]]
    assert tuple(LAYERS[arch]) == ROLES
    assert set(LAYERS[arch].values()) <= set(STAGES[arch])
    assert STAGES[arch][-1] == LAYERS[arch]["last"]


def test_depth_command_prints_every_stage_and_the_paired_difference(tmp_path: Path, capsys) -> None:
    arguments = ["depth", "--arch", "resnet", "--images", "2", "--pairs", "1", "--grids", "0"]
    main([*arguments, "--methods", "InfoCAM,Grad-CAM", "--out", str(tmp_path)])
    printed = capsys.readouterr().out
    records = json.loads((tmp_path / "resnet_depth_records.json").read_text())
    assert (tmp_path / "resnet_depth.png").stat().st_size > 10_000
    assert {r["stage"] for r in records} == set(STAGES["resnet"])
    # 2 single + 2 pair items, 2 methods, 4 stages.
    assert len(records) == 4 * 2 * 4
    for stage in STAGES["resnet"]:
        assert f"| {stage} | " in printed
    assert "#### pair: InfoCAM − Grad-CAM, item by item" in printed
    last = [r for r in records if r["stage"] == "layer3"]
    assert all(r["gradient_correlation"] == pytest.approx(1.0) for r in last)
    assert "GPG" not in printed  # no grid items, no grid pointing game


def test_depth_tables_pair_items_by_key() -> None:
    def record(method: str, item: str, insertion: float) -> dict:
        base = {"split": "pair", "stage": "layer2", "gradient_correlation": 0.5, "seconds": 0.1}
        return base | {
            "method": method,
            "item": item,
            "insertion": insertion,
            "deletion": 0.1,
            "energy_pointing_game": 0.2,
            "pointing_game": 1.0,
        }

    records = [
        record("InfoCAM", "a", 0.9),
        record("InfoCAM", "b", 0.5),
        # Listed in another order: the difference pairs by item, not by position.
        record("Grad-CAM", "b", 0.4),
        record("Grad-CAM", "a", 0.6),
    ]
    table = depth_tables(records, ["layer2"], ["InfoCAM", "Grad-CAM"])
    (row,) = [line for line in table.splitlines() if line.startswith("| layer2 | 0.50 | +")]
    # Differences 0.3 and 0.1: mean 0.2, standard error 0.1; insertion won beyond it, the
    # other metrics tied (no difference).
    assert row.split(" | ")[2] == "+0.200 ± 0.100"
    assert row.endswith("| 1 / 0 |")


def test_depth_command_names_an_unknown_method(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="--methods: unknown"):
        main(["depth", "--arch", "resnet", "--methods", "InfoCAM,GradCam", "--out", str(tmp_path)])


def test_layer_names_take_roles_stages_and_submodules_and_name_the_stages() -> None:
    assert layer_name("vgg12", "middle") == "block3"
    assert layer_name("resnet18", "layer2") == "layer2"
    assert layer_name("resnet", "layer2.conv1") == "layer2.conv1"
    with pytest.raises(ValueError, match=r"stages \['stem', 'layer1', 'layer2', 'layer3'\]"):
        layer_name("resnet", "layer9")


def test_run_and_sanity_name_the_stages_of_a_bad_layer(tmp_path: Path) -> None:
    for command in (["run", "--out", str(tmp_path)], ["sanity"]):
        with pytest.raises(SystemExit, match="got 'layer9'"):
            main([*command, "--arch", "resnet", "--layer", "layer9"])


def test_the_sanity_cascade_randomises_the_classifier_then_every_stage() -> None:
    for arch, stages in STAGES.items():
        assert CASCADES[arch] == ["fc", *stages[::-1]]


def test_advantage_figure_puts_each_stage_at_its_correlation_and_paired_difference() -> None:
    def record(method: str, item: str, stage: str, rho: float, insertion: float) -> dict:
        return {
            "split": "single",
            "stage": stage,
            "gradient_correlation": rho,
            "method": method,
            "item": item,
            "insertion": insertion,
        }

    by_arch = {
        "a": [
            record("InfoCAM", "0", "s1", 0.2, 0.9),
            record("InfoCAM", "1", "s1", 0.4, 0.7),
            record("Grad-CAM", "0", "s1", 0.2, 0.6),
            record("Grad-CAM", "1", "s1", 0.4, 0.6),
        ],
        "b": [record("InfoCAM", "0", "s1", 1.0, 0.5), record("Grad-CAM", "0", "s1", 1.0, 0.5)],
    }
    (axis,) = advantage_figure(by_arch).axes
    marked = [line for line in axis.lines if line.get_marker() == "o"]  # one-object items
    points = sorted(tuple(line.get_xydata()[0]) for line in marked)
    # Network a: ρ∇ 0.3 (the items' mean), Δ 0.2 (0.3 and 0.1); network b: ρ∇ 1, Δ 0.
    assert points[0] == pytest.approx((0.3, 0.2)) and points[-1] == pytest.approx((1.0, 0.0))


def test_depth_command_names_an_unknown_network(tmp_path: Path, capsys) -> None:
    with pytest.raises(SystemExit):
        main(["depth", "--arch", "resnet,resnet50", "--out", str(tmp_path)])
    assert "argument --arch: unknown network(s) ['resnet50']" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())  # refused before any work


def test_sanity_names_an_unknown_method() -> None:
    with pytest.raises(SystemExit, match=r"--methods: unknown \['GradCam'\]"):
        main(["sanity", "--methods", "InfoCAM,GradCam"])
