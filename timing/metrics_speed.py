"""Cost of each metric relative to the bare forward passes it must run.

For torchvision ResNet-18 (random weights) on N images, each metric scores a
known number of images per example (its forward passes over the batch, listed
below), in batches of ``--batch-size``. Its baseline runs exactly that many bare
forward passes of the same batch size on the unperturbed images, in the same
run. The ratio is the metric's overhead (ranking pixels, building perturbed
images, imputing, collecting scores); 1.0 is free.

* classic Average Drop, Increase, Gain: 2 passes (Y, O);
* improved Average Drop: 1 + |B| + J = 9 (Y, 4 budgets, 4 noisy copies);
* improved Average Increase: 1 + |B| + J + |B| J = 25 (and 4 noisy copies per budget);
* ``confidence_metrics`` (all five): 2 + |B| + J + |B| J = 26;
* insertion, deletion: n_steps + 1;
* ROAD MoRF, LeRF: one per removal fraction (9), plus the imputation.

    python timing/metrics_speed.py [--device cuda] [--images 32] [--size 224] [--n-steps 16]
"""

from __future__ import annotations

import argparse
import functools

import torch
import torchvision

from captum_infocam.benchmark.clock import clock
from captum_infocam.metrics import (
    average_drop,
    average_gain,
    average_increase,
    confidence_metrics,
    deletion_auc,
    improved_average_drop,
    improved_average_increase,
    insertion_auc,
    road_least_relevant_first,
    road_most_relevant_first,
)
from captum_infocam.metrics.confidence import DEFAULT_BUDGETS, DEFAULT_NOISE_COPIES
from captum_infocam.metrics.road import DEFAULT_FRACTIONS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--images", type=int, default=32)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--n-steps", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    device = torch.device(args.device)
    torch.manual_seed(0)
    model = torchvision.models.resnet18().eval().to(device)
    x = torch.rand(args.images, 3, args.size, args.size, device=device)
    maps = torch.rand(args.images, 1, 7, 7, device=device)
    target = torch.randint(0, 1000, (args.images,), device=device)
    common = dict(target=target, max_examples_per_batch=args.batch_size)
    improved = 1 + len(DEFAULT_BUDGETS) + DEFAULT_NOISE_COPIES
    increase = improved + len(DEFAULT_BUDGETS) * DEFAULT_NOISE_COPIES
    curve = dict(common, n_steps=args.n_steps)
    metrics = [
        (average_drop, common, 2),
        (average_increase, common, 2),
        (average_gain, common, 2),
        (improved_average_drop, common, improved),
        (improved_average_increase, common, increase),
        (confidence_metrics, common, increase + 1),
        (insertion_auc, curve, args.n_steps + 1),
        (deletion_auc, curve, args.n_steps + 1),
        (road_most_relevant_first, common, len(DEFAULT_FRACTIONS)),
        (road_least_relevant_first, common, len(DEFAULT_FRACTIONS)),
    ]

    def bare_forwards(total: int) -> None:
        with torch.no_grad():
            for start in range(0, total, args.batch_size):
                rows = min(args.batch_size, total - start)
                model(x[torch.arange(start, start + rows, device=device) % args.images])

    print(
        f"device: {torch.cuda.get_device_name(device) if device.type == 'cuda' else 'cpu'}, "
        f"threads: {torch.get_num_threads()}; ResNet-18, {args.images} images of "
        f"{args.size}^2, batch {args.batch_size}, {args.n_steps} insertion/deletion steps"
    )
    print(
        "| metric | passes | seconds | bare forwards (s) | ratio |\n| --- | --- | --- | --- | --- |"
    )
    for metric, kwargs, passes in metrics:
        # The baseline is timed right before its metric, so that a change in the machine's
        # load between the two (a shared CPU) skews the ratio as little as possible.
        baseline = clock(
            functools.partial(bare_forwards, passes * args.images), device, args.repeats
        )
        seconds = clock(functools.partial(metric, model, x, maps, **kwargs), device, args.repeats)
        print(
            f"| {metric.__name__} | {passes} | {seconds:.3f} | {baseline:.3f} | "
            f"{seconds / baseline:.2f} |"
        )


if __name__ == "__main__":
    main()
