"""Cost of insertion/deletion relative to the bare forward passes they must run.

For torchvision ResNet-18 (random weights) on N images, each metric scores
N * n_steps perturbed images plus the N originals, in batches of
``--batch-size``. The baseline runs exactly that many bare forward passes of the
same batch size on the unperturbed images. The ratio is the metric's overhead
(ranking pixels, building perturbed images, collecting scores); 1.0 is free.

    python timing/metrics_speed.py [--device cuda] [--images 32] [--n-steps 16]
"""

from __future__ import annotations

import argparse
import functools

import torch
import torchvision

from captum_infocam.benchmark.clock import clock
from captum_infocam.metrics import deletion_auc, insertion_auc


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
    x = torch.randn(args.images, 3, args.size, args.size, device=device)
    maps = torch.rand(args.images, 1, 7, 7, device=device)
    target = torch.randint(0, 1000, (args.images,), device=device)
    total = args.images * (args.n_steps + 1)

    def bare_forwards() -> None:
        with torch.no_grad():
            for start in range(0, total, args.batch_size):
                rows = min(args.batch_size, total - start)
                model(x[torch.arange(start, start + rows, device=device) % args.images])

    kwargs = dict(target=target, n_steps=args.n_steps, max_examples_per_batch=args.batch_size)
    baseline = clock(bare_forwards, device, args.repeats)
    print(
        f"device: {torch.cuda.get_device_name(device) if device.type == 'cuda' else 'cpu'}, "
        f"threads: {torch.get_num_threads()}"
    )
    print(
        f"ResNet-18, {args.images} images of {args.size}^2, {args.n_steps} steps, "
        f"batch {args.batch_size}: {total} forward passes per metric"
    )
    print("| run | seconds | ratio to bare forwards |\n| --- | --- | --- |")
    print(f"| bare forward passes | {baseline:.3f} | 1.00 |")
    for metric in (insertion_auc, deletion_auc):
        seconds = clock(functools.partial(metric, model, x, maps, **kwargs), device, args.repeats)
        print(f"| {metric.__name__} | {seconds:.3f} | {seconds / baseline:.2f} |")


if __name__ == "__main__":
    main()
