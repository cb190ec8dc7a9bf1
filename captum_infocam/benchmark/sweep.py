"""The sweep that chose InfoCAM's defaults (``docs/benchmark.md``).

Each configuration changes one setting (or a read-out with a prior) from a base,
InfoCAM's defaults, and runs the benchmark's evaluation on the one-object, pair
and grid splits of the shapes data set, at the last and at the middle layer of a
shipped network. Grad-CAM is scored on the same items as a reference. Prints one
markdown table per (architecture, layer). Choose defaults on a ``--seed`` other
than the reported split's (0).

``--paired`` adds a second table per layer that compares each configuration with
the base item by item: the mean difference of each metric with its standard
error, and the mean Spearman correlation of the scored maps with the base's.
Add ``seed=1`` as a configuration to see how far the fit's own noise draws move
them.

    python -m captum_infocam.benchmark sweep [--arch resnet] [--seed 1] [--images 100] [--paired]
"""

from __future__ import annotations

import argparse
import math
import time
from dataclasses import replace
from typing import Any

import torch

from captum_infocam import DSIBSettings, InfoCAM
from captum_infocam.benchmark.cli import add_item_counts, comma_separated
from captum_infocam.benchmark.data import reference_images
from captum_infocam.benchmark.items import shapes_splits
from captum_infocam.benchmark.methods import METHODS
from captum_infocam.benchmark.run import (
    DATASET_PRIOR,
    METRICS,
    evaluate,
    mean_and_error,
    summarise,
)
from captum_infocam.benchmark.sanity import rank_correlation
from captum_infocam.benchmark.zoo import ARCHITECTURES, LAYERS, ROLES, load_model
from captum_infocam.dsib import FIT_DEFAULTS

__all__ = ["BASE", "CONFIGS", "add_arguments", "paired_table", "run_sweep"]

#: The setting every configuration starts from: InfoCAM's defaults, with the prior
#: named (``"zero"``, what an explainer without data-set statistics uses).
BASE = DSIBSettings(prior="zero")
#: What each configuration changes in :data:`BASE` (``prior="dataset"``: the layer's
#: statistics over reference images).
CONFIGS: dict[str, dict[str, Any]] = {
    "base": {},
    "contrast=none": dict(contrast="none"),
    "readout=bits": dict(readout="bits"),
    "readout=standardized": dict(readout="standardized"),
    "readout=information": dict(readout="information"),
    "prior=batch": dict(prior="batch"),
    "prior=dataset": dict(prior=DATASET_PRIOR),
    "prior=dataset+readout=standardized": dict(prior=DATASET_PRIOR, readout="standardized"),
    "beta=0.1": dict(beta=0.1),
    "beta=0.5": dict(beta=0.5),
    "beta=2": dict(beta=2.0),
    "beta=3": dict(beta=3.0),
    "gamma=0": dict(gamma=0.0),
    "n_samples=2": dict(n_samples=2),
    "n_samples=4": dict(n_samples=4),
    "steps=5": dict(steps=5),
    "steps=6": dict(steps=6),
    "steps=10": dict(steps=10),
    "steps=20": dict(steps=20),
    "n_samples=2+steps=10": dict(n_samples=2, steps=10),
    "lr=0.3": dict(lr=0.3),
    # How far a gate logit may travel, lr * steps (GATE_TRAVEL by default), at the default steps.
    **{
        f"travel={travel}": dict(lr=travel / FIT_DEFAULTS["complement"]["steps"])
        for travel in (7, 5, 3)
    },
    "seed=1": dict(seed=1),
    "autocast_dtype=bfloat16": dict(autocast_dtype=torch.bfloat16),
}


def run_sweep(args: argparse.Namespace) -> None:
    """Prints the sweep's tables (the ``sweep`` command)."""
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    model = load_model(args.arch)
    sources = shapes_splits(args.images, args.pairs, args.grids, args.seed)
    labels = [m.heading for m in METRICS]
    for role in args.layers:
        layer_name = LAYERS[args.arch][role]
        layer = model.get_submodule(layer_name)
        statistics = InfoCAM(model, layer).fit_statistics(reference_images(args.seed))
        rows = {"Grad-CAM (reference)": {"Grad-CAM": METHODS["Grad-CAM"](model, layer)}}
        for name in args.configs:
            overrides = CONFIGS[name]
            if overrides.get("prior") == DATASET_PRIOR:
                overrides = overrides | {"prior": statistics}
            settings = replace(BASE, **overrides)
            rows[name] = {"InfoCAM": METHODS["InfoCAM"](model, layer, settings)}
        print(f"\n### {args.arch}, {layer_name} ({role} layer)\n")
        print("| configuration | split | s/img | " + " | ".join(labels) + " |")
        print("|" + " --- |" * (len(labels) + 3))
        by_config = {}
        for name, explainers in rows.items():
            start = time.perf_counter()
            records = []
            for source in sources:
                keep = range(len(source)) if args.paired else ()
                records += evaluate(
                    model, source, explainers, 25, 16, 4, torch.device("cpu"), keep=keep
                )
            by_config[name] = records
            for split, methods in summarise(records).items():
                values = next(iter(methods.values()))
                cells = [f"{values['seconds'][0]:.4f}"] + [
                    f"{values[m.key][0]:.3f}" for m in METRICS
                ]
                print(f"| {name} | {split} | " + " | ".join(cells) + " |", flush=True)
            print(f"<!-- {name}: {time.perf_counter() - start:.0f} s -->", flush=True)
        if args.paired and "base" in by_config:
            print(f"\n#### {args.arch}, {layer_name}: difference to the base, item by item\n")
            print(paired_table(by_config))


def paired_table(by_config: dict[str, list[dict[str, Any]]]) -> str:
    """Markdown rows ``configuration | split | maps' ρ | Δ metric ± s.e. ...`` against
    ``by_config["base"]``, pairing records by split and item (records hold ``"map"``)."""
    base = {(r["split"], r["item"]): r for r in by_config["base"]}
    lines = [
        "| configuration | split | ρ to the base | "
        + " | ".join(f"Δ{m.label}" for m in METRICS)
        + " |",
        "|" + " --- |" * (len(METRICS) + 3),
    ]
    for name, records in by_config.items():
        if name == "base" or not records:
            continue
        for split in dict.fromkeys(r["split"] for r in records):
            pairs = [(r, base[split, r["item"]]) for r in records if r["split"] == split]
            cells = []
            for metric in METRICS:
                mean, error = mean_and_error(
                    [r.get(metric.key, math.nan) - b.get(metric.key, math.nan) for r, b in pairs]
                )
                cells.append("–" if math.isnan(mean) else f"{mean:+.3f} ± {error:.3f}")
            correlation = rank_correlation(
                torch.stack([r["map"].flatten() for r, _ in pairs]),
                torch.stack([b["map"].flatten() for _, b in pairs]),
            )
            lines.append(
                f"| {name} | {split} | {float(correlation.nanmean()):.3f} | "
                + " | ".join(cells)
                + " |"
            )
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``sweep`` command's arguments and handler."""
    parser.add_argument(
        "--arch", choices=sorted(ARCHITECTURES), default="resnet", help="the shipped network"
    )
    parser.add_argument(
        "--layers",
        type=comma_separated(ROLES, "layer role"),
        default=list(ROLES),
        help="comma-separated, from: " + ", ".join(ROLES),
    )
    add_item_counts(parser, images=100, pairs=50, grids=25)
    parser.add_argument("--seed", type=int, default=1, help="data seed (the reported split is 0)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument(
        "--configs",
        type=comma_separated(CONFIGS, "configuration"),
        default=list(CONFIGS),
        help="comma-separated configurations to run, from: " + ", ".join(CONFIGS),
    )
    parser.add_argument(
        "--paired", action="store_true", help="also compare each configuration with the base"
    )
    parser.set_defaults(handler=run_sweep)
