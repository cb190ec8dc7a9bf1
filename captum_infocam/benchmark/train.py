"""Training the benchmark's networks on the shapes data set, reproducibly.

Every epoch draws fresh images (the data set is an endless seeded stream), so the
networks see no image twice. With the same seed, software and thread count, the
run repeats exactly.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from captum_infocam.benchmark.cli import count, positive, rate
from captum_infocam.benchmark.data import ShapesDataset, collate
from captum_infocam.benchmark.zoo import ARCHITECTURES, weights_path

__all__ = ["TrainingResult", "accuracy", "add_arguments", "train"]


@dataclass(frozen=True)
class TrainingResult:
    model: nn.Module
    val_accuracy: float


def accuracy(model: nn.Module, dataset: ShapesDataset, batch_size: int = 256) -> float:
    """Top-1 accuracy of ``model`` on the first object's label of each item."""
    correct = 0
    with torch.no_grad():
        for batch in DataLoader(dataset, batch_size=batch_size, collate_fn=collate):
            correct += int((model(batch.image).argmax(1) == batch.labels[:, 0]).sum())
    return correct / len(dataset)


def train(
    arch: str,
    epochs: int = 6,
    images_per_epoch: int = 12_000,
    batch_size: int = 64,
    lr: float = 3e-3,
    seed: int = 0,
    draw_objects: bool = True,
    val_images: int = 2_000,
    out: Path | None = None,
    show_progress: bool = True,
) -> TrainingResult:
    """Trains ``arch`` from scratch; returns the model (eval mode) and its held-out accuracy.

    Args:
        arch (str): a key of :data:`captum_infocam.benchmark.zoo.ARCHITECTURES`.
        epochs (int): passes, each over ``images_per_epoch`` fresh images.
        batch_size (int): images per step.
        lr (float): peak learning rate of AdamW (one-cycle schedule).
        seed (int): seeds the weights and the data stream.
        draw_objects (bool): ``False`` trains on images without the class shapes,
            the check that nothing else in an image gives the class away.
        val_images (int): held-out images (split ``"val"``) for the accuracy.
        out (Path, optional): where to save the ``state_dict``.
        show_progress (bool): show a progress bar.
    """
    torch.manual_seed(seed)
    model = ARCHITECTURES[arch]()
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    steps_per_epoch = -(-images_per_epoch // batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=lr, total_steps=epochs * steps_per_epoch
    )
    progress = tqdm(total=epochs * steps_per_epoch, disable=not show_progress, desc=f"train {arch}")
    for epoch in range(epochs):
        stream = ShapesDataset(
            "train",
            images_per_epoch,
            seed=seed,
            draw_objects=draw_objects,
            offset=epoch * images_per_epoch,
        )
        model.train()
        for batch in DataLoader(stream, batch_size=batch_size, collate_fn=collate):
            loss = nn.functional.cross_entropy(model(batch.image), batch.labels[:, 0])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            progress.update()
            progress.set_postfix(epoch=epoch, loss=f"{loss.item():.3f}")
    progress.close()
    model.eval()
    val = ShapesDataset("val", val_images, seed=seed, draw_objects=draw_objects)
    result = TrainingResult(model=model, val_accuracy=accuracy(model, val))
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        torch.save(model.state_dict(), out)
    return result


def _train_command(args: argparse.Namespace) -> None:
    if args.out is None and not args.replace_shipped and not args.no_objects:
        raise SystemExit(
            "train writes the weights to --out PATH; --replace-shipped overwrites the "
            f"package's own {weights_path(args.arch).name} (a maintainer's retraining)"
        )
    out = args.out or (weights_path(args.arch) if args.replace_shipped else None)
    result = train(
        args.arch,
        epochs=args.epochs,
        images_per_epoch=args.images_per_epoch,
        lr=args.lr,
        seed=args.seed,
        draw_objects=not args.no_objects,
        out=out,
    )
    what = "without the class shapes" if args.no_objects else "on the shapes data set"
    print(f"{args.arch} trained {what}: held-out accuracy {result.val_accuracy:.4f}")
    if out is not None:
        print(f"weights written to {out}")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``train`` command's arguments and handler."""
    parser.add_argument(
        "--arch", choices=sorted(ARCHITECTURES), required=True, help="the network to train"
    )
    parser.add_argument("--epochs", type=positive, default=6, help="passes over fresh images")
    parser.add_argument(
        "--images-per-epoch", type=positive, default=12_000, help="fresh images per epoch"
    )
    parser.add_argument(
        "--lr",
        type=rate,
        default=3e-3,
        help="peak learning rate of AdamW's one-cycle schedule (the shipped vit: 1e-3)",
    )
    parser.add_argument("--seed", type=count, default=0, help="weights and data seed")
    parser.add_argument(
        "--no-objects",
        action="store_true",
        help="train on images without the class shapes (leakage check)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="where to write the weights",
    )
    parser.add_argument(
        "--replace-shipped",
        action="store_true",
        help="write them over the package's shipped weights instead",
    )
    parser.set_defaults(handler=_train_command)
