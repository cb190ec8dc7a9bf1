r"""Meta-evaluation of the metrics, in the style of MetaQuantus.

MetaQuantus (Hedström et al., 2023) judges a metric by how it answers two kinds of
perturbation: minor ones, which should not change its verdicts (resilience), and
disruptive ones, which should (reactivity). Here the maps are fixed per item, so that only
the metric is judged, and are of three kinds:

* **Ground truth** (:data:`CLASSES`): classes of maps, from the most to the least
  faithful; a metric should rank every map of a class above every map of a later class.
  *faithful*: the oracle object mask and the best method's map (Grad-CAM by default),
  not ordered between them (whether the model uses the object alone is what the metrics
  are asked, not something known); *blind*: a random map at the layer's resolution,
  pixel noise, a constant map and a near-all-ones map (ones, the top-left pixel 0; the
  same image as the constant map up to one pixel); *misleading*: the inverse object mask
  (everything but the object).
* **Gaming** (:data:`GAMING`): the near-all-ones map with the object at 1 and the rest at
  0.9, whose pixel order is the oracle's and whose energy is almost uniform; it is built
  to win the confidence metrics without pointing anywhere, so it is scored and reported
  (:func:`wins_table`) but belongs to no class.

Scores:

* **Class-order error**: for each consecutive pair of classes, the share of (item, map
  of the first class, map of the second class) where the metric ranks the second map
  strictly better, ties counting one half (0 perfect, 0.5 chance).
* **Noise-to-signal ratios** under three minor perturbations, each ``repeats`` times:
  Gaussian noise on the input pixels, Gaussian noise on the logits, and MetaQuantus's
  model resilience test, weights multiplied by :math:`\mathcal{N}(1, \sigma^2)` with
  :math:`\sigma = 10^{-3}`. The noise is the standard deviation over the repeats, the
  signal the standard deviation over the maps of the clean values, each averaged over
  items, both over the maps of :data:`STRUCTURED` only (maps a method could return), so
  that the extreme values of degenerate maps dominate neither. The *centred* ratio first
  subtracts each item's mean over the maps: it leaves out noise that moves every map's
  value alike, which changes no comparison between maps but does change the values a
  table reports.
* **Order kept under a randomised model**: MetaQuantus's model adversary test, weights
  multiplied by :math:`\mathcal{N}(1, 2^2)`; the share of (item, pair of
  :data:`STRUCTURED` maps) whose order under the randomised model is the clean order
  (ties one half). A metric that reads the model forgets the order (about 0.5); 1 means
  the verdicts did not depend on the model at all.

``python -m captum_infocam.benchmark meta`` prints the tables of ``docs/metrics.md``.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import itertools
from typing import Collection

import torch
from torch import Tensor, nn
from tqdm import tqdm

from captum_infocam.benchmark.cli import add_item_counts, at_least, count, networks, positive, scale
from captum_infocam.benchmark.items import Batch, ShapesItems
from captum_infocam.benchmark.methods import METHODS, Explainer, key_seed
from captum_infocam.benchmark.run import METRIC_COLUMNS, METRICS, scoring_tasks
from captum_infocam.benchmark.zoo import LAYERS, load_model

__all__ = [
    "CLASSES",
    "CLASS_PAIRS",
    "CONFIDENCE_KEYS",
    "GAMING",
    "MAPS",
    "ORDER",
    "PERTURBATIONS",
    "STRUCTURED",
    "NoisyLogits",
    "add_arguments",
    "adversarial_maps",
    "class_order_errors",
    "confidence_table",
    "meta_evaluate",
    "order_kept",
    "perturbed_weights",
    "resilience",
    "wins_table",
]

#: The ground truth: classes of maps, from the most to the least faithful.
CLASSES = (
    ("faithful", ("oracle", "best")),
    ("blind", ("random", "pixel-noise", "constant", "near-ones")),
    ("misleading", ("inverse",)),
)
#: The consecutive pairs of classes whose order is checked.
CLASS_PAIRS = tuple(itertools.pairwise(name for name, _ in CLASSES))
#: The ground truth's maps, class after class.
ORDER = tuple(name for _, names in CLASSES for name in names)
#: Maps built to game a family of metrics: scored, in no class.
GAMING = ("object-on-ones",)
#: Every map, in the order of the results' rows.
MAPS = ORDER + GAMING
#: The maps a method could return: the noise-to-signal ratios and the randomised model's
#: order are measured on these.
STRUCTURED = ("oracle", "best", "random", "pixel-noise")
#: The perturbations: three minor (a noise-to-signal ratio each), one disruptive.
PERTURBATIONS = ("input", "logits", "weights", "randomised")
#: The metrics judged under perturbations, classic then improved: keys of :data:`.run.METRICS`.
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
#: The gaming map's value off the object.
GAMING_BACKGROUND = 0.9


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


def perturbed_weights(model: nn.Module, std: float, generator: torch.Generator) -> nn.Module:
    """A copy of ``model`` whose parameters are multiplied elementwise by draws of
    :math:`\\mathcal{N}(1, \\mathrm{std}^2)`, as MetaQuantus's model perturbation test does;
    ``model`` is left unchanged."""
    noisy = copy.deepcopy(model)
    with torch.no_grad():
        for parameter in noisy.parameters():
            factor = 1 + std * torch.randn(parameter.shape, generator=generator)
            parameter.mul_(factor.to(parameter))
    return noisy


def adversarial_maps(batch: Batch, best: Tensor, random: Tensor) -> dict[str, Tensor]:
    """The maps of :data:`MAPS` for ``batch``, each ``(N, 1, h, w)``.

    Args:
        batch (Batch): the items.
        best (Tensor): the best method's maps ``(N, 1, h, w)`` or ``(N, h, w)``.
        random (Tensor): random maps, likewise.
    """
    mask = batch.mask[:, None].to(batch.image.dtype)
    near_ones = torch.ones_like(mask)
    near_ones[..., 0, 0] = 0
    gaming = GAMING_BACKGROUND + (1 - GAMING_BACKGROUND) * mask
    gaming[..., 0, 0] = 0
    pixel_noise = torch.stack(
        [
            torch.rand(
                mask.shape[1:],
                generator=torch.Generator().manual_seed(key_seed(f"pixel-noise {key}")),
            )
            for key in batch.keys
        ]
    ).to(mask)
    as_4d = {name: m if m.dim() == 4 else m[:, None] for name, m in (("b", best), ("r", random))}
    return {
        "oracle": mask,
        "best": as_4d["b"].detach(),
        "random": as_4d["r"],
        "pixel-noise": pixel_noise,
        "constant": torch.ones_like(mask),
        "near-ones": near_ones,
        "inverse": 1 - mask,
        "object-on-ones": gaming,
    }


def _by_size(maps: dict[str, Tensor], names: tuple[str, ...]) -> list[list[str]]:
    """``names`` grouped by their maps' size: maps are normalised at their own resolution,
    so only maps of one size can share a metric call."""
    sizes = dict.fromkeys(tuple(maps[name].shape[-2:]) for name in names)
    return [[name for name in names if tuple(maps[name].shape[-2:]) == size] for size in sizes]


def _scores(
    model: nn.Module,
    batch: Batch,
    maps: dict[str, Tensor],
    metrics: Collection[str] | None = None,
    n_steps: int = 16,
    tolerance: int = 4,
) -> dict[str, Tensor]:
    """The metrics of :data:`.run.METRICS` that apply to ``batch`` (or those whose keys are
    in ``metrics``) on every map: ``{metric: (len(MAPS), N)}``."""
    rows: dict[str, dict[str, Tensor]] = {}
    for names in _by_size(maps, MAPS):
        repeated = Batch(
            batch.image.repeat(len(names), 1, 1, 1),
            batch.target.repeat(len(names)),
            batch.mask.repeat(len(names), 1, 1),
            batch.keys * len(names),
        )
        stacked = torch.cat([maps[name] for name in names])
        values: dict[str, Tensor] = {}
        for task in scoring_tasks(model, repeated, stacked, n_steps, tolerance, metrics=metrics):
            values |= task()
        for position, name in enumerate(names):
            rows[name] = {
                key: value.view(len(names), len(batch.image))[position]
                for key, value in values.items()
            }
    return {key: torch.stack([rows[name][key] for name in MAPS]) for key in rows[MAPS[0]]}


def meta_evaluate(
    model: nn.Module,
    items: ShapesItems,
    best: Explainer,
    random: Explainer,
    batch_size: int = 20,
    repeats: int = 5,
    input_noise: float = 2 / 255,
    score_noise: float = 0.1,
    weight_noise: float = 1e-3,
    randomisation: float = 2.0,
    seed: int = 0,
    n_steps: int = 16,
    tolerance: int = 4,
) -> dict[str, dict[str, Tensor]]:
    """Every metric on every map of :data:`MAPS`, clean; the confidence metrics under each
    perturbation of :data:`PERTURBATIONS`.

    Args:
        model (nn.Module): the classifier, in eval mode; left unchanged.
        items (ShapesItems): the items explained.
        best (Explainer): the best method.
        random (Explainer): the random baseline.
        batch_size (int): items per batch.
        repeats (int): repeats of each perturbation.
        input_noise (float): standard deviation of the input noise (pixels in [0, 1]).
        score_noise (float): standard deviation of the logit noise.
        weight_noise (float): standard deviation of the minor multiplicative weight noise.
        randomisation (float): standard deviation of the disruptive multiplicative weight
            noise.
        seed (int): seed of every perturbation.
        n_steps (int): insertion and deletion steps.
        tolerance (int): the pointing game's tolerance in pixels.

    Returns:
        ``{"clean": {metric: (M, I)}, perturbation: {confidence metric: (R, M, I)}}``,
        ``M = len(MAPS)`` maps, ``I`` items, ``R`` repeats, on the CPU.
    """
    generator = torch.Generator().manual_seed(seed)
    noisy_logits = NoisyLogits(model, score_noise, seed)
    # The r-th perturbed model is the same for every batch.
    models = {
        "weights": [perturbed_weights(model, weight_noise, generator) for _ in range(repeats)],
        "randomised": [perturbed_weights(model, randomisation, generator) for _ in range(repeats)],
    }
    parts: dict[str, list[dict[str, Tensor]]] = {kind: [] for kind in ("clean", *PERTURBATIONS)}
    for start in tqdm(range(0, len(items), batch_size), desc=f"meta {items.split}", leave=False):
        batch = items.load(range(start, min(start + batch_size, len(items))))
        maps = adversarial_maps(batch, best(batch), random(batch))
        parts["clean"].append(_scores(model, batch, maps, n_steps=n_steps, tolerance=tolerance))
        runs: dict[str, list[dict[str, Tensor]]] = {kind: [] for kind in PERTURBATIONS}
        for r in range(repeats):
            noise = torch.randn(batch.image.shape, generator=generator) * input_noise
            noisy_batch = dataclasses.replace(batch, image=batch.image + noise)
            runs["input"].append(_scores(model, noisy_batch, maps, CONFIDENCE_KEYS))
            runs["logits"].append(_scores(noisy_logits, batch, maps, CONFIDENCE_KEYS))
            for kind, perturbed in models.items():
                runs[kind].append(_scores(perturbed[r], batch, maps, CONFIDENCE_KEYS))
        for kind, values in runs.items():
            parts[kind].append({key: torch.stack([v[key] for v in values]) for key in values[0]})
    return {
        kind: {key: torch.cat([p[key] for p in batches], -1) for key in batches[0]}
        for kind, batches in parts.items()
    }


def class_order_errors(values: Tensor, higher_is_better: bool) -> dict[tuple[str, str], float]:
    """Error rate of each pair of :data:`CLASS_PAIRS` for clean values ``(len(MAPS), I)``.

    Each (item, map of the first class, map of the second class) counts 1 where the metric
    ranks the second map strictly better, 1/2 where it ties them.
    """
    sign = 1.0 if higher_is_better else -1.0
    members = dict(CLASSES)
    errors = {}
    for first, second in CLASS_PAIRS:
        cells = [
            sign * (values[MAPS.index(a)] - values[MAPS.index(b)])
            for a, b in itertools.product(members[first], members[second])
        ]
        margin = torch.stack(cells).double()
        errors[(first, second)] = float(((margin < 0) + 0.5 * (margin == 0)).mean())
    return errors


def _structured(values: Tensor) -> Tensor:
    """The rows of :data:`STRUCTURED` maps of ``values (..., len(MAPS), I)``."""
    return values[..., [MAPS.index(name) for name in STRUCTURED], :]


def resilience(clean: Tensor, noisy: Tensor, centred: bool = False) -> float:
    """Noise-to-signal ratio: spread over the repeats ``noisy (R, M, I)`` over the spread
    over the maps of ``clean (M, I)``, each a standard deviation averaged over the rest.
    One repeat has no spread: at least two are needed. With ``centred``, each item's mean
    over the maps is subtracted first (in every repeat), so that noise that moves every
    map's value alike, which changes no comparison between maps, is not counted."""
    if len(noisy) < 2:
        raise ValueError(f"the resilience needs at least 2 noisy repeats, got {len(noisy)}")
    if centred:
        clean, noisy = clean - clean.mean(-2, keepdim=True), noisy - noisy.mean(-2, keepdim=True)
    spread = noisy.double().std(0, correction=0).mean()
    signal = clean.double().std(0, correction=0).mean()
    return float(spread / signal)


def order_kept(clean: Tensor, perturbed: Tensor) -> float:
    """Share of (repeat, item, pair of maps) whose order under ``perturbed (R, M, I)`` is the
    order under ``clean (M, I)``: 1 for the same strict order or a tie kept, 1/2 where one
    of the two is a tie, 0 for the reversed order."""
    pairs = list(itertools.combinations(range(clean.shape[0]), 2))
    first, second = [p[0] for p in pairs], [p[1] for p in pairs]
    before = torch.sign(clean[first] - clean[second])
    after = torch.sign(perturbed[:, first] - perturbed[:, second])
    return float((1 - (after - before).abs() / 2).double().mean())


def _ratio(improved: float, classic: float) -> float:
    return improved / classic if classic > 0 else float("inf" if improved > 0 else "nan")


def confidence_table(results: dict[str, dict[str, dict[str, Tensor]]]) -> str:
    """One row per split and confidence metric: class-order errors and their mean, the three
    noise-to-signal ratios, the order kept under a randomised model; then the improved /
    classic ratios of the noise-to-signal ratios, plain and centred (see :func:`resilience`)."""
    head = [
        "split",
        "metric",
        *(f"{a} > {b}" for a, b in CLASS_PAIRS),
        "mean error",
        *(f"{kind} N/S" for kind in PERTURBATIONS[:3]),
        "order kept, randomised",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    ratio_lines = []
    for split, result in results.items():
        noise = {}
        for key in CONFIDENCE_KEYS:
            clean = result["clean"][key]
            errors = list(class_order_errors(clean, METRIC_COLUMNS[key].higher_is_better).values())
            noise[key] = [
                resilience(_structured(clean), _structured(result[kind][key]), centred)
                for centred in (False, True)
                for kind in PERTURBATIONS[:3]
            ]
            kept = order_kept(_structured(clean), _structured(result["randomised"][key]))
            cells = [f"{e:.2f}" for e in errors] + [f"{sum(errors) / len(errors):.2f}"]
            cells += [f"{n:.3f}" for n in noise[key][:3]] + [f"{kept:.2f}"]
            lines.append(f"| {split} | {METRIC_COLUMNS[key].label} | " + " | ".join(cells) + " |")
        for improved, classic in RATIOS:
            ratios = [_ratio(i, c) for i, c in zip(noise[improved], noise[classic], strict=True)]
            label = f"{METRIC_COLUMNS[improved].label} / {METRIC_COLUMNS[classic].label}"
            ratio_lines.append(
                f"| {split} | {label} | " + " | ".join(f"{r:.2f}" for r in ratios) + " |"
            )
    kinds = [*PERTURBATIONS[:3], *(f"{kind}, centred" for kind in PERTURBATIONS[:3])]
    ratio_head = "| split | improved / classic | " + " | ".join(kinds) + " |"
    return "\n".join(
        [
            *lines,
            "",
            "Noise-to-signal ratios, improved / classic (below 1: the improved metric is the "
            "more resilient)",
            "",
            ratio_head,
            "|" + " --- |" * (len(kinds) + 2),
            *ratio_lines,
        ]
    )


def wins_table(clean: dict[str, Tensor]) -> str:
    """Each map's mean over the items of every metric in ``clean ({metric: (M, I)})``; ``*``
    marks a map outside the faithful class that scores better than both faithful maps."""
    keys = [column.key for column in METRICS if column.key in clean]
    faithful = [MAPS.index(name) for name in dict(CLASSES)["faithful"]]
    lines = [
        "| map | " + " | ".join(METRIC_COLUMNS[key].label for key in keys) + " |",
        "|" + " --- |" * (len(keys) + 1),
    ]
    means = {key: clean[key].double().nanmean(-1) for key in keys}
    for row, name in enumerate(MAPS):
        cells = []
        for key in keys:
            value, sign = means[key][row], 1 if METRIC_COLUMNS[key].higher_is_better else -1
            wins = row not in faithful and bool((sign * (value - means[key][faithful]) > 0).all())
            cells.append(f"{value:.3f}" + ("*" if wins else ""))
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _meta(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    print(
        f"Meta-evaluation: {args.images} one-object images, {args.pairs} two-object images "
        f"(2 items each), {args.repeats} repeats; input noise {args.input_noise:.4f}, "
        f"logit noise {args.score_noise}, weight noise {args.weight_noise}, randomisation "
        f"{args.randomisation}; best method {args.best}"
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
                weight_noise=args.weight_noise,
                randomisation=args.randomisation,
                seed=args.seed,
            )
            for items in splits
            if len(items)
        }
        print(f"\n### {arch}\n")
        print(confidence_table(results))
        for split, result in results.items():
            print(f"\nMean of every metric on each map, {split} (* beats both faithful maps)\n")
            print(wins_table(result["clean"]))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``meta`` command's arguments and handler."""
    parser.add_argument(
        "--archs",
        type=networks,
        default=["resnet", "vgg"],
        help="comma-separated shipped networks",
    )
    add_item_counts(parser, images=40, pairs=20)
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
        help="repeats of each perturbation (at least 2: the resilience is their spread)",
    )
    parser.add_argument("--input-noise", type=scale, default=2 / 255, help="pixel noise std")
    parser.add_argument("--score-noise", type=scale, default=0.1, help="logit noise std")
    parser.add_argument(
        "--weight-noise", type=scale, default=1e-3, help="minor multiplicative weight noise std"
    )
    parser.add_argument(
        "--randomisation",
        type=scale,
        default=2.0,
        help="disruptive multiplicative weight noise std",
    )
    parser.add_argument("--batch-size", type=positive, default=20, help="items per call")
    parser.add_argument("--seed", type=count, default=0, help="data and perturbation seed")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.set_defaults(handler=_meta)
