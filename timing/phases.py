"""Where an InfoCAM call spends its time, phase by phase, against layer depth and batch size.

For torchvision ResNet-50 (``layer1`` to ``layer4``) and ViT-B/16 (the last block's
first LayerNorm), random weights, 224 x 224 inputs: one default ``InfoCAM.attribute``
call under ``torch.profiler`` (after a warm-up call), split by the phases that
InfoCAM marks with ``record_function``:

* ``prefix``: the model's forward pass that captures the layer (and the output);
* ``streams``: the noise draws and both streams of every fit;
* ``suffix forward`` and ``suffix backward``: the network after the layer on the
  streams, and its backward to the streams;
* ``gate gradient``: from the streams' gradients to the gate logits (the chain rule of
  ``dsib.gate_gradient``, and the KL term's backward);
* ``optimizer``: Adam's step and the loss trace;
* ``read-out``: the map from the gates;
* ``other``: the call's wall time outside these phases (argument checks, the
  target's index, the prior, Python).

Each phase is given in seconds and as a multiple of Captum's ``LayerGradCam`` on the
same model, layer and inputs (median of ``--repeats`` runs in the same process).
Prints a markdown table and, with ``--figure``, draws the phases at ``--figure-batch``
against the layer's depth (left) and the ratio to LayerGradCam against the batch
size (right).

    python timing/phases.py [--batches 1,2,4,8] [--n-samples 2 --steps 10] [--bf16] [--figure F]
"""

from __future__ import annotations

import argparse
import functools
import time

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch
import torchvision
from captum.attr import LayerGradCam
from speed import SETUPS, layer_gradcam
from torch.profiler import ProfilerActivity, profile

from captum_infocam import DSIBSettings, InfoCAM
from captum_infocam.benchmark.clock import clock, synchronize

PROFILED = {"resnet50/layer1": (torchvision.models.resnet50, lambda m: m.layer1, None)} | SETUPS
PHASES = (
    "prefix",
    "streams",
    "suffix forward",
    "suffix backward",
    "gate gradient",
    "optimizer",
    "read-out",
)


def phase_seconds(infocam: InfoCAM, x, target, device, settings) -> dict[str, float]:
    """Seconds of each phase of one call, and the call's wall time under ``"total"``."""
    infocam.attribute(x, target=target, settings=settings)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as profiler:
        synchronize(device)
        start = time.perf_counter()
        infocam.attribute(x, target=target, settings=settings)
        synchronize(device)
        total = time.perf_counter() - start
    events = {event.key: event for event in profiler.key_averages()}
    seconds = {}
    for phase in PHASES:
        event = events.get(f"InfoCAM: {phase}")
        seconds[phase] = 0.0 if event is None else event.cpu_time_total / 1e6
    seconds["other"] = max(total - sum(seconds.values()), 0.0)
    seconds["total"] = total
    return seconds


def draw(results: dict[tuple[str, int], dict[str, float]], batch: int, path: str) -> None:
    setups = list(dict.fromkeys(name for name, _ in results))
    figure, (depth, batches) = plt.subplots(1, 2, figsize=(11, 4.2))
    bottom = [0.0] * len(setups)
    for phase in (*PHASES, "other"):
        heights = [results[name, batch][phase] / results[name, batch]["gradcam"] for name in setups]
        depth.bar(range(len(setups)), heights, bottom=bottom, label=phase)
        bottom = [b + h for b, h in zip(bottom, heights, strict=True)]
    depth.set_xticks(range(len(setups)), [name.replace("/", "\n") for name in setups])
    depth.set_ylabel("time / LayerGradCam's time")
    depth.set_title(f"one default call, batch {batch}, by phase")
    depth.legend(fontsize=8)
    for name in setups:
        sizes = sorted(b for n, b in results if n == name)
        ratios = [results[name, b]["total"] / results[name, b]["gradcam"] for b in sizes]
        batches.plot(sizes, ratios, marker="o", label=name)
    batches.set_xscale("log", base=2)
    batches.set_yscale("log")
    batches.set_xlabel("batch size")
    batches.set_ylabel("time / LayerGradCam's time")
    batches.set_title("whole call (under the profiler)")
    batches.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=90)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--setups", default=",".join(PROFILED))
    parser.add_argument("--batches", default="1,2,4,8")
    parser.add_argument("--repeats", type=int, default=3, help="LayerGradCam's timing runs")
    parser.add_argument("--figure", default=None, help="where to save the plot (PNG)")
    parser.add_argument("--figure-batch", type=int, default=8)
    parser.add_argument("--n-samples", type=int, default=None, help="InfoCAM's n_samples")
    parser.add_argument("--steps", type=int, default=None, help="InfoCAM's steps")
    parser.add_argument("--bf16", action="store_true", help="autocast_dtype=torch.bfloat16")
    args = parser.parse_args()
    device = torch.device(args.device)
    settings = DSIBSettings(
        n_samples=args.n_samples,
        steps=args.steps,
        autocast_dtype=torch.bfloat16 if args.bf16 else None,
    )
    print(f"device: {device}; torch {torch.__version__}; threads {torch.get_num_threads()}")
    print(f"InfoCAM settings: {settings}")
    columns = (*PHASES, "other", "total")
    print("| model/layer | batch | LayerGradCam s | " + " | ".join(columns) + " |")
    print("|" + " --- |" * (len(columns) + 3))
    results = {}
    for name in args.setups.split(","):
        make, get_layer, layout = PROFILED[name]
        torch.manual_seed(0)
        model = make().eval().to(device)
        layer = get_layer(model)
        infocam = InfoCAM(model, layer, reshape_transform=layout)
        for batch in map(int, args.batches.split(",")):
            x = torch.randn(batch, 3, 224, 224, device=device)
            target = torch.randint(0, 1000, (batch,), device=device)
            seconds = phase_seconds(infocam, x, target, device, settings)
            baseline = layer_gradcam(LayerGradCam(model, layer), layout)
            seconds["gradcam"] = clock(functools.partial(baseline, x, target), device, args.repeats)
            results[name, batch] = seconds
            cells = [
                f"{seconds[c]:.3f} s ({seconds[c] / seconds['gradcam']:.2f}×)" for c in columns
            ]
            print(f"| {name} | {batch} | {seconds['gradcam']:.3f} | " + " | ".join(cells) + " |")
    if args.figure:
        draw(results, args.figure_batch, args.figure)


if __name__ == "__main__":
    main()
