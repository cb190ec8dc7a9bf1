r"""Meta-evaluation of the confidence metrics, in the style of MetaQuantus.

MetaQuantus (Hedström et al., 2023) judges a metric by two properties:

* **Reactivity** to adversarial maps. Six maps are explained per item, in an
  order of faithfulness that a metric should reproduce: the oracle object
  mask, the best method (Grad-CAM by default), a random map, a constant map,
  the inverse object mask (which keeps everything but the object) and a
  near-all-ones map (ones, one corner pixel 0: the trick that keeps almost the
  whole image). For each consecutive pair ``(A, B)`` of :data:`ORDER` the
  error rate is the share of items where the metric ranks ``B`` above ``A``,
  ties counting one half.
* **Resilience** to perturbations that should not change the verdict: the
  metric's spread over ``repeats`` copies of each item under imperceptible
  Gaussian input noise (maps kept fixed, so that only the metric is judged), and
  under Gaussian noise on the model's logits. The spread is the standard
  deviation over the repeats, averaged over items and maps, divided by the
  metric's own signal: the standard deviation over the six maps of the clean
  values, averaged over items. This noise-to-signal ratio is scale-free, so a
  classic and an improved metric compare as a ratio improved / classic.

``python -m captum_infocam.benchmark meta`` prints the tables of
``docs/metrics.md``.
"""

from __future__ import annotations

import argparse
import itertools
from typing import Callable

import torch
from torch import Tensor, nn
from tqdm import tqdm

from captum_infocam.benchmark.cli import at_least, count, positive, scale
from captum_infocam.benchmark.items import Batch, ShapesItems
from captum_infocam.benchmark.methods import METHODS, Explainer
from captum_infocam.benchmark.run import METRICS, MetricColumn
from captum_infocam.benchmark.zoo import ARCHITECTURES, LAYERS, load_model
from captum_infocam.metrics import confidence_metrics

__all__ = [
    "CONFIDENCE_KEYS",
    "ORDER",
    "PAIRS",
    "NoisyLogits",
    "add_arguments",
    "adversarial_maps",
    "meta_evaluate",
    "reactivity",
    "resilience",
]

#: The maps, from the most to the least faithful.
ORDER = ("oracle", "best", "random", "constant", "inverse", "near-ones")
#: The consecutive pairs whose order is checked.
PAIRS = tuple(itertools.pairwise(ORDER))
#: The metrics judged, classic then improved: keys of :data:`.run.METRICS`.
CONFIDENCE_KEYS = (
    "average_drop",
    "average_increase",
    "average_gain",
    "improved_average_drop",
    "improved_average_increase",
)
#: Improved / classic pairs whose resilience is compared.
RATIOS = (
    ("improved_average_drop", "average_drop"),
    ("improved_average_increase", "average_increase"),
    ("improved_average_increase", "average_gain"),
)


def _columns() -> list[MetricColumn]:
    by_key = {column.key: column for column in METRICS}
    return [by_key[key] for key in CONFIDENCE_KEYS]


class NoisyLogits(nn.Module):
    """``model``'s logits plus Gaussian noise of standard deviation ``scale``, fresh per call.

    Args:
        model (nn.Module): the classifier.
        scale (float): the noise's standard deviation, in logits.
        seed (int): seed of the noise's own generator.
    """

    def __init__(self, model: nn.Module, scale: float, seed: int) -> None:
        super().__init__()
        self.model, self.scale = model, scale
        self.generator = torch.Generator().manual_seed(seed)

    def forward(self, x: Tensor) -> Tensor:
        logits = self.model(x)
        noise = torch.randn(logits.shape, generator=self.generator, dtype=logits.dtype)
        return logits + self.scale * noise.to(logits.device)


def adversarial_maps(batch: Batch, best: Tensor, random: Tensor) -> dict[str, Tensor]:
    """The six maps of :data:`ORDER` for ``batch``, each ``(N, 1, h, w)``.

    Args:
        batch (Batch): the items.
        best (Tensor): the best method's maps ``(N, 1, h, w)`` or ``(N, h, w)``.
        random (Tensor): random maps, likewise.
    """
    mask = batch.mask[:, None].to(batch.image.dtype)
    ones = torch.ones_like(mask)
    near_ones = ones.clone()
    near_ones[..., 0, 0] = 0
    as_4d = {name: m if m.dim() == 4 else m[:, None] for name, m in (("b", best), ("r", random))}
    return {
        "oracle": mask,
        "best": as_4d["b"].detach(),
        "random": as_4d["r"],
        "constant": ones,
        "inverse": 1 - mask,
        "near-ones": near_ones,
    }


def _metrics(model: Callable[..., Tensor], image: Tensor, maps: dict[str, Tensor], target: Tensor):
    """Each confidence metric on every map: ``{metric: (len(ORDER), N)}``, in one call per
    map size (maps are normalised at their own resolution, so only maps of one size can
    share a call)."""
    rows: dict[str, dict[str, Tensor]] = {}
    for size in dict.fromkeys(tuple(maps[name].shape[-2:]) for name in ORDER):
        names = [name for name in ORDER if tuple(maps[name].shape[-2:]) == size]
        values = confidence_metrics(
            model,
            image.repeat(len(names), 1, 1, 1),
            torch.cat([maps[name] for name in names]),
            target=target.repeat(len(names)),
            max_examples_per_batch=512,
        )
        for position, name in enumerate(names):
            rows[name] = {
                key: values[key].view(len(names), len(image))[position] for key in CONFIDENCE_KEYS
            }
    return {key: torch.stack([rows[name][key] for name in ORDER]) for key in CONFIDENCE_KEYS}


def meta_evaluate(
    model: nn.Module,
    items: ShapesItems,
    best: Explainer,
    random: Explainer,
    batch_size: int = 20,
    repeats: int = 5,
    input_noise: float = 2 / 255,
    score_noise: float = 0.1,
    seed: int = 0,
) -> dict[str, dict[str, Tensor]]:
    """The confidence metrics on every adversarial map, clean and under noise.

    Args:
        model (nn.Module): the classifier.
        items (ShapesItems): the items explained.
        best (Explainer): the best method.
        random (Explainer): the random baseline.
        batch_size (int): items per batch.
        repeats (int): noisy repeats of each kind.
        input_noise (float): standard deviation of the input noise (pixels in [0, 1]).
        score_noise (float): standard deviation of the logit noise.
        seed (int): seed of both noises.

    Returns:
        ``{"clean": {metric: (M, I)}, "input": {metric: (R, M, I)}, "score": {...}}``,
        ``M = len(ORDER)`` maps, ``I`` items, ``R`` repeats, on the CPU.
    """
    noisy_model = NoisyLogits(model, score_noise, seed)
    input_generator = torch.Generator().manual_seed(seed)
    parts: dict[str, list[dict[str, Tensor]]] = {"clean": [], "input": [], "score": []}
    for start in tqdm(range(0, len(items), batch_size), desc=f"meta {items.split}", leave=False):
        batch = items.load(range(start, min(start + batch_size, len(items))))
        maps = adversarial_maps(batch, best(batch), random(batch))
        image, target = batch.image, batch.target
        parts["clean"].append(_metrics(model, image, maps, target))
        noisy_inputs, noisy_scores = [], []
        for _ in range(repeats):
            noise = torch.randn(image.shape, generator=input_generator) * input_noise
            noisy_inputs.append(_metrics(model, image + noise, maps, target))
            noisy_scores.append(_metrics(noisy_model, image, maps, target))
        parts["input"].append(_stacked(noisy_inputs))
        parts["score"].append(_stacked(noisy_scores))
    return {
        kind: {key: torch.cat([p[key] for p in batches], -1) for key in CONFIDENCE_KEYS}
        for kind, batches in parts.items()
    }


def _stacked(repeats: list[dict[str, Tensor]]) -> dict[str, Tensor]:
    return {key: torch.stack([r[key] for r in repeats]) for key in CONFIDENCE_KEYS}


def reactivity(values: Tensor, higher_is_better: bool) -> dict[tuple[str, str], float]:
    """Error rate of each pair of :data:`PAIRS` for clean values ``(len(ORDER), I)``.

    An item counts 1 where the metric ranks the second map strictly better, 1/2
    where it ties them.
    """
    sign = 1.0 if higher_is_better else -1.0
    errors = {}
    for first, second in PAIRS:
        margin = sign * (values[ORDER.index(first)] - values[ORDER.index(second)])
        errors[(first, second)] = ((margin < 0).double() + 0.5 * (margin == 0).double()).mean()
    return {pair: float(rate) for pair, rate in errors.items()}


def resilience(clean: Tensor, noisy: Tensor) -> float:
    """Noise-to-signal ratio: spread over the repeats ``noisy (R, M, I)`` over the spread
    over the maps of ``clean (M, I)``, each a standard deviation averaged over the rest.
    One repeat has no spread: at least two are needed."""
    if len(noisy) < 2:
        raise ValueError(f"the resilience needs at least 2 noisy repeats, got {len(noisy)}")
    spread = noisy.double().std(0, correction=0).mean()
    signal = clean.double().std(0, correction=0).mean()
    return float(spread / signal)


def _ratio(improved: float, classic: float) -> float:
    return improved / classic if classic > 0 else float("inf" if improved > 0 else "nan")


LABELS = {column.key: column.label for column in METRICS}


def markdown_table(results: dict[str, dict[str, dict[str, Tensor]]]) -> str:
    """One row per split and metric: pair error rates, their mean, the two noise-to-signal
    ratios; then the improved / classic ratios of the latter."""
    pair_names = [f"{a} > {b}" for a, b in PAIRS]
    head = ["split", "metric", *pair_names, "mean error", "input noise N/S", "score noise N/S"]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    ratio_lines = []
    for split, result in results.items():
        noise = {}
        for column in _columns():
            clean = result["clean"][column.key]
            errors = reactivity(clean, column.higher_is_better)
            noise[column.key] = [
                resilience(clean, result[kind][column.key]) for kind in ("input", "score")
            ]
            cells = [f"{rate:.2f}" for rate in errors.values()]
            mean = sum(errors.values()) / len(errors)
            cells += [f"{mean:.2f}", *(f"{n:.3f}" for n in noise[column.key])]
            lines.append(f"| {split} | {column.label} | " + " | ".join(cells) + " |")
        for improved, classic in RATIOS:
            ratios = [_ratio(noise[improved][k], noise[classic][k]) for k in range(2)]
            ratio_lines.append(
                f"| {split} | {LABELS[improved]} / {LABELS[classic]} | "
                + " | ".join(f"{r:.2f}" for r in ratios)
                + " |"
            )
    ratio_head = (
        "| split | improved / classic | input noise | score noise |\n| --- | --- | --- | --- |"
    )
    return (
        "\n".join(lines)
        + "\n\nResilience ratios (below 1: the improved metric is more resilient)\n\n"
        + ratio_head
        + "\n"
        + "\n".join(ratio_lines)
    )


def _meta(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    print(
        f"Meta-evaluation: {args.images} one-object images, {args.pairs} two-object images "
        f"(2 items each), {args.repeats} repeats, input noise {args.input_noise:.4f}, "
        f"logit noise {args.score_noise}, best method {args.best}"
    )
    for arch in args.archs:
        model = load_model(arch)
        layer = model.get_submodule(LAYERS[arch]["last"])
        best = METHODS[args.best](model, layer)
        random = METHODS["Random"](model, layer)
        splits = [
            ShapesItems("single", args.images, args.seed),
            ShapesItems("pair", args.pairs, args.seed),
        ]
        results = {
            items.split: meta_evaluate(
                model,
                items,
                best,
                random,
                batch_size=args.batch_size,
                repeats=args.repeats,
                input_noise=args.input_noise,
                score_noise=args.score_noise,
                seed=args.seed,
            )
            for items in splits
            if len(items)
        }
        print(f"\n### {arch}\n")
        print(markdown_table(results))


def _architectures(text: str) -> list[str]:
    """``--archs``: comma-separated shipped networks, each checked."""
    names = text.split(",")
    unknown = [name for name in names if name not in ARCHITECTURES]
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown network(s) {unknown}; choose from {sorted(ARCHITECTURES)}"
        )
    return names


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``meta`` command's arguments and handler."""
    parser.add_argument(
        "--archs",
        type=_architectures,
        default=sorted(ARCHITECTURES),
        help="comma-separated shipped networks",
    )
    parser.add_argument("--images", type=count, default=40, help="one-object images")
    parser.add_argument("--pairs", type=count, default=20, help="two-object images (2 items each)")
    parser.add_argument(
        "--best",
        choices=["Grad-CAM", "InfoCAM"],
        default="Grad-CAM",
        help="the method whose maps are the meta-evaluation's good maps",
    )
    parser.add_argument(
        "--repeats",
        type=at_least(2),
        default=5,
        help="noisy repeats of each kind (at least 2: the resilience is their spread)",
    )
    parser.add_argument("--input-noise", type=scale, default=2 / 255, help="pixel noise std")
    parser.add_argument("--score-noise", type=scale, default=0.1, help="logit noise std")
    parser.add_argument("--batch-size", type=positive, default=20, help="items per call")
    parser.add_argument("--seed", type=count, default=0, help="data seed")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.set_defaults(handler=_meta)
