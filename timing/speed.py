"""InfoCAM's wall time as a ratio to Captum's LayerGradCam, with other CAMs for scale.

For torchvision ResNet-50 (layer2, layer3, layer4) and ViT-B/16 (the last block's
first LayerNorm), random weights, 224 x 224 inputs, batch 1 and 8: the median
time of each method over ``--repeats`` runs after one warm-up, and its ratio to
``captum.attr.LayerGradCam`` on the same model, layer and inputs in the same run.
InfoCAM runs with its default fit, with ``autocast_dtype=torch.bfloat16`` (the network
after the layer in bfloat16 during the fit), with ``n_samples=2, steps=10`` (the
default before issue 14) and with ``contrast="none"`` (the first release's single fit).
On CUDA the device is synchronised before each clock read. Score-CAM (one forward
pass per channel) is slow on a CPU, so it runs only where the batch is at most
``--scorecam-max-batch``, and so does IBA's reference cost (Schulz et al. 2020: 10
steps, each a forward and backward pass on 10 copies of the image), timed as 10
LayerGradCam calls on 10 copies of the batch, without the bottleneck's arithmetic.

``--memory`` adds each method's peak memory above a plain forward pass: CUDA's
``max_memory_allocated``, or on a CPU the peak resident set of a fresh process
running the method once (Linux's ``VmHWM``).
``--internal-batch-size N`` adds InfoCAM with ``internal_batch_size=N`` (at most N
rows of the fit through the network after the layer at once), to show what the
chunks save in memory and cost in time.

    python timing/speed.py [--device cuda] [--batches 1,8] [--memory] [--internal-batch-size 16]
"""

from __future__ import annotations

import argparse
import functools
import multiprocessing
from pathlib import Path
from typing import Callable, Optional

import torch
import torchvision
from captum.attr import LayerGradCam
from torch import nn

from captum_infocam import DSIBSettings, InfoCAM, TokenGrid
from captum_infocam.benchmark.clock import clock, synchronize
from captum_infocam.benchmark.methods import pytorch_grad_cam_method
from captum_infocam.layouts import LayerLayout

SETUPS: dict[str, tuple[Callable[[], nn.Module], Callable[[nn.Module], nn.Module], object]] = {
    "resnet50/layer2": (torchvision.models.resnet50, lambda m: m.layer2, None),
    "resnet50/layer3": (torchvision.models.resnet50, lambda m: m.layer3, None),
    "resnet50/layer4": (torchvision.models.resnet50, lambda m: m.layer4, None),
    "vit_b_16/block11.ln_1": (
        torchvision.models.vit_b_16,
        lambda m: m.encoder.layers[-1].ln_1,
        TokenGrid(1),
    ),
}


#: A lower bound on IBA's cost, timed as 10 x LayerGradCam on 10 copies of the batch.
IBA_COST = "IBA cost (10 steps x 10 copies)"


def _pytorch_grad_cam(
    name: str, model: nn.Module, layer: nn.Module, layout: Optional[LayerLayout]
) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    reshape = None if layout is None else layout.to_maps
    return pytorch_grad_cam_method(name, model, layer, reshape_transform=reshape, batch_size=64)


def layer_gradcam(
    gradcam: LayerGradCam, layout: Optional[LayerLayout]
) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The baseline of every ratio: LayerGradCam's map, per token grid cell with ``layout``."""
    if layout is None:
        return lambda x, t: gradcam.attribute(x, t, relu_attributions=True)
    return lambda x, t: layout.to_maps(gradcam.attribute(x, t, attr_dim_summation=False))


def methods(
    model: nn.Module, layer: nn.Module, layout: object, internal_batch_size: Optional[int] = None
) -> tuple[dict[str, Callable], InfoCAM]:
    """The timed methods by name, and the InfoCAM instance among them; with
    ``internal_batch_size``, InfoCAM a second time, in chunks of that many rows."""
    infocam = InfoCAM(model, layer, reshape_transform=layout)
    gradcam = LayerGradCam(model, layer)
    chunked = {
        f"InfoCAM internal_batch_size={internal_batch_size}": (
            lambda x, t: infocam.attribute(x, target=t, internal_batch_size=internal_batch_size)
        )
    }

    def iba_cost(x: torch.Tensor, t: torch.Tensor) -> None:
        # IBA's reference setting (Schulz et al. 2020): 10 steps, each a forward pass of the whole
        # network on 10 noisy copies of the image and a backward pass to the bottleneck at the
        # layer, which is what LayerGradCam runs; the bottleneck's own arithmetic is left out.
        for _ in range(10):
            gradcam.attribute(x.repeat_interleave(10, 0), t.repeat_interleave(10, 0))

    return {
        "LayerGradCam (captum)": layer_gradcam(gradcam, layout),
        "InfoCAM": lambda x, t: infocam.attribute(x, target=t),
        # The default fit in bfloat16 after the layer (torch.autocast), where the device has it.
        "InfoCAM autocast_dtype=bfloat16": (
            lambda x, t: infocam.attribute(
                x, target=t, settings=DSIBSettings(autocast_dtype=torch.bfloat16)
            )
        ),
        # The default before issue 14: K = 2 draws, T = 10 steps (lr = 10 / T = 1).
        "InfoCAM n_samples=2 steps=10": (
            lambda x, t: infocam.attribute(
                x, target=t, settings=DSIBSettings(n_samples=2, steps=10)
            )
        ),
        # The first release's fit, the baseline of the default's cost (issue 11: at most 2x).
        "InfoCAM contrast=none": lambda x, t: infocam.attribute(
            x, target=t, settings=DSIBSettings(contrast="none")
        ),
        **(chunked if internal_batch_size is not None else {}),
        "GradCAM++ (grad-cam)": _pytorch_grad_cam("GradCAMPlusPlus", model, layer, layout),
        "LayerCAM (grad-cam)": _pytorch_grad_cam("LayerCAM", model, layer, layout),
        "ScoreCAM (grad-cam)": _pytorch_grad_cam("ScoreCAM", model, layer, layout),
        IBA_COST: iba_cost,
    }, infocam


def _setup(name: str, batch: int, device: torch.device):
    make, get_layer, layout = SETUPS[name]
    torch.manual_seed(0)
    model = make().eval().to(device)
    x = torch.randn(batch, 3, 224, 224, device=device)
    target = torch.randint(0, 1000, (batch,), device=device)
    return model, get_layer(model), layout, x, target


def _peak_rss_child(
    name: str, batch: int, method: str, internal_batch_size: Optional[int], queue
) -> None:
    model, layer, layout, x, target = _setup(name, batch, torch.device("cpu"))
    with torch.no_grad():
        model(x)
    before = _resident_peak_mb()
    methods(model, layer, layout, internal_batch_size)[0][method](x, target)
    queue.put(_resident_peak_mb() - before)


def _resident_peak_mb() -> float:
    """Peak resident memory of this process (Linux ``VmHWM``, which, unlike
    ``ru_maxrss``, does not carry over the parent's peak into a spawned child)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("--memory on a CPU needs Linux's /proc/self/status")


def peak_memory_mb(
    name: str,
    batch: int,
    method: str,
    device: torch.device,
    run,
    internal_batch_size: Optional[int] = None,
) -> float:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        run()
        synchronize(device)
        return (torch.cuda.max_memory_allocated(device) - base) / 2**20
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    process = context.Process(
        target=_peak_rss_child, args=(name, batch, method, internal_batch_size, queue)
    )
    process.start()
    value = queue.get()
    process.join()
    return value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--setups", default=",".join(SETUPS))
    parser.add_argument("--batches", default="1,8")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--scorecam-max-batch", type=int, default=None, help="default: 1 on a CPU, 8 on CUDA"
    )
    parser.add_argument(
        "--skip",
        default="",
        help='comma-separated methods not to time, e.g. "ScoreCAM (grad-cam)"; '
        "an unknown name stops the run and lists the timed methods",
    )
    parser.add_argument("--memory", action="store_true")
    parser.add_argument(
        "--internal-batch-size",
        type=int,
        default=None,
        help="also run InfoCAM with this internal_batch_size (rows per pass of the fit)",
    )
    args = parser.parse_args()
    device = torch.device(args.device)
    scorecam_max = args.scorecam_max_batch or (8 if device.type == "cuda" else 1)
    name_of_device = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"device: {name_of_device}; torch {torch.__version__}; threads {torch.get_num_threads()}")
    header = "| model/layer | batch | method | seconds | ratio to LayerGradCam |"
    if args.memory:
        header += " peak MB over a forward |"
    print(header)
    print("|" + " --- |" * (header.count("|") - 1))
    skip = [method for method in args.skip.split(",") if method]
    for name in args.setups.split(","):
        for batch in map(int, args.batches.split(",")):
            model, layer, layout, x, target = _setup(name, batch, device)
            runs, infocam = methods(model, layer, layout, args.internal_batch_size)
            unknown = [method for method in skip if method not in runs]
            if unknown:
                parser.error(f"--skip: unknown {unknown}; the timed methods are {list(runs)}")
            baseline = None
            for method, run in runs.items():
                if method in skip:
                    continue
                if method in ("ScoreCAM (grad-cam)", IBA_COST) and batch > scorecam_max:
                    continue
                call = functools.partial(run, x, target)
                seconds = clock(call, device, args.repeats)
                baseline = baseline or seconds
                row = f"| {name} | {batch} | {method} | {seconds:.3f} | {seconds / baseline:.2f} |"
                if method == "InfoCAM":
                    strategy = infocam.suffix_strategy_used
                    row = row.replace("| InfoCAM |", f"| InfoCAM ({strategy}) |")
                if args.memory:
                    megabytes = peak_memory_mb(
                        name, batch, method, device, call, args.internal_batch_size
                    )
                    row += f" {megabytes:.0f} |"
                print(row, flush=True)


if __name__ == "__main__":
    main()
