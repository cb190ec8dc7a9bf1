"""The depth study: each method explained at every stage of a network, beside a measure
of how shattered the gradients are at that stage.

The InfoCAM paper claims that its weights escape the *shattered gradient problem*:
Balduzzi et al. (2017, "The Shattered Gradients Problem: If resnets are the answer,
then what is the question?", ICML) showed that the gradients of a deep network
decorrelate, like white noise, as depth grows, far faster in plain networks than in
residual ones. Gradient-weighted CAMs read such gradients; InfoCAM fits its weights
without them. This command measures both sides of that claim stage by stage:

* **Shattering**: the correlation of the target's gradient between neighbouring
  positions of the stage's map (:func:`neighbour_gradient_correlation`), Balduzzi et
  al.'s gradient autocorrelation taken over the positions of a layer instead of over
  the inputs. 1 for a gradient that is constant over positions (a stage followed only
  by pooling and a linear layer), near 0 for white noise.
* **Faithfulness**: insertion, deletion, energy pointing game, pointing game and, on
  grids, the grid pointing game of each method's maps, with InfoCAM's paired
  difference to Grad-CAM.

    python -m captum_infocam.benchmark depth --arch vgg12 [--methods InfoCAM,Grad-CAM]
    python -m captum_infocam.benchmark depth --arch resnet,vgg,resnet18,vgg12
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import torch
from captum._utils.gradient import compute_layer_gradients_and_eval
from torch import Tensor, nn

from captum_infocam.benchmark.cli import add_item_counts, count, networks, positive
from captum_infocam.benchmark.items import shapes_splits
from captum_infocam.benchmark.methods import METHODS, check_methods
from captum_infocam.benchmark.run import METRIC_COLUMNS, evaluate, mean_and_error
from captum_infocam.benchmark.zoo import ARCHITECTURES, STAGES, load_model

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = [
    "DEPTH_METRICS",
    "add_arguments",
    "advantage_figure",
    "depth_figure",
    "depth_tables",
    "neighbour_gradient_correlation",
    "paired_differences",
    "run_depth",
    "study",
]

#: The metrics of the depth study (keys of :data:`captum_infocam.benchmark.run.METRICS`).
DEPTH_METRICS = (
    "insertion",
    "deletion",
    "energy_pointing_game",
    "pointing_game",
    "grid_pointing_game",
)
#: The methods the study compares unless ``--methods`` says otherwise.
DEFAULT_DEPTH_METHODS = ("InfoCAM", "Grad-CAM", "Grad-CAM++", "Layer-CAM", "Score-CAM")
#: The method InfoCAM is paired with, item by item.
REFERENCE = "Grad-CAM"


def neighbour_gradient_correlation(
    model: nn.Module, layer: nn.Module, images: Tensor, target: Tensor
) -> Tensor:
    r"""How alike the target's gradients are at neighbouring positions of a layer's map.

    With :math:`g = \partial y_t / \partial A` the gradient of the target's score with
    respect to the layer's output :math:`A` ``(N, C, H, W)``, and :math:`(p, q)` the
    pairs of horizontally or vertically adjacent positions,

    .. math::
        \rho = \frac{\sum_{c,(p,q)} g_{c,p}\, g_{c,q}}
                    {\sum_{c,(p,q)} \tfrac12 (g_{c,p}^2 + g_{c,q}^2)} \in [-1, 1]:

    1 where the gradient is the same at every position, about 0 where it is white
    noise (shattered, Balduzzi et al., 2017), -1 for a checkerboard.

    Args:
        model (nn.Module): the classifier.
        layer (nn.Module): the layer whose output gradients are measured.
        images (Tensor): ``(N, 3, H, W)``.
        target (Tensor): ``(N,)`` class indices.

    Returns:
        Tensor of shape ``(N,)``; NaN where the gradient is zero everywhere.
    """
    grads, _ = compute_layer_gradients_and_eval(model, layer, images, target)
    gradient = grads[0].detach()
    products = torch.zeros(len(gradient), dtype=gradient.dtype, device=gradient.device)
    energy = torch.zeros_like(products)
    for first, second in (
        (gradient[..., 1:, :], gradient[..., :-1, :]),
        (gradient[..., :, 1:], gradient[..., :, :-1]),
    ):
        products += (first * second).flatten(1).sum(1)
        energy += 0.5 * (first.square() + second.square()).flatten(1).sum(1)
    return torch.where(energy > 0, products / energy, torch.full_like(energy, math.nan))


def run_depth(args: argparse.Namespace) -> None:
    """Prints the depth study's tables and writes its records and figures (``depth``): one
    set per network, and with several networks, InfoCAM's advantage over Grad-CAM against
    the gradients' correlation, all networks in one figure."""
    try:
        check_methods(args.methods)
    except ValueError as error:
        raise SystemExit(str(error)) from None
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    by_arch = {}
    for arch in args.arch:
        records = study(arch, args)
        print(f"\n## {arch}\n" + depth_tables(records, STAGES[arch], args.methods))
        (args.out / f"{arch}_depth_records.json").write_text(json.dumps(records))
        figure_path = args.out / f"{arch}_depth.png"
        depth_figure(records, STAGES[arch], args.methods, arch).savefig(figure_path, dpi=120)
        print(f"\nfigure: {figure_path}")
        by_arch[arch] = records
    if len(by_arch) > 1 and "InfoCAM" in args.methods and REFERENCE in args.methods:
        figure_path = args.out / "depth_advantage.png"
        advantage_figure(by_arch).savefig(figure_path, dpi=120)
        print(f"figure: {figure_path}")


def study(arch: str, args: argparse.Namespace) -> list[dict[str, Any]]:
    """Per-item records of every method at every stage of the shipped network ``arch``, each
    with its ``"stage"`` and the item's ``"gradient_correlation"`` there."""
    model = load_model(arch)
    sources = shapes_splits(args.images, args.pairs, args.grids, args.seed)
    records: list[dict[str, Any]] = []
    device = torch.device("cpu")
    for stage in STAGES[arch]:
        layer = model.get_submodule(stage)
        explainers = {name: METHODS[name](model, layer) for name in args.methods}
        for source in sources:
            stage_records = evaluate(
                model, source, explainers, args.batch_size, 16, 4, device, metrics=DEPTH_METRICS
            )
            correlation = {}
            for start in range(0, len(source), args.batch_size):
                batch = source.load(range(start, min(start + args.batch_size, len(source))))
                values = neighbour_gradient_correlation(model, layer, batch.image, batch.target)
                correlation |= dict(zip(batch.keys, values.tolist(), strict=True))
            for record in stage_records:
                record["stage"] = stage
                record["gradient_correlation"] = correlation[record["item"]]
            records += stage_records
    return records


def _by(records: list[dict[str, Any]], **fields: Any) -> list[dict[str, Any]]:
    return [r for r in records if all(r.get(k) == v for k, v in fields.items())]


def depth_tables(
    records: list[dict[str, Any]], stages: Sequence[str], methods: Sequence[str]
) -> str:
    """Markdown: per split, each stage's gradient correlation and each method's seconds per
    item (the map only) and metrics (mean ± standard error), then InfoCAM minus Grad-CAM,
    item by item, per stage, with the count of metrics won and lost by more than one
    standard error."""
    lines: list[str] = []
    for split in dict.fromkeys(r["split"] for r in records):
        keys = [k for k in DEPTH_METRICS if any(k in r for r in _by(records, split=split))]
        labels = [METRIC_COLUMNS[k].heading for k in keys]
        lines += [
            f"\n### {split}\n",
            "| stage | ρ∇ | method | s/item | " + " | ".join(labels) + " |",
            "|" + " --- |" * (len(keys) + 4),
        ]
        for stage in stages:
            rows = _by(records, split=split, stage=stage)
            if not rows:
                continue
            rho = mean_and_error([r["gradient_correlation"] for r in _by(rows, method=methods[0])])[
                0
            ]
            for method in methods:
                mine = _by(rows, method=method)
                seconds = mean_and_error([r["seconds"] for r in mine])[0]
                cells = [f"{seconds:.4f}"]
                cells += [_cell(*mean_and_error([r[k] for r in mine])) for k in keys]
                lines.append(f"| {stage} | {rho:.2f} | {method} | " + " | ".join(cells) + " |")
        if "InfoCAM" in methods and REFERENCE in methods:
            lines += [
                f"\n#### {split}: InfoCAM − {REFERENCE}, item by item (mean ± standard error)\n",
                "| stage | ρ∇ | "
                + " | ".join(f"Δ{METRIC_COLUMNS[k].label}" for k in keys)
                + " | won / lost |",
                "|" + " --- |" * (len(keys) + 3),
            ]
            for stage in stages:
                differences = paired_differences(records, split, stage, keys)
                if differences is None:
                    continue
                rho, cells = differences
                row = [f"{mean:+.3f} ± {error:.3f}" for mean, error in cells.values()]
                outcomes = [_outcome(k, *cells[k]) for k in keys]
                row.append(f"{outcomes.count(1)} / {outcomes.count(-1)}")
                lines.append(f"| {stage} | {rho:.2f} | " + " | ".join(row) + " |")
    return "\n".join(lines)


def paired_differences(
    records: list[dict[str, Any]], split: str, stage: str, keys: Sequence[str]
) -> tuple[float, dict[str, tuple[float, float]]] | None:
    """InfoCAM minus Grad-CAM on the items of ``split`` at ``stage``, paired by item: the
    stage's mean gradient correlation and each metric's mean difference with its standard
    error (NaN for a metric the split does not score); ``None`` where InfoCAM has no records
    there."""
    ours = _by(records, split=split, stage=stage, method="InfoCAM")
    theirs = {r["item"]: r for r in _by(records, split=split, stage=stage, method=REFERENCE)}
    if not ours:
        return None
    rho = mean_and_error([r["gradient_correlation"] for r in ours])[0]
    return rho, {
        k: mean_and_error([r.get(k, math.nan) - theirs[r["item"]].get(k, math.nan) for r in ours])
        for k in keys
    }


def _outcome(key: str, mean: float, error: float) -> int:
    """1 where InfoCAM beats Grad-CAM by more than one standard error on ``key``, -1 where
    it loses by more, 0 for a tie (or a metric without values)."""
    if math.isnan(mean) or abs(mean) <= (0.0 if math.isnan(error) else error):
        return 0
    return 1 if (mean > 0) == METRIC_COLUMNS[key].higher_is_better else -1


def _cell(mean: float, error: float) -> str:
    return "–" if math.isnan(mean) else f"{mean:.3f} ± {error:.3f}"


def depth_figure(
    records: list[dict[str, Any]], stages: Sequence[str], methods: Sequence[str], title: str
) -> Figure:
    """Each metric (columns) on each split (rows) against the stage, a line per method;
    the x labels give each stage's gradient correlation ρ∇."""
    from matplotlib.figure import Figure

    splits = list(dict.fromkeys(r["split"] for r in records))
    keys = [k for k in DEPTH_METRICS if any(k in r for r in records)]
    figure = Figure(figsize=(3.0 * len(keys), 2.6 * len(splits)), layout="constrained")
    axes = figure.subplots(len(splits), len(keys), squeeze=False)
    for row, split in enumerate(splits):
        rho = [
            mean_and_error(
                [
                    r["gradient_correlation"]
                    for r in _by(records, split=split, stage=s, method=methods[0])
                ]
            )[0]
            for s in stages
        ]
        ticks = [f"{s}\nρ∇ {v:.2f}" for s, v in zip(stages, rho, strict=True)]
        for column, key in enumerate(keys):
            axis = axes[row, column]
            for method in methods:
                values = [
                    mean_and_error(
                        [
                            r[key]
                            for r in _by(records, split=split, stage=s, method=method)
                            if key in r
                        ]
                    )
                    for s in stages
                ]
                if all(math.isnan(m) for m, _ in values):
                    continue  # not scored on this split (the grid pointing game)
                axis.errorbar(
                    range(len(stages)),
                    [m for m, _ in values],
                    yerr=[0.0 if math.isnan(e) else e for _, e in values],
                    label=method,
                    marker="o",
                    capsize=2,
                )
            if not axis.lines:
                axis.set_axis_off()
                continue
            column_label = METRIC_COLUMNS[key].heading
            axis.set_title(f"{split}: {column_label}", fontsize=9)
            axis.set_xticks(range(len(stages)), ticks, fontsize=7)
            axis.tick_params(axis="y", labelsize=7)
    axes[0, 0].legend(fontsize=7)
    figure.suptitle(f"{title}: each method at every stage (mean ± s.e.)", fontsize=10)
    return figure


def advantage_figure(by_arch: dict[str, list[dict[str, Any]]]) -> Figure:
    """InfoCAM minus Grad-CAM (paired mean ± standard error) on each metric against the
    stage's gradient correlation ρ∇: a point per network, stage and split (marker)."""
    from matplotlib.figure import Figure

    keys = [k for k in DEPTH_METRICS if any(k in r for rs in by_arch.values() for r in rs)]
    figure = Figure(figsize=(3.0 * len(keys), 3.0), layout="constrained")
    axes = figure.subplots(1, len(keys), squeeze=False)[0]
    markers = {"single": "o", "pair": "s", "grid": "^"}
    for colour, (arch, records) in enumerate(by_arch.items()):
        for split in dict.fromkeys(r["split"] for r in records):
            points = [
                paired_differences(records, split, stage, keys)
                for stage in dict.fromkeys(r["stage"] for r in records)
            ]
            points = [p for p in points if p is not None]
            for axis, key in zip(axes, keys, strict=True):
                values = [
                    (rho, cells[key]) for rho, cells in points if not math.isnan(cells[key][0])
                ]
                if not values:
                    continue
                axis.errorbar(
                    [rho for rho, _ in values],
                    [mean for _, (mean, _) in values],
                    yerr=[0.0 if math.isnan(e) else e for _, (_, e) in values],
                    linestyle="none",
                    marker=markers.get(split, "x"),
                    color=f"C{colour}",
                    capsize=2,
                    label=f"{arch}, {split}",
                )
    for axis, key in zip(axes, keys, strict=True):
        better = "higher" if METRIC_COLUMNS[key].higher_is_better else "lower"
        axis.axhline(0.0, color="grey", linewidth=0.8)
        axis.set_title(f"Δ{METRIC_COLUMNS[key].label} ({better} is InfoCAM's win)", fontsize=9)
        axis.set_xlabel("ρ∇ (low: shattered gradients)", fontsize=8)
        axis.tick_params(labelsize=7)
    axes[0].set_ylabel("InfoCAM − Grad-CAM", fontsize=8)
    handles, labels = axes[0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="outside right upper", fontsize=7)
    figure.suptitle(
        "InfoCAM's advantage over Grad-CAM at every stage of every network", fontsize=10
    )
    return figure


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``depth`` command's arguments and handler."""
    parser.add_argument(
        "--arch",
        type=networks,
        default=["vgg12"],
        help=f"comma-separated, from: {', '.join(sorted(ARCHITECTURES))}; with several, also "
        "a figure of InfoCAM's advantage over Grad-CAM against ρ∇ for all of them",
    )
    parser.add_argument(
        "--methods",
        type=lambda s: s.split(","),
        default=list(DEFAULT_DEPTH_METHODS),
        help=f"comma-separated, from: {', '.join(METHODS)}",
    )
    add_item_counts(parser, images=40, pairs=20, grids=5)
    parser.add_argument("--batch-size", type=positive, default=20, help="items per call")
    parser.add_argument("--seed", type=count, default=0, help="data seed")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument(
        "--out", type=Path, default=Path("results"), help="folder for the records and figures"
    )
    parser.set_defaults(handler=run_depth)
