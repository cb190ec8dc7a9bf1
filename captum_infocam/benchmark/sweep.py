"""The sweep that chose InfoCAM's defaults (``docs/benchmark.md``).

Each configuration changes one setting (or a read-out with a prior) from a base
and runs the benchmark's evaluation on both splits of the shapes data set, at
the last and at the middle layer of a shipped network. Grad-CAM is scored on the
same items as a reference. Prints one markdown table per (architecture, layer).

    python -m captum_infocam.benchmark sweep [--arch resnet] [--images 100] [--pairs 50]
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import torch

from captum_infocam import InfoCAM
from captum_infocam.benchmark.data import reference_images
from captum_infocam.benchmark.items import ShapesItems
from captum_infocam.benchmark.methods import METHODS
from captum_infocam.benchmark.run import METRICS, evaluate, summarise
from captum_infocam.benchmark.zoo import LAYERS, load_model

__all__ = ["BASE", "CONFIGS", "add_arguments", "run_sweep"]

#: The setting every configuration starts from: the prototype's.
BASE: dict[str, Any] = dict(
    n_samples=10, steps=10, lr=1.0, beta=1.0, gamma=1.0, prior="zero", readout="gates"
)
#: What each configuration changes in :data:`BASE`.
CONFIGS: dict[str, dict[str, Any]] = {
    "base": {},
    "readout=bits": dict(readout="bits"),
    "readout=standardized": dict(readout="standardized"),
    "readout=information": dict(readout="information"),
    "prior=batch": dict(prior="batch"),
    "prior=dataset": dict(prior="dataset"),
    "prior=dataset+readout=standardized": dict(prior="dataset", readout="standardized"),
    "beta=0.1": dict(beta=0.1),
    "beta=3": dict(beta=3.0),
    "gamma=0": dict(gamma=0.0),
    "n_samples=4": dict(n_samples=4),
    "steps=20": dict(steps=20),
    "lr=0.3": dict(lr=0.3),
}


def run_sweep(args: argparse.Namespace) -> None:
    """Prints the sweep's tables (the ``sweep`` command)."""
    model = load_model(args.arch)
    sources = [ShapesItems("single", args.images), ShapesItems("pair", args.pairs)]
    labels = [f"{m.label}{'↑' if m.higher_is_better else '↓'}" for m in METRICS]
    for role in args.layers.split(","):
        layer_name = LAYERS[args.arch][role]
        layer = model.get_submodule(layer_name)
        statistics = InfoCAM(model, layer).fit_statistics(reference_images())
        rows = {"Grad-CAM (reference)": {"Grad-CAM": METHODS["Grad-CAM"](model, layer, {})}}
        for name in args.configs.split(","):
            settings = BASE | CONFIGS[name]
            if settings["prior"] == "dataset":
                settings["prior"] = statistics
            rows[name] = {"InfoCAM": METHODS["InfoCAM"](model, layer, settings)}
        print(f"\n### {args.arch}, {layer_name} ({role} layer)\n")
        print("| configuration | split | s/img | " + " | ".join(labels) + " |")
        print("|" + " --- |" * (len(labels) + 3))
        for name, explainers in rows.items():
            start = time.perf_counter()
            records = []
            for source in sources:
                records += evaluate(model, source, explainers, 25, 16, 4, torch.device("cpu"))
            for split, methods in summarise(records).items():
                values = next(iter(methods.values()))
                cells = [f"{values['seconds'][0]:.4f}"] + [
                    f"{values[m.key][0]:.3f}" for m in METRICS
                ]
                print(f"| {name} | {split} | " + " | ".join(cells) + " |", flush=True)
            print(f"<!-- {name}: {time.perf_counter() - start:.0f} s -->", flush=True)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``sweep`` command's arguments and handler."""
    parser.add_argument("--arch", default="resnet")
    parser.add_argument("--layers", default="last,middle")
    parser.add_argument("--images", type=int, default=100)
    parser.add_argument("--pairs", type=int, default=50)
    parser.add_argument("--configs", default=",".join(CONFIGS))
    parser.set_defaults(handler=run_sweep)
