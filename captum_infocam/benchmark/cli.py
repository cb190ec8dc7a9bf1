"""Arguments shared by the benchmark's commands: counts that argparse checks, so that a
bad value is a one-line error before any work, and the item counts."""

from __future__ import annotations

import argparse
from typing import Callable, Iterable

from captum_infocam.benchmark.zoo import ARCHITECTURES

__all__ = [
    "add_item_counts",
    "at_least",
    "comma_separated",
    "count",
    "networks",
    "positive",
    "rate",
    "scale",
]


def _integer(text: str, minimum: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer, got {text!r}") from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
    return value


def count(text: str) -> int:
    """An argparse type: an integer >= 0 (a number of items; 0 leaves them out)."""
    return _integer(text, 0)


def positive(text: str) -> int:
    """An argparse type: an integer >= 1 (a batch size, a number of steps or epochs)."""
    return _integer(text, 1)


def at_least(minimum: int) -> Callable[[str], int]:
    """An argparse type: an integer >= ``minimum`` (e.g. 2 repeats, to measure a spread)."""

    def parse(text: str) -> int:
        return _integer(text, minimum)

    return parse


def _number(text: str, strict: bool) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
    low_ok = value > 0 if strict else value >= 0
    if not (low_ok and value < float("inf")):
        raise argparse.ArgumentTypeError(
            f"must be {'>' if strict else '>='} 0 and finite, got {value}"
        )
    return value


def rate(text: str) -> float:
    """An argparse type: a finite number > 0 (a learning rate)."""
    return _number(text, strict=True)


def scale(text: str) -> float:
    """An argparse type: a finite number >= 0 (a noise's standard deviation)."""
    return _number(text, strict=False)


def comma_separated(allowed: Iterable[str], noun: str) -> Callable[[str], list[str]]:
    """An argparse type: comma-separated names, each one of ``allowed`` (a ``noun``)."""
    choices = list(allowed)

    def parse(text: str) -> list[str]:
        names = text.split(",")
        unknown = [name for name in names if name not in choices]
        if unknown:
            raise argparse.ArgumentTypeError(f"unknown {noun}(s) {unknown}; choose from {choices}")
        return names

    return parse


#: An argparse type: comma-separated names of shipped networks, each checked.
networks = comma_separated(sorted(ARCHITECTURES), "network")


def add_item_counts(
    parser: argparse.ArgumentParser, images: int, pairs: int, grids: int | None = None
) -> None:
    """``--images``, ``--pairs`` and, unless ``grids`` is ``None``, ``--grids``: how many
    items of each split of the shapes data set a command explains, with these defaults."""
    parser.add_argument("--images", type=count, default=images, help="one-object images")
    parser.add_argument(
        "--pairs", type=count, default=pairs, help="two-object images (2 items each)"
    )
    if grids is not None:
        parser.add_argument(
            "--grids",
            type=count,
            default=grids,
            help="2 x 2 grids of four classes (4 items each, the grid pointing game)",
        )
