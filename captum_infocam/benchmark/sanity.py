"""Model-randomisation sanity check (Adebayo et al., 2018).

The trained weights are re-initialised cumulatively from the output backwards
(classifier, then the last stage, then the one before...). A map that explains
the model must change as its weights go: the Spearman rank correlation between
the map of the trained model and that of the randomised one should fall towards
0. A map that stays the same explains the input, not the model.
"""

from __future__ import annotations

import argparse
import copy
import math

import torch
from torch import Tensor, nn

from captum_infocam.benchmark.cli import count, positive
from captum_infocam.benchmark.items import ShapesItems
from captum_infocam.benchmark.methods import METHODS, check_methods
from captum_infocam.benchmark.zoo import (
    ARCHITECTURES,
    QUOTED_ROLES,
    STAGES,
    layer_name,
    load_model,
)
from captum_infocam.metrics import saliency_maps

__all__ = [
    "CASCADES",
    "add_arguments",
    "correlation_cell",
    "randomised",
    "rank_correlation",
    "run_sanity",
]

#: Modules re-initialised at each step, from the output backwards: the classifier, then
#: each stage from the last.
CASCADES = {arch: ["fc", *reversed(stages)] for arch, stages in STAGES.items()}


def rank_correlation(first: Tensor, second: Tensor) -> Tensor:
    """Spearman correlation per row of two ``(N, P)`` tensors; NaN where a row is constant."""

    def ranks(values: Tensor) -> Tensor:
        order = values.argsort(dim=1, stable=True)
        return torch.empty_like(values).scatter_(
            1, order, torch.arange(values.shape[1], dtype=values.dtype).expand_as(values)
        )

    a, b = ranks(first), ranks(second)
    a, b = a - a.mean(1, keepdim=True), b - b.mean(1, keepdim=True)
    denominator = a.norm(dim=1) * b.norm(dim=1)
    constant = (first.amax(1) == first.amin(1)) | (second.amax(1) == second.amin(1))
    correlation = (a * b).sum(1) / denominator.clamp_min(1e-12)
    return torch.where(constant, torch.full_like(correlation, math.nan), correlation)


def correlation_cell(correlation: Tensor, randomised_maps: Tensor) -> str:
    """A table cell: the mean of the NaN-free ``correlation`` (one per image) and their
    count, with how many of the randomised model's ``(N, P)`` maps are zero everywhere
    (a constant map has no rank correlation; a zero map shows no positive evidence)."""
    valid = correlation[~torch.isnan(correlation)]
    zeros = int((randomised_maps == 0).all(1).sum())
    counts = f"n = {len(valid)}" + (f"; {zeros} zero" if zeros else "")
    return f"{valid.mean():.3f} ({counts})" if len(valid) else f"all constant ({zeros} zero)"


def randomised(model: nn.Module, names: list[str], seed: int) -> nn.Module:
    """A copy of ``model`` with the modules ``names`` re-initialised (seeded), in eval mode."""
    copy_ = copy.deepcopy(model)
    torch.manual_seed(seed)
    for name in names:
        for module in copy_.get_submodule(name).modules():
            if hasattr(module, "reset_parameters"):
                module.reset_parameters()
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.reset_running_stats()
    return copy_.eval()


def run_sanity(args: argparse.Namespace) -> None:
    try:
        check_methods(args.methods)
        name = layer_name(args.arch, args.layer)
    except ValueError as error:
        raise SystemExit(str(error)) from None
    model = load_model(args.arch)
    batch = ShapesItems("single", args.images, args.seed).load(range(args.images))
    size = tuple(batch.image.shape[-2:])

    def maps(network: nn.Module, method: str) -> Tensor:
        explain = METHODS[method](network, network.get_submodule(name))
        return saliency_maps(explain(batch).detach(), size, len(batch.image)).flatten(1)

    reference = {method: maps(model, method) for method in args.methods}
    cascade = CASCADES[args.arch]
    print(
        f"{args.arch}, layer {name}, {args.images} images: mean Spearman correlation "
        "with the trained model's map (NaN-free images; n = their count; zero: the "
        "randomised model's maps that are zero everywhere)\n"
    )
    print("| randomised up to | " + " | ".join(args.methods) + " |")
    print("|" + " --- |" * (len(args.methods) + 1))
    for step in range(1, len(cascade) + 1):
        network = randomised(model, cascade[:step], args.seed)
        cells = []
        for method in args.methods:
            changed = maps(network, method)
            cells.append(correlation_cell(rank_correlation(reference[method], changed), changed))
        print(f"| {cascade[step - 1]} | " + " | ".join(cells) + " |")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``sanity`` command's arguments and handler."""
    parser.add_argument(
        "--arch", choices=sorted(ARCHITECTURES), default="resnet", help="the shipped network"
    )
    parser.add_argument("--layer", default="last", help=QUOTED_ROLES + " or a stage")
    parser.add_argument("--images", type=positive, default=50, help="one-object images")
    parser.add_argument(
        "--methods",
        type=lambda s: s.split(","),
        default=["InfoCAM", "Grad-CAM"],
        help="comma-separated methods of the benchmark",
    )
    parser.add_argument("--seed", type=count, default=0, help="data and re-initialisation seed")
    parser.set_defaults(handler=run_sanity)
