"""The benchmark command: shipped models, the run, sharding, real data, training, sanity."""

from __future__ import annotations

import argparse
import csv
import importlib.util
import json
import math
import os
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
import torch
import torchvision
from captum.attr import LayerGradCam
from matplotlib.backends.backend_agg import FigureCanvasAgg

from captum_infocam import DSIBSettings, InfoCAM
from captum_infocam.benchmark.__main__ import main
from captum_infocam.benchmark.data import CLASSES, ShapesDataset
from captum_infocam.benchmark.items import Batch, GridItems, ShapesItems
from captum_infocam.benchmark.methods import DEFAULT_METHODS, METHODS, SLOW_METHODS
from captum_infocam.benchmark.run import (
    COLUMN_HELP,
    METRICS,
    add_arguments,
    draw_figure,
    evaluate,
    identical_rows,
    infocam_settings,
    legend,
    markdown_table,
    summarise,
)
from captum_infocam.benchmark.sanity import correlation_cell, rank_correlation
from captum_infocam.benchmark.sweep import BASE, CONFIGS, paired_table
from captum_infocam.benchmark.train import accuracy, train
from captum_infocam.benchmark.zoo import ARCHITECTURES, LAYERS, load_model, weights_path
from captum_infocam.metrics import (
    confidence_metrics,
    deletion_auc,
    energy_pointing_game,
    grid_pointing_game,
    insertion_auc,
    pointing_game,
    road_least_relevant_first,
    road_most_relevant_first,
)

pytestmark = pytest.mark.filterwarnings("ignore::captum_infocam.CollapsedFitWarning")
ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
def test_shipped_networks_are_accurate_and_need_the_object(arch: str) -> None:
    model = load_model(arch)
    assert accuracy(model, ShapesDataset("test", 300)) >= 0.95
    chance = 1 / len(CLASSES)
    assert accuracy(model, ShapesDataset("test", 300, draw_objects=False)) < chance + 0.1
    for role, name in LAYERS[arch].items():
        assert isinstance(model.get_submodule(name), torch.nn.Module), role


@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
def test_default_fits_of_the_shipped_networks_do_not_collapse(arch: str) -> None:
    model = load_model(arch)
    for split in ("single", "pair"):
        batch = ShapesItems(split, images=3).load(range(3))
        for role, name in LAYERS[arch].items():
            cam = InfoCAM(model, model.get_submodule(name))
            cam.attribute(batch.image, target=batch.target)
            assert not cam.last_fit.collapsed.any(), (split, role)


@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
def test_shipped_networks_recognise_every_cell_of_a_grid(arch: str) -> None:
    # The grid split is a fair test only if each cell's class is recognisable.
    model = load_model(arch)
    items = GridItems(25, seed=0)
    pictures, labels, _ = zip(*(items.grid(g) for g in range(25)), strict=True)
    cells = torch.stack(pictures).unfold(2, 64, 64).unfold(3, 64, 64)  # (25, 3, 2, 2, 64, 64)
    cells = cells.permute(0, 2, 3, 1, 4, 5).reshape(100, 3, 64, 64)  # row by row
    labels = torch.cat(labels)
    with torch.no_grad():
        assert (model(cells).argmax(1) == labels).float().mean() >= 0.95


def test_training_is_reproducible(tmp_path: Path) -> None:
    kwargs = dict(epochs=1, images_per_epoch=64, batch_size=32, val_images=16, show_progress=False)
    first = train("resnet", out=tmp_path / "a.pt", **kwargs)
    train("resnet", out=tmp_path / "b.pt", **kwargs)
    a = torch.load(tmp_path / "a.pt", weights_only=True)
    b = torch.load(tmp_path / "b.pt", weights_only=True)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    reloaded = load_model("resnet", tmp_path / "a.pt")
    assert all(torch.equal(v, a[k]) for k, v in reloaded.state_dict().items())
    val = ShapesDataset("val", 16)
    assert first.val_accuracy == accuracy(first.model, val) == accuracy(reloaded, val)


@pytest.mark.slow
def test_training_learns_the_shapes() -> None:
    # 6,000 images (a twelfth of the shipped networks' training) lift the held-out
    # accuracy from chance, 1/6, to 0.37 on this machine; a training that does not
    # learn stays at chance.
    result = train("vgg", epochs=1, images_per_epoch=6_000, val_images=300, show_progress=False)
    assert result.val_accuracy >= 0.27


@pytest.mark.parametrize("name", list(METHODS))
def test_every_method_gives_one_map_per_item(name: str) -> None:
    model = load_model("resnet")
    batch = ShapesItems("pair", images=2).load(range(4))
    maps = METHODS[name](model, model.layer3, DSIBSettings(n_samples=2, steps=2))(batch)
    assert maps.shape[0] == 4 and maps.dim() in (3, 4)
    assert torch.isfinite(maps).all()


def test_single_fit_entry_is_infocam_without_the_contrast() -> None:
    model = load_model("resnet")
    batch = ShapesItems("pair", images=1).load(range(2))
    settings = DSIBSettings(n_samples=2, steps=3)
    single = METHODS["InfoCAM (single fit)"](model, model.layer3, settings)(batch)
    cam = InfoCAM(model, model.layer3)
    expected = cam.attribute(
        batch.image, target=batch.target, settings=replace(settings, contrast="none")
    )
    torch.testing.assert_close(single, expected)
    assert not torch.allclose(single, METHODS["InfoCAM"](model, model.layer3, settings)(batch))


def test_sweep_base_is_infocams_default_fit() -> None:
    model = load_model("vgg")
    batch = ShapesItems("pair", images=1).load(range(2))
    base = METHODS["InfoCAM"](model, model.block4, BASE)(batch)
    default = InfoCAM(model, model.block4).attribute(batch.image, target=batch.target)
    torch.testing.assert_close(base, default, rtol=0, atol=0)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--arch", "resnet50"], "argument --arch: invalid choice: 'resnet50'"),
        (["--layers", "last,top"], "argument --layers: unknown layer role(s) ['top']"),
        (["--configs", "base,beta=7"], "argument --configs: unknown configuration(s) ['beta=7']"),
    ],
)
def test_sweep_refuses_unknown_names_before_any_work(
    argv: list[str], message: str, monkeypatch, capsys
) -> None:
    def no_work(arch: str) -> None:
        pytest.fail("work started")

    monkeypatch.setattr("captum_infocam.benchmark.sweep.load_model", no_work)
    with pytest.raises(SystemExit):
        main(["sweep", *argv])
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("travel", [7, 5, 3])
def test_sweep_travel_configs_set_how_far_a_gate_logit_can_move(travel: int) -> None:
    settings = replace(BASE, **CONFIGS[f"travel={travel}"]).resolved()
    assert settings.steps == BASE.resolved().steps
    assert settings.lr * settings.steps == pytest.approx(travel)


def test_paired_table_gives_differences_to_the_base_item_by_item() -> None:
    ramp = torch.arange(4.0).view(1, 2, 2)

    def record(item: int, deletion: float, map_: torch.Tensor) -> dict:
        return {"split": "pair", "item": item, "deletion": deletion, "map": map_}

    by_config = {
        "base": [record(0, 0.10, ramp), record(1, 0.30, ramp)],
        # Listed in another order: rows pair by item, not by position.
        "same maps": [record(1, 0.30, ramp), record(0, 0.10, ramp)],
        "reversed": [record(0, 0.20, -ramp), record(1, 0.60, -ramp)],
    }
    rows = {
        line.split(" | ")[0][2:]: line.split(" | ")
        for line in paired_table(by_config).splitlines()[2:]
    }
    deletion = 3 + [m.key for m in METRICS].index("deletion")
    assert rows["same maps"][2] == "1.000" and rows["same maps"][deletion] == "+0.000 ± 0.000"
    # Differences 0.10 and 0.30: mean 0.20, standard error 0.10.
    assert rows["reversed"][2] == "-1.000" and rows["reversed"][deletion] == "+0.200 ± 0.100"
    assert rows["reversed"][3] == "–", "a metric the records lack is shown as missing"


def test_random_baseline_depends_only_on_the_item() -> None:
    model = load_model("resnet")
    explain = METHODS["Random"](model, model.layer3)
    items = ShapesItems("single", images=3)
    together = explain(items.load(range(3)))
    alone = explain(items.load([2]))
    assert torch.equal(together[2], alone[0]) and not torch.equal(together[0], together[1])


def test_grid_items_are_scored_with_the_grid_pointing_game() -> None:
    model = load_model("resnet")
    explainers = {"Centre": METHODS["Centre"](model, model.layer3)}
    device = torch.device("cpu")
    records = evaluate(model, GridItems(2), explainers, 4, 3, 4, device)
    records += evaluate(model, ShapesItems("single", 2), explainers, 2, 3, 4, device)
    grid = [r["grid_pointing_game"] for r in records if r["split"] == "grid"]
    # A Gaussian at the centre of a 2 x 2 grid puts a quarter of itself in each cell.
    assert len(grid) == 8 and grid == pytest.approx([0.25] * 8, abs=1e-6)
    summary = summarise(records)
    assert summary["grid"]["Centre"]["grid_pointing_game"][0] == pytest.approx(0.25, abs=1e-6)
    assert math.isnan(summary["single"]["Centre"]["grid_pointing_game"][0])


def test_table_marks_the_best_of_each_column_by_its_direction() -> None:
    def entry(ad: float, ins: float) -> dict:
        values = {"seconds": [0.1, 0.0]}
        for metric in METRICS:
            values[metric.key] = [0.5, 0.1]
        # The grid pointing game is scored on grid items only: NaN elsewhere.
        return values | {
            "average_drop": [ad, 0.01],
            "insertion": [ins, 0.01],
            "grid_pointing_game": [float("nan"), float("nan")],
        }

    table = markdown_table({"a": entry(0.2, 0.9), "b": entry(0.1, 0.8)}, wide=True).splitlines()
    assert "**0.100 ± 0.010**" in table[3] and "**0.900 ± 0.010**" in table[2]
    assert "**0.200" not in table[2] and "**0.800" not in table[3]
    # No method is ahead by more than its error on the other columns: no bold there.
    assert table[2].count("**") == table[3].count("**") == 2
    # The grid pointing game, scored on no item of this split, is left out.
    assert "GPG" not in table[0] and "nan" not in table[2] and "–" not in table[2]


def test_table_bolds_a_best_only_beyond_the_standard_errors() -> None:
    def entry(insertion: float, error: float) -> dict:
        values = {"seconds": [0.1, 0.0]} | {m.key: [0.5, 0.1] for m in METRICS}
        return values | {"insertion": [insertion, error]}

    close = markdown_table({"a": entry(0.90, 0.02), "b": entry(0.89, 0.005)}, wide=True)
    assert "**" not in close  # 0.01 apart, within a's 0.02
    clear = markdown_table({"a": entry(0.90, 0.004), "b": entry(0.89, 0.005)}, wide=True)
    assert "**0.900 ± 0.004**" in clear.splitlines()[2]
    # The default table marks the same best with a star, and no other cell.
    assert markdown_table({"a": entry(0.90, 0.02), "b": entry(0.89, 0.005)}).count("*") == 0
    compact = markdown_table({"a": entry(0.90, 0.004), "b": entry(0.89, 0.005)}).splitlines()
    assert "| .900* |" in compact[2] and compact[2].count("*") == 1 and "*" not in compact[3]


def test_the_default_table_fits_120_columns_and_wide_adds_the_errors() -> None:
    # The worst case: every default method, a grid split (every column), and one method
    # the clear best of every column.
    def entry(value: float) -> dict:
        return {"seconds": [12.3456, 0.1]} | {
            m.key: [value if m.higher_is_better else 1 - value, 0.001] for m in METRICS
        }

    methods = [*DEFAULT_METHODS, "Score-CAM"]
    summary = {name: entry(0.1 * (1 + position)) for position, name in enumerate(methods)}
    compact = markdown_table(summary).splitlines()
    assert max(len(line) for line in compact) <= 120
    assert compact[-1].count("*") == len(METRICS)  # the last method is best on every column
    assert "±" not in "".join(compact)
    wide = markdown_table(summary, wide=True).splitlines()
    assert all(line.count("±") == len(METRICS) for line in wide[2:])
    assert max(len(line) for line in wide) > 120
    assert "--wide" in legend() and "±" in legend(wide=True)


def test_identical_rows_are_named_with_the_reason_for_xgrad_cam() -> None:
    def entry(value: float, seconds: float) -> dict:
        return {"seconds": [seconds, 0.0]} | {m.key: [value, 0.01] for m in METRICS}

    summary = {
        "Grad-CAM": entry(0.5, 0.1),
        "XGrad-CAM": entry(0.5 + 1e-5, 0.3),  # the same as printed, another time
        "InfoCAM": entry(0.6, 0.2),
    }
    (note,) = identical_rows(summary)
    assert note.startswith("Grad-CAM and XGrad-CAM score the same on every metric: ")
    assert "global average pooling" in note
    assert identical_rows(summary | {"XGrad-CAM": entry(0.501, 0.3)}) == []
    assert identical_rows({"A": entry(0.5, 0.1), "B": entry(0.5, 0.1)}) == [
        "A and B score the same on every metric"
    ]


def test_progress_moves_within_a_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    import captum_infocam.benchmark.run as run_module

    shown: list[float] = []

    def recording(progress, items: float) -> None:
        shown.append(items)
        run_module_advance(progress, items)

    run_module_advance = run_module.advance
    monkeypatch.setattr(run_module, "advance", recording)
    model = load_model("resnet")
    explainers = {"Grad-CAM": METHODS["Grad-CAM"](model, model.layer3)}
    evaluate(model, ShapesItems("single", 6), explainers, 4, 2, 4, torch.device("cpu"))
    # Batches of 4 and 2 items: the maps and each of the 7 metric calls move the bar, which
    # ends each batch on its whole number of items.
    assert len(shown) == 16
    assert shown[:8] == pytest.approx([4 * k / 8 for k in range(1, 9)])
    assert shown[7] == 4 and shown[-1] == 6
    assert shown == sorted(shown)


def _run_command(tmp_path: Path, processes: int) -> list[dict]:
    out = tmp_path / f"out{processes}"
    arguments = [
        "-m",
        "captum_infocam.benchmark",
        "run",
        "--images",
        "5",
        "--pairs",
        "2",
        "--grids",
        "1",
        "--batch-size",
        "2",
        "--n-steps",
        "3",
        "--road-fractions",
        "0.5",
        "--no-figure",
        "--threads",
        "1",
        "--methods",
        "InfoCAM,Grad-CAM,Grad-CAM++,Random",
        "--infocam",
        "n_samples=3",
        "steps=3",
        "--out",
        str(out),
    ]
    if processes > 1:
        arguments = [
            "-m",
            "torch.distributed.run",
            "--standalone",  # a free port, not a fixed one another run may still hold
            f"--nproc_per_node={processes}",
            *arguments,
        ]
    environment = os.environ | {"OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    completed = subprocess.run(
        [sys.executable, *arguments],
        cwd=tmp_path,
        env=environment,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert f"{processes} process(es)" in completed.stdout
    records = json.loads((out / "resnet_layer3_records.json").read_text())
    return [{k: v for k, v in record.items() if k != "seconds"} for record in records]


def test_two_processes_give_the_same_records_as_one(tmp_path: Path) -> None:
    one = _run_command(tmp_path, 1)
    two = _run_command(tmp_path, 2)
    assert len(one) == (5 + 2 * 2 + 1 * 4) * 4
    assert one == two


def test_run_prints_the_table_and_writes_the_figure(tmp_path: Path, capsys) -> None:
    main(
        [
            "run",
            "--images",
            "2",
            "--pairs",
            "1",
            "--grids",
            "1",
            "--batch-size",
            "2",
            "--n-steps",
            "2",
            "--road-fractions",
            "0.5",
            "--infocam",
            "n_samples=2",
            "steps=2",
            "--out",
            str(tmp_path),
        ]
    )
    printed = capsys.readouterr().out
    for method in DEFAULT_METHODS:
        assert f"| {method} |" in printed
    assert "| InfoCAM (single fit) |" not in printed  # compared on request only
    assert "### single (2 items)" in printed and "### pair (2 items)" in printed
    assert "### grid (4 items)" in printed
    assert (tmp_path / "resnet_layer3_figure.png").stat().st_size > 10_000
    with open(tmp_path / "resnet_layer3_records.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 8 * len(DEFAULT_METHODS)
    # Only grid rows carry the grid pointing game; the others leave its cell empty.
    assert {r["split"] for r in rows if r["grid_pointing_game"]} == {"grid"}
    assert "| Score-CAM |" not in printed  # slow: only when --methods names it
    assert printed.index("### grid") < printed.index(legend())  # the legend under the tables


def test_run_says_what_it_measures_before_it_starts(
    tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    printed_before_the_first_map: list[str] = []
    centre = METHODS["Centre"]

    def watched(model, layer, settings):
        explain = centre(model, layer, settings)

        def first_call_reads_the_output(batch):
            if not printed_before_the_first_map:
                printed_before_the_first_map.append(capsys.readouterr().out)
            return explain(batch)

        return first_call_reads_the_output

    monkeypatch.setitem(METHODS, "Centre", watched)
    main(
        [
            *("run", "--images", "2", "--pairs", "1", "--grids", "1", "--n-steps", "2"),
            *("--no-figure", "--methods", "Centre,Grad-CAM", "--infocam", "steps=2"),
            *("--out", str(tmp_path)),
        ]
    )
    (header,) = printed_before_the_first_map
    assert header.splitlines() == [
        "Benchmark: resnet, shipped with the package (resnet.pt), explained at layer layer3",
        "Splits:",
        "  single: 2 items, 2 one-object images, one item each",
        "  pair: 2 items, 1 two-object image, each explained for both of its classes",
        "  grid: 4 items, 1 grid of 2 x 2 one-object images, each explained for every cell's class",
        "Methods: Centre, Grad-CAM",
        "  not run (slow on a CPU): Score-CAM, Ablation-CAM; add with "
        "--methods Centre,Grad-CAM,Score-CAM,Ablation-CAM",
        "InfoCAM settings: steps=2",
        "Metrics: AD, AI, AG, iAD, iAI, Ins, Del, MoRF, LeRF, EPG, PG, GPG, explained under the "
        "tables (definitions: docs/metrics.md); insertion and deletion in 2 steps, "
        "pointing-game tolerance 4 px",
        f"Device: cpu, 1 process(es), {torch.get_num_threads()} thread(s) each",
        f"Output folder: {tmp_path}",
    ]
    progress = capsys.readouterr().err  # a bar per split and method, named
    for bar in ("single · Centre", "pair · Centre", "grid · Centre", "grid · Grad-CAM"):
        assert f"{bar}: 100%" in progress


def test_legend_explains_every_column_of_the_table() -> None:
    lines = legend().splitlines()
    labels = ["s/img", *(m.label for m in METRICS)]
    assert [line.split()[0] for line in lines[: len(labels)]] == labels
    # A new column needs its line here: the table's columns and the legend's keys agree.
    assert list(COLUMN_HELP) == ["seconds", *(m.key for m in METRICS)]
    assert all(len(line) <= 100 for line in lines)
    assert lines[len(labels)].startswith("↑ higher is better, ↓ lower is better")
    assert lines[-1].endswith("Definitions: docs/metrics.md")
    assert (ROOT / "docs" / "metrics.md").exists()


def test_the_figure_shows_the_maps_that_were_scored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import captum_infocam.visualization as visualization

    drawn: dict = {}
    original = visualization.compare_methods

    def recording(images, maps, masks=None, **kwargs):
        drawn.update(images=images, maps=maps, masks=masks, titles=kwargs["row_titles"])
        return original(images, maps, masks, **kwargs)

    monkeypatch.setattr(visualization, "compare_methods", recording)
    calls = {"InfoCAM": 0, "Grad-CAM": 0}
    sizes: dict[str, list[int]] = {name: [] for name in calls}
    for name in calls:

        def counted(model, layer, settings, factory=METHODS[name], name=name):
            explain = factory(model, layer, settings)

            def call(batch):
                calls[name] += 1
                sizes[name].append(len(batch.keys))
                return explain(batch)

            return call

        monkeypatch.setitem(METHODS, name, counted)
    main(
        [
            *("run", "--images", "1", "--pairs", "1", "--grids", "1", "--batch-size", "2"),
            *("--n-steps", "2", "--methods", "InfoCAM,Grad-CAM"),
            *("--infocam", "n_samples=2", "steps=2", "--out", str(tmp_path)),
        ]
    )
    # Once per batch (1 single, 1 pair, 2 grid), each split after an untimed warm-up on one
    # item: the figure ran no method again.
    assert calls == {"InfoCAM": 7, "Grad-CAM": 7}
    assert sizes["InfoCAM"] == [1, 1, 1, 2, 1, 2, 2]
    # The example: the first grid, explained for the class of each of its cells.
    grid = GridItems(1).load(range(4))
    assert torch.equal(drawn["images"], grid.image) and torch.equal(drawn["masks"], grid.mask)
    names = [list(CLASSES)[int(t)] for t in grid.target]
    assert drawn["titles"] == [f"grid/0: for {name}" for name in names]
    model = load_model("resnet")
    direct = InfoCAM(model, model.layer3).attribute(
        grid.image, target=grid.target, settings=DSIBSettings(n_samples=2, steps=2)
    )
    torch.testing.assert_close(drawn["maps"]["InfoCAM"], direct)
    records = json.loads((tmp_path / "resnet_layer3_records.json").read_text())
    assert all("map" not in r for r in records)
    for name, maps in drawn["maps"].items():
        rows = [r for r in records if r["method"] == name and r["split"] == "grid"]
        assert [r["item"] for r in rows] == grid.keys
        scored = [r["grid_pointing_game"] for r in rows]
        assert grid_pointing_game(maps, grid.cell).tolist() == pytest.approx(scored, rel=1e-6)
        scored = [r["energy_pointing_game"] for r in rows]
        assert energy_pointing_game(maps, grid.mask).tolist() == pytest.approx(scored, rel=1e-6)
    assert (tmp_path / "resnet_layer3_figure.png").exists()


def test_the_figure_title_fits_a_figure_of_two_methods() -> None:
    grid = GridItems(1)
    indices = list(range(4))
    records = [
        {"item": key, "method": method, "map": torch.rand(1, 8, 8)}
        for key in grid.load(indices).keys
        for method in ("InfoCAM", "Grad-CAM")
    ]
    figure = draw_figure(grid, indices, records)
    renderer = FigureCanvasAgg(figure).get_renderer()
    figure.draw(renderer)
    title = figure._suptitle.get_window_extent(renderer)
    frame = figure.bbox
    assert frame.x0 <= title.x0 and title.x1 <= frame.x1 and title.y1 <= frame.y1
    assert "the outline is the explained class's object" in " ".join(
        figure._suptitle.get_text().split()
    )


def test_slow_methods_run_only_when_named(tmp_path: Path, capsys) -> None:
    assert "Score-CAM" in SLOW_METHODS and not set(SLOW_METHODS) & set(DEFAULT_METHODS)
    assert set(METHODS) - set(DEFAULT_METHODS) == {*SLOW_METHODS, "InfoCAM (single fit)"}
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    assert parser.parse_args([]).methods == DEFAULT_METHODS
    main(
        [
            *("run", "--images", "1", "--pairs", "0", "--grids", "0", "--n-steps", "2"),
            "--no-figure",
            *("--methods", "Grad-CAM,Score-CAM,Ablation-CAM", "--out", str(tmp_path)),
        ]
    )
    printed = capsys.readouterr().out
    assert "| Score-CAM |" in printed and "| Ablation-CAM |" in printed
    assert "not run" not in printed
    records = json.loads((tmp_path / "resnet_layer3_records.json").read_text())
    assert [r["method"] for r in records] == ["Grad-CAM", "Score-CAM", "Ablation-CAM"]


def test_run_records_equal_direct_metric_calls(tmp_path: Path) -> None:
    main(
        [
            "run",
            "--images",
            "3",
            "--pairs",
            "1",
            "--grids",
            "1",
            "--batch-size",
            "2",
            "--n-steps",
            "3",
            "--road-fractions",
            "0.3,0.6",
            "--tolerance",
            "2",
            "--methods",
            "Grad-CAM,Centre",
            "--no-figure",
            "--out",
            str(tmp_path),
        ]
    )
    records = json.loads((tmp_path / "resnet_layer3_records.json").read_text())
    summary = json.loads((tmp_path / "resnet_layer3_summary.json").read_text())
    model = load_model("resnet")
    sources = [ShapesItems("single", 3), ShapesItems("pair", 1), GridItems(1)]
    assert list(summary) == ["single", "pair", "grid"]
    for source in sources:
        split = source.split
        batch = source.load(range(len(source)))
        maps = LayerGradCam(model, model.layer3).attribute(
            batch.image, target=batch.target, relu_attributions=True
        )
        expected = confidence_metrics(model, batch.image, maps, target=batch.target) | {
            "insertion": insertion_auc(model, batch.image, maps, target=batch.target, n_steps=3),
            "deletion": deletion_auc(model, batch.image, maps, target=batch.target, n_steps=3),
            "road_most_relevant_first": road_most_relevant_first(
                model, batch.image, maps, target=batch.target, fractions=(0.3, 0.6)
            ),
            "road_least_relevant_first": road_least_relevant_first(
                model, batch.image, maps, target=batch.target, fractions=(0.3, 0.6)
            ),
            "energy_pointing_game": energy_pointing_game(maps, batch.mask),
            "pointing_game": pointing_game(maps, batch.mask, tolerance=2),
        }
        rows = [r for r in records if r["split"] == split and r["method"] == "Grad-CAM"]
        assert [(r["item"], r["target"]) for r in rows] == list(
            zip(batch.keys, batch.target.tolist(), strict=True)
        )
        if split == "grid":
            expected["grid_pointing_game"] = grid_pointing_game(maps, batch.cell)
            assert len(rows) == 4 and len(set(batch.target.tolist())) == 4
        else:
            # The grid pointing game is scored on grid items only (a NaN mean elsewhere).
            assert all("grid_pointing_game" not in r for r in rows)
            assert math.isnan(summary[split]["Grad-CAM"]["grid_pointing_game"][0])
        scored = [m for m in METRICS if m.key in expected]
        assert {m.key for m in scored} == set(expected)
        for metric in scored:
            got = torch.tensor([r[metric.key] for r in rows])
            torch.testing.assert_close(got, expected[metric.key], rtol=1e-5, atol=1e-6)
            mean = summary[split]["Grad-CAM"][metric.key][0]
            assert mean == pytest.approx(expected[metric.key].mean().item(), rel=1e-5, abs=1e-6)


def test_on_pairs_the_object_mask_beats_the_random_map_on_every_metric() -> None:
    model = load_model("resnet")
    explainers = {
        "mask": lambda batch: batch.mask[:, None].float(),
        "Random": METHODS["Random"](model, model.layer3),
    }
    device = torch.device("cpu")
    records = evaluate(
        model, ShapesItems("pair", 3), explainers, 4, 8, 4, device, road_fractions=(0.5,)
    )
    records += evaluate(model, GridItems(1), explainers, 4, 8, 4, device, road_fractions=(0.5,))
    summary = summarise(records)
    for metric in METRICS:
        if metric.key == "road_least_relevant_first":
            # ROAD LeRF imputes everything but the kept pixels from them: a bare object mask
            # keeps no background around the shape, whose contour is the class, and loses to
            # random blocks (docs/metrics.md).
            continue
        split = "grid" if metric.key == "grid_pointing_game" else "pair"  # scored on grids only
        mask = summary[split]["mask"][metric.key][0]
        random = summary[split]["Random"][metric.key][0]
        assert (mask > random) if metric.higher_is_better else (mask < random), metric.key


def test_real_data_plugs_in_as_an_image_folder_with_boxes(tmp_path: Path, capsys) -> None:
    from PIL import Image

    dataset = ShapesDataset("test", 4)
    boxes = {}
    for index in range(4):
        item = dataset[index]
        name = f"{list(CLASSES)[int(item.labels[0])]}/{index}.png"
        (tmp_path / "images" / name).parent.mkdir(parents=True, exist_ok=True)
        picture = (item.image.permute(1, 2, 0) * 255).byte().numpy()
        Image.fromarray(picture).resize((96, 96)).save(tmp_path / "images" / name)
        scaled = (item.boxes[0] * 1.5).tolist()
        boxes[name] = {"boxes": [scaled], "label": int(item.labels[0])}
    (tmp_path / "boxes.json").write_text(json.dumps(boxes))
    torch.manual_seed(0)
    torch.save(torchvision.models.resnet18(num_classes=6).state_dict(), tmp_path / "weights.pt")
    main(
        [
            "run",
            "--image-folder",
            str(tmp_path / "images"),
            "--boxes",
            str(tmp_path / "boxes.json"),
            "--model",
            "resnet18",
            "--weights",
            str(tmp_path / "weights.pt"),
            "--num-classes",
            "6",
            "--layer",
            "layer4",
            "--image-size",
            "64",
            "--methods",
            "InfoCAM,Grad-CAM,Centre",
            "--infocam",
            "n_samples=2",
            "steps=2",
            "prior=dataset",
            "--n-steps",
            "2",
            "--road-fractions",
            "0.5",
            "--out",
            str(tmp_path / "out"),
        ]
    )
    assert "### folder (4 items)" in capsys.readouterr().out
    records = json.loads((tmp_path / "out" / "resnet18_layer4_records.json").read_text())
    assert {r["item"] for r in records} == set(boxes)
    assert {r["target"] for r in records} == {b["label"] for b in boxes.values()}
    assert (tmp_path / "out" / "resnet18_layer4_figure.png").exists()


def test_folder_boxes_become_the_object_masks(tmp_path: Path) -> None:
    from PIL import Image

    from captum_infocam.benchmark.items import FolderItems

    (tmp_path / "a").mkdir()
    Image.new("RGB", (100, 50)).save(tmp_path / "a" / "x.png")
    (tmp_path / "boxes.json").write_text(json.dumps({"a/x.png": {"boxes": [[0, 0, 50, 25]]}}))
    batch: Batch = FolderItems(tmp_path, tmp_path / "boxes.json", image_size=20).load([0])
    expected = torch.zeros(1, 20, 20, dtype=torch.bool)
    expected[0, :10, :10] = True
    assert torch.equal(batch.mask, expected) and batch.target.tolist() == [0]


def test_folder_images_keep_their_proportions(tmp_path: Path) -> None:
    from PIL import Image, ImageDraw

    from captum_infocam.benchmark.items import FolderItems

    (tmp_path / "a").mkdir()
    picture = Image.new("RGB", (100, 50))  # twice as wide as high, a white 20 px square
    ImageDraw.Draw(picture).rectangle([40, 10, 59, 29], fill="white")
    picture.save(tmp_path / "a" / "x.png")
    (tmp_path / "boxes.json").write_text(json.dumps({"a/x.png": {"boxes": [[40, 10, 60, 30]]}}))
    batch = FolderItems(tmp_path, tmp_path / "boxes.json", image_size=20).load([0])
    # Shorter side to 20 px (0.4 times), then the centre 20 x 20 (columns 10 to 29 of 40):
    # the square stays a square, 8 x 8 px at rows 4-11 and columns 6-13. Stretching the
    # image to 20 x 20 would have made it 4 px wide and 8 px high.
    white = batch.image[0].mean(0) > 0.5
    rows, columns = white.any(1).nonzero().flatten(), white.any(0).nonzero().flatten()
    assert (rows.min(), rows.max(), columns.min(), columns.max()) == (4, 11, 6, 13)
    assert torch.equal(batch.mask[0], white)  # the box followed the image


def test_rank_correlation_matches_its_definition() -> None:
    a = torch.tensor([[1.0, 2.0, 3.0, 4.0], [1.0, 1.0, 1.0, 1.0]])
    b = torch.tensor([[10.0, 30.0, 20.0, 40.0], [1.0, 2.0, 3.0, 4.0]])
    correlation = rank_correlation(a, b)
    # ranks 0,1,2,3 vs 0,2,1,3: 1 - 6 * 2 / (4 * 15) = 0.8
    assert correlation[0].item() == pytest.approx(0.8)
    assert torch.isnan(correlation[1])


def test_sanity_cells_count_the_images_with_a_correlation_and_the_zero_maps() -> None:
    correlation = torch.tensor([0.2, math.nan, 0.4, math.nan])
    maps = torch.tensor([[1.0, 0.0], [0.0, 0.0], [0.0, 2.0], [3.0, 3.0]])
    # Two NaN-free correlations (mean 0.3); of the two constant maps one is zero.
    assert correlation_cell(correlation, maps) == "0.300 (n = 2; 1 zero)"
    assert correlation_cell(correlation, maps + 1.0) == "0.300 (n = 2)"
    all_zero = correlation_cell(torch.full((2,), math.nan), torch.zeros(2, 3))
    assert all_zero == "all constant (2 zero)"


def test_sanity_check_runs(capsys) -> None:
    main(["sanity", "--images", "4", "--methods", "Grad-CAM"])
    printed = capsys.readouterr().out
    assert "| fc |" in printed and "| stem |" in printed


def test_weights_for_another_number_of_classes_name_num_classes(tmp_path: Path) -> None:
    torch.save(torchvision.models.resnet18(num_classes=6).state_dict(), tmp_path / "weights.pt")
    arguments = ["run", "--image-folder", str(tmp_path / "missing"), "--boxes", "b.json"]
    arguments += ["--model", "resnet18", "--weights", str(tmp_path / "weights.pt")]
    expected = r"fc\.weight \(6, 512\) \(the model has \(1000, 512\)\).*with --num-classes"
    with pytest.raises(SystemExit, match=expected):
        main(arguments)  # --num-classes defaults to 1000; the folder is never read


@pytest.mark.parametrize(
    ("pairs", "message"),
    [
        (["betta=2"], "--infocam: unknown setting 'betta'; choose from"),
        (["beta=abc"], "--infocam: beta must be a real number, got str"),
        (["steps=0"], "--infocam: steps must be >= 1, got 0"),
        (["beta"], "--infocam takes key=value pairs, got 'beta'"),
    ],
)
def test_bad_infocam_settings_stop_the_run_before_it_starts(
    pairs: list[str], message: str, tmp_path: Path, capsys
) -> None:
    with pytest.raises(SystemExit, match=message):
        main(["run", "--images", "1", "--out", str(tmp_path), "--infocam", *pairs])
    assert "Benchmark:" not in capsys.readouterr().out  # nothing started


def test_infocam_settings_parse_numbers_dtypes_and_the_dataset_prior() -> None:
    settings, dataset_prior = infocam_settings(
        ["beta=2", "steps=3", "readout=bits", "autocast_dtype=bfloat16", "seed=None"]
    )
    assert settings == DSIBSettings(
        beta=2.0, steps=3, readout="bits", autocast_dtype=torch.bfloat16, seed=None
    )
    assert not dataset_prior
    settings, dataset_prior = infocam_settings(["prior=dataset"])
    assert dataset_prior and settings.prior is None


def test_timing_leaves_out_a_methods_first_call() -> None:
    # A method whose first call pays a one-off cost (InfoCAM traces the model there).
    model = load_model("resnet")
    centre = METHODS["Centre"](model, model.layer3)
    calls: list[Batch] = []

    def slow_to_start(batch: Batch) -> torch.Tensor:
        calls.append(batch)
        if len(calls) == 1:
            time.sleep(0.5)
        return centre(batch)

    records = evaluate(
        model, ShapesItems("single", 2), {"Centre": slow_to_start}, 1, 2, 4, torch.device("cpu")
    )
    assert len(records) == 2 and all(r["seconds"] < 0.25 for r in records)


def test_speed_script_refuses_a_skip_name_it_does_not_time() -> None:
    # "Score-CAM" is the benchmark's name; the speed script times "ScoreCAM (grad-cam)".
    result = subprocess.run(
        [
            *(sys.executable, "timing/speed.py", "--setups", "resnet50/layer4", "--batches", "1"),
            *("--device", "cpu", "--skip", "Score-CAM"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 2 and "| resnet50/layer4 |" not in result.stdout
    assert "--skip: unknown ['Score-CAM']; the timed methods are ['LayerGradCam (captum)'" in (
        result.stderr
    )
    assert "'ScoreCAM (grad-cam)'" in result.stderr


def test_pytorch_grad_cam_methods_without_it_stop_the_run_naming_the_extra(
    tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *args: None if name == "pytorch_grad_cam" else real(name, *args),
    )
    message = (
        r"--methods: Grad-CAM\+\+, Layer-CAM, XGrad-CAM come from pytorch-grad-cam, which is "
        r"not installed: pip install 'captum-infocam\[bench\]', or leave them out "
        r"\(--methods InfoCAM,Grad-CAM,Centre,Random\)"
    )
    with pytest.raises(SystemExit, match=message):
        main(["run", "--out", str(tmp_path)])  # the default methods
    assert "Benchmark:" not in capsys.readouterr().out  # nothing started
    # Without those methods the run needs no extra.
    main(
        [
            *("run", "--images", "1", "--pairs", "0", "--grids", "0", "--no-figure"),
            *("--methods", "Grad-CAM,Centre", "--out", str(tmp_path)),
        ]
    )


def test_train_without_out_refuses_to_overwrite_the_shipped_weights() -> None:
    shipped = weights_path("resnet").read_bytes()
    with pytest.raises(
        SystemExit, match="train writes the weights to --out PATH; --replace-shipped"
    ):
        main(["train", "--arch", "resnet", "--epochs", "1", "--images-per-epoch", "8"])
    assert weights_path("resnet").read_bytes() == shipped


def test_every_command_and_option_explains_itself(capsys) -> None:
    from captum_infocam.benchmark.__main__ import COMMANDS

    with pytest.raises(SystemExit):
        main(["--help"])
    top = capsys.readouterr().out
    assert "``" not in top and all(f"    {name}" in top for name in COMMANDS)
    for name, (module, _) in COMMANDS.items():
        parser = argparse.ArgumentParser()
        module.add_arguments(parser)
        silent = [a.option_strings for a in parser._actions if a.option_strings and not a.help]
        assert not silent, f"{name}: options without help {silent}"
        with pytest.raises(SystemExit):
            main([name, "--help"])
        assert "(default:" in capsys.readouterr().out, name


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--images", "-1"], "argument --images: must be >= 0, got -1"),
        (["--batch-size", "0"], "argument --batch-size: must be >= 1, got 0"),
        (["--pairs", "two"], "argument --pairs: must be an integer, got 'two'"),
        (
            ["train", "--arch", "vit", "--lr", "-1"],
            "argument --lr: must be > 0 and finite, got -1.0",
        ),
        (["train", "--arch", "vit", "--lr", "fast"], "argument --lr: must be a number, got 'fast'"),
    ],
)
def test_bad_counts_are_one_line_errors(arguments: list[str], message: str, capsys) -> None:
    command = [] if arguments[0] == "train" else ["run"]
    with pytest.raises(SystemExit):
        main([*command, *arguments])
    assert message in capsys.readouterr().err


def test_a_run_with_nothing_to_explain_stops_before_it_starts(tmp_path: Path, capsys) -> None:
    arguments = ["run", "--images", "0", "--pairs", "0", "--grids", "0", "--out", str(tmp_path)]
    with pytest.raises(SystemExit, match="--images, --pairs and --grids are all 0"):
        main(arguments)
    assert "Benchmark:" not in capsys.readouterr().out
