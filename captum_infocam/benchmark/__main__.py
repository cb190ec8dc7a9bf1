"""``python -m captum_infocam.benchmark {run,train,sanity}``.

* ``run`` (what ``make demo`` calls): compares InfoCAM with the classic CAMs on
  every metric, prints a markdown table and writes per-image results and a
  figure. Under ``torchrun`` the images are split across processes.
* ``train``: retrains a shipped network reproducibly.
* ``sanity``: the model-randomisation check.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from captum_infocam.benchmark.zoo import ARCHITECTURES, weights_path


def _train(args: argparse.Namespace) -> None:
    from captum_infocam.benchmark.train import train

    out = args.out or (None if args.no_objects else weights_path(args.arch))
    result = train(
        args.arch,
        epochs=args.epochs,
        images_per_epoch=args.images_per_epoch,
        seed=args.seed,
        draw_objects=not args.no_objects,
        out=out,
    )
    what = "without the class shapes" if args.no_objects else "on the shapes data set"
    print(f"{args.arch} trained {what}: held-out accuracy {result.val_accuracy:.4f}")
    if out is not None:
        print(f"weights written to {out}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m captum_infocam.benchmark", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    from captum_infocam.benchmark.run import add_run_arguments, add_sanity_arguments

    add_run_arguments(commands.add_parser("run", help="compare the methods on every metric"))
    add_sanity_arguments(commands.add_parser("sanity", help="model-randomisation check"))

    train = commands.add_parser("train", help="retrain a shipped network")
    train.add_argument("--arch", choices=sorted(ARCHITECTURES), required=True)
    train.add_argument("--epochs", type=int, default=6)
    train.add_argument("--images-per-epoch", type=int, default=12_000)
    train.add_argument("--seed", type=int, default=0)
    train.add_argument(
        "--no-objects",
        action="store_true",
        help="train on images without the class shapes (leakage check)",
    )
    train.add_argument(
        "--out",
        type=Path,
        default=None,
        help="where to write the weights (default: the shipped file)",
    )
    train.set_defaults(handler=_train)

    args = parser.parse_args(argv)
    args.handler(args)


if __name__ == "__main__":
    main()
